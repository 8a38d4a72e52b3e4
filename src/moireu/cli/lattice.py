"""``moireu lattice MAP``: moiré metrology of an STM map (:mod:`moireu.stm.metrology`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from moireu.cli.common import BiasOpt, ChannelOpt, DirectionOpt, JsonOpt, PixelSizeOpt, emit_json, info
from moireu.errors import InputError


def _report(d: dict) -> str:
    """The human-readable report of :meth:`LatticeMetrology.to_dict`."""
    from moireu.stm.metrology import format_pm as pm

    nx, ny = d["shape"]
    px, py = d["pixel_size"]
    lines = [f"{d['source']}: {nx}×{ny} px of {px:.4g} × {py:.4g} Å ({nx * px:.1f} × {ny * py:.1f} Å), "
             + ("atomic lattice resolved" if d["atomic_resolved"] else "atomic lattice not resolved")]
    frame = "corrected frame" if d["atomic_resolved"] else "nominal frame: pixel size trusted"
    lines.append(f"moiré wave vectors ({frame}), Å⁻¹:")
    for j, (g, s, a, snr) in enumerate(zip(d["moire_vectors"], d["moire_vector_sigma"], d["moire_vector_angles_deg"],
                                           d["moire_snr"])):
        lines.append(f"  g{j + 1} = ({g[0]:+.5f}, {g[1]:+.5f})   |g| = {pm((g[0] ** 2 + g[1] ** 2) ** 0.5, s)}"
                     f"   at {a:.2f}°   (peak SNR {snr:.3g})")
    lines.append("moiré wavelengths (AA–AA distances), Å:")
    for j, (lam, s, a) in enumerate(zip(d["moire_wavelengths"], d["moire_wavelength_sigma"],
                                        d["moire_directions_deg"])):
        lines.append(f"  λ{j + 1} = {pm(lam, s)}   along {a:.2f}°")
    lines.append(f"twist         θ = {pm(d['twist_deg'], d['twist_sigma_deg'], '°')}")
    phi = (f"along φ = {pm(d['strain_angle_deg'], d['strain_angle_sigma_deg'], '°')} (image frame; "
           f"{d['strain_angle_lattice_deg']:.1f}° from the zigzag direction)" if d["strain_angle_sigma_deg"] < 90
           else "direction undetermined")
    lines.append(f"heterostrain  ε = {pm(d['strain_percent'], d['strain_sigma_percent'], ' %')} {phi}; uniaxial, "
                 f"Poisson ratio {d['poisson_ratio']:g}")
    lines.append(f"lattice       α = {pm(d['lattice_angle_deg'], d['lattice_angle_sigma_deg'], '°')} (zigzag "
                 "direction of the bilayer, mod 60°)")
    sc = d["scanner"]
    if sc:
        lines.append(f"scanner (Bragg lattice, a = {d['lattice_constant']:g} Å): s_x = {pm(sc['scale_x'], sc['scale_x_sigma'])}"
                     f", s_y = {pm(sc['scale_y'], sc['scale_y_sigma'])} (true Å per nominal Å), shear γ = "
                     f"{pm(sc['shear'], sc['shear_sigma'])} ({sc['shear_deg']:+.3f}°); imaged lattice at "
                     f"{sc['lattice_angle_deg']:.2f}°; twist in the nominal frame {d['twist_nominal_deg']:.4f}°")
    lines.append(f"fit: χ² = {d['chi2']:.3g} ({d['dof']} dof), rms residual {d['residual']:.2e} Å⁻¹, uncertainties × "
                 f"{d['birge']:.3g}; branch θ > 0, ε ≥ 0")
    lines += [f"warning: {w}" for w in d["warnings"]]
    return "\n".join(lines)


def lattice_cmd(
    map_: Path = typer.Argument(..., metavar="MAP", help="STM map: real-space .npy/.npz (+ sidecar JSON), image "
                                                          "file, .sxm/.3ds/.gwy/.sm4, text export, atoms table"),
    pixel_size: Optional[str] = PixelSizeOpt,
    channel: Optional[str] = ChannelOpt,
    direction: str = DirectionOpt,
    bias: Optional[float] = BiasOpt,
    plot: Optional[Path] = typer.Option(None, "--plot", help="write the FFT figure (PNG, log amplitude, fitted "
                                                             "peaks marked) to this file"),
    json_: bool = JsonOpt,
) -> None:
    """Moiré metrology of a TBG map (twist 0.5°–10°): the three moiré wave vectors and wavelengths, the
    twist angle and uniaxial heterostrain (ε, φ; Poisson ratio 0.16) with uncertainties, and, when the
    atoms are resolved, the piezo scales and shear of the scanner (the moiré then read in the
    corrected frame). Units: Å, Å⁻¹, degrees, per cent.
    """
    from moireu.cli.ml import parse_pixel_size
    from moireu.provenance import json_safe
    from moireu.stm.measure import user_map_data
    from moireu.stm.metrology import measure_metrology

    ps = parse_pixel_size(pixel_size)
    m = user_map_data(Path(map_), ps, channel=channel, direction=direction, bias=bias)
    res = measure_metrology(m, keep_spectrum=plot is not None)
    d = res.to_dict()
    if plot is not None:
        from moireu.plot.metrology import plot_metrology

        kx, ky, amp = res.spectrum
        try:
            plot_metrology(kx, ky, amp, d, plot)
        except OSError as exc:
            raise InputError(f"cannot write --plot {str(plot)!r}: {exc.strerror or exc}") from None
    if json_:
        emit_json(json_safe(d | {"map": str(map_), "plot": None if plot is None else str(plot)}))
    else:
        typer.echo(_report(d))
    if plot is not None:
        info(f"figure: {plot}")


def register(app: typer.Typer) -> None:
    app.command("lattice")(lattice_cmd)
