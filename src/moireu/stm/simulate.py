"""One-call STM simulation of a Hartree–Fock solution: LDOS → simulated STM map → aligned FT-LDOS image.

The map and the image go through the same measurement model as every training image and every
user map (:func:`moireu.stm.measure.simulate_map`, :func:`moireu.stm.align.map_to_image`), here
for one nominal acquisition (no noise or distortion, the centre of each configured range) with a
chosen frame origin and rotation. Used by ``moireu stm`` and the documentation figure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from moireu.errors import InputError
from moireu.stm.align import AlignInfo, map_to_image
from moireu.stm.ftldos import ImageTransform
from moireu.stm.ldos import ldos_at
from moireu.stm.geometry import CellGeometry
from moireu.stm.measure import MeasurementSpec, ScanParams, simulate_map
from moireu.stm.patch import reciprocal_peaks


@dataclass
class STMSimulation:
    """Results for a list of biases.

    Attributes
    ----------
    biases : (nb,) eV relative to E_F
    ldos : (nb, 2, N) per-spin LDOS of the cell atoms (states/eV/atom)
    maps : list of DataArray (y, x) simulated STM maps (coordinates: nominal Å from the frame centre)
    images : list of DataArray (ky, kx) FT-LDOS images (aligned, training frame)
    align : list of AlignInfo, one per image
    scan : the ScanParams of the maps
    peaks : dict from :func:`moireu.stm.patch.reciprocal_peaks`
    transform : ImageTransform
    attrs : common metadata
    """

    biases: np.ndarray
    ldos: np.ndarray
    maps: list[Any]
    images: list[Any]
    peaks: dict[str, np.ndarray]
    transform: ImageTransform
    attrs: dict[str, Any] = field(default_factory=dict)
    align: list[AlignInfo] = field(default_factory=list)
    scan: ScanParams | None = None


def parse_biases_mev(text: str) -> list[float]:
    """``"0,2,-4"`` (meV) → [0.0, 0.002, -0.004] (eV)."""
    out = []
    for part in str(text).replace(";", ",").split(","):
        p = part.strip()
        if not p:
            continue
        try:
            v = float(p)
        except ValueError:
            raise InputError(f"--bias expects comma-separated numbers in meV (e.g. 0,2,-4), got {text!r}") from None
        if not np.isfinite(v):
            raise InputError(f"--bias values must be finite, got {p!r}")
        out.append(v * 1e-3)
    if not out:
        raise InputError(f"--bias expects at least one value in meV, got {text!r}")
    return out


def simulate_stm(system: Any, res: Any, stm: Any, biases: Sequence[float] | None = None,
                 offset: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0,
                 allow_unconverged: bool = False, progress: bool = True,
                 extra_attrs: dict[str, Any] | None = None) -> STMSimulation:
    """LDOS at E_F + biases, one nominal simulated STM map and its aligned FT-LDOS image per bias.

    Parameters
    ----------
    system, res : HFSystem and HFResult.
    stm : STMConfig
        eta, broadening, kmesh, map_pixels, tip_height, measurement (pixel-size range: its centre is
        used), n_pixels, window_scale and the image options.
    biases : eV relative to E_F (default ``stm.biases``).
    offset : (x, y) Å
        Sample point under the frame centre.
    rotation_deg : float
        Rotation of the scan frame (degrees).
    """
    import xarray as xr

    model = system.model
    b = np.asarray(list(stm.biases if biases is None else biases), dtype=float)
    L = ldos_at(system, res, biases=b, eta=stm.eta, kind=stm.broadening, kmesh=stm.kmesh, per_spin=True,
                allow_unconverged=allow_unconverged, progress=progress)
    geom = CellGeometry.of(model)
    t = ImageTransform.from_config(stm, geom=geom)
    scan = dataclasses.replace(MeasurementSpec.from_config(stm, geom.cell).nominal(),
                               origin=(float(offset[0]), float(offset[1])), rotation_deg=float(rotation_deg))
    peaks = reciprocal_peaks(model.positions, geom.cell, model.layer, model.sublattice, t.window)
    maps, images, aligns = [], [], []
    common = {"U": float(res.U), "filling": float(res.filling), "eta": float(stm.eta),
              "broadening": stm.broadening, "ldos_kmesh": list(stm.kmesh), "fermi_level": float(res.fermi_level),
              "hf_converged": int(bool(res.converged)), "index": int(getattr(model, "index", 0) or 0),
              "theta_deg": float(getattr(model, "theta_deg", 0.0) or 0.0)} | dict(extra_attrs or {})
    scan_attrs = {f"scan_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in scan.to_dict().items()}
    for i, bias in enumerate(b):
        meta = common | scan_attrs | {"bias": float(bias)}
        md = simulate_map(geom, L[i].sum(axis=0), scan)
        img, info = map_to_image(md, t, attrs=meta)
        u = md.centred_xy()
        n = scan.pixels
        m = xr.DataArray(md.values.astype(np.float32), dims=("y", "x"),
                         coords={"y": ("y", u[::n, 1], {"units": "Angstrom"}), "x": ("x", u[:n, 0], {"units": "Angstrom"})},
                         name="ldos_map", attrs={"quantity": "simulated STM map sum_i LDOS_i s(|R - r_i|)",
                                                 "pixel_size": scan.pixel_size} | meta)
        maps.append(m)
        images.append(img)
        aligns.append(info)
    return STMSimulation(b, L, maps, images, peaks, t, common, aligns, scan)


def u_comparison_figure(cfg: Any, U_values: Sequence[float] = (0.0, 6.0), path: Any = "docs/img/ldos_ftldos_U0_U6.png",
                        bias: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Solve HF at each U (config ``lattice``/``hf`` sections) and draw the LDOS map and FT-LDOS side by side.

    Returns per-U summaries (converged, iterations, max moment, image statistics).
    """
    from moireu.hf.driver import solve_kwargs, system_from_config
    from moireu.plot.stm import comparison_figure

    system = system_from_config(cfg)
    lat, model = cfg.lattice, system.model
    panels, out = [], {}
    for U in U_values:
        res = system.solve(**solve_kwargs(cfg, U=float(U)))
        sim = simulate_stm(system, res, cfg.stm, [bias], allow_unconverged=True, progress=progress,
                           extra_attrs={"seed": cfg.seed})
        label = f"U = {U:g} eV" + ("" if res.converged else " (unconverged)")
        panels.append((label, sim.maps[0], sim.images[0]))
        out[f"{U:g}"] = {"converged": bool(res.converged), "iterations": int(res.iterations),
                         "max_moment": float(res.max_moment), "fermi_level": float(res.fermi_level)}
    title = (f"TBG i={lat.index} (θ={model.theta_deg:.2f}°, d={lat.interlayer_distance} Å), bias {1e3 * bias:g} meV, "
             f"η={1e3 * cfg.stm.eta:g} meV, {cfg.stm.map_pixels}² map, "
             f"FT {cfg.stm.n_pixels}² ({cfg.stm.normalize})")
    comparison_figure(panels, sim.peaks, path, title)
    return out
