"""``moireu bands``: band structure along K–Γ–M–K, DOS, and the central-band summary."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, JsonOpt, PresetOpt, SetOpt, emit_json, info, prepare_run_dir, resolve


def compute_bands(cfg, progress: bool = True) -> dict:
    """Bands on the path and on a mesh for the config's lattice section; returns arrays + summary."""
    import numpy as np

    from moireu.lattice import band_path, build_tbg, dos, kmesh, summarize_bands

    lc = cfg.lattice
    model = build_tbg(lc.index, lc.interlayer_distance, lc.cutoff)
    kpath, dist, ticks, labels = band_path(model, lc.band_points)
    kmsh, w = kmesh(model, (lc.dos_kmesh, lc.dos_kmesh), trs=True)
    allk = np.concatenate([kpath, kmsh])
    eigs = np.empty((len(allk), model.n_orb))
    from moireu.progress import progress_bar

    with progress_bar("bands", disable=not progress, transient=True) as bar:
        task = bar.add_task(f"bands i={lc.index} ({model.n_orb} atoms)", total=len(allk))
        for n, k in enumerate(allk):
            eigs[n] = model.eigh(k)
            bar.advance(task)
    e_path, e_mesh = eigs[: len(kpath)], eigs[len(kpath):]
    summary = summarize_bands(model, eigs, w, e_mesh, kT=cfg.hf.kT)
    ef = summary.fermi_level_eV
    energies = np.linspace(ef - 0.25, ef + 0.25, 1001)
    d = dos(e_mesh, w, energies, lc.dos_eta)
    out = summary.as_dict() | {"index": lc.index, "cutoff": lc.cutoff, "k_mesh_dos": [lc.dos_kmesh] * 2,
                               "n_kpoints_path": len(kpath)}
    return {"model": model, "dist": dist, "ticks": ticks, "labels": labels, "e_path": e_path,
            "energies": energies, "dos": d, "summary": out}


def bands_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/bands"), "--out", "-o", help="output directory"),
    json_: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Band structure K–Γ–M–K + DOS of the TBG model; writes bands.png and bands.json."""
    from moireu.lattice import central_bands
    from moireu.plot.lattice import plot_bands
    from moireu.provenance import provenance, write_json_atomic

    cfg = resolve(preset, config, set_)
    out = prepare_run_dir(out, cfg, "bands.json", force=True if json_ else force)
    info(f"TBG i={cfg.lattice.index}, d={cfg.lattice.interlayer_distance} Å, cutoff={cfg.lattice.cutoff} Å")
    res = compute_bands(cfg)
    plot_bands(res, central_bands(res["e_path"], res["model"].n_orb), out / "bands.png")
    summary = res["summary"]
    write_json_atomic(out / "bands.json", summary | {"provenance": provenance()})
    info(f"central bandwidth {summary['central_bandwidth_meV']:.2f} meV; wrote {out / 'bands.png'}")
    if json_:
        emit_json(summary)


def register(app: typer.Typer) -> None:
    app.command("bands")(bands_cmd)
