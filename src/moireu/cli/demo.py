"""``moireu demo``: the whole pipeline on one preset, one run directory, resumable stage by stage.

one stored HF state recomputed from scratch (stops if it disagrees) → bands → STM example (U = 0) →
dataset (FT-LDOS images of simulated STM maps, rendered from the preset's stored HF states) → train the
cnn ensemble → evaluate on test and held-out → analysis (similarity, PCA, baselines, Grad-CAM / guided
backprop, crossover) → report.html. ``--full`` adds the ResNet-18 ensemble and the robustness table under
measurement corruptions.

Each stage runs as its own ``moireu`` subcommand in a child process and leaves a marker file; a rerun
skips finished stages (``--force`` reruns everything). The layout is the run directory of
docs/ARCHITECTURE.md, so ``moireu report RUN_DIR`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, PresetOpt, SetOpt, info, resolve
from moireu.cli.pipeline import Pipeline


def _has_point_ldos(data: Path) -> bool:
    """Whether the store keeps the per-atom LDOS of its points (new acquisitions can be rendered from it)."""
    from moireu.data import open_store

    return "ldos" in open_store(data).variables


def sweep_from_store(data: Path, out: Path) -> None:
    """HF order parameters vs U (one row per solve point) from the dataset store → sweep.json + sweep.png.

    Energies are per moiré cell, as ``energy_meV`` = E − E(lowest U of the same filling) in meV; the
    reference totals are in ``energy_reference``.

    The dataset build already solved HF at every U; this reuses those solutions instead of a second sweep.
    Rows come from the store's point dimension (``point_U``, ``point_filling``) and the schema's HF fields.
    """
    import numpy as np

    from moireu.data import schema as sc
    from moireu.plot.hf import plot_sweep
    from moireu.provenance import write_json_atomic

    ds = sc.open_store(data)
    first = {}  # point index → first sample of that point
    for i, p in enumerate(sc.values(ds, "sample_point").tolist()):
        first.setdefault(int(p), i)
    cols = {sk: sc.values(ds, sk) for sk in sc.HF_FIELDS.values()}
    U, nu = sc.values(ds, "point_U"), sc.values(ds, "point_filling")
    rows = []
    for p in sorted(first, key=lambda q: (U[q], nu[q])):
        i = first[p]
        r = {"U": float(U[p]), "filling": float(nu[p])}
        r |= {rk: cols[sk][i].item() for rk, sk in sc.HF_FIELDS.items()}
        rows.append(r)
    # total energies per moiré cell are ~ −10³ eV and differ by meV: the table shows E − E(lowest U of the
    # same filling) in meV, the reference energy once
    ref = {}
    for r in rows:
        ref.setdefault(r["filling"], (r["U"], r["total_energy"]))
    for r in rows:
        r["energy_meV"] = round(1e3 * (r.pop("total_energy") - ref[r["filling"]][1]), 3)
    out.mkdir(parents=True, exist_ok=True)
    its = [r["iterations"] for r in rows]
    write_json_atomic(out / "sweep.json", {"source": str(data), "points": rows,
                                           "energy_reference": [{"filling": nu, "U": u, "total_energy_eV": e}
                                                                for nu, (u, e) in ref.items()],
                                           "all_converged": all(r["converged"] for r in rows),
                                           "median_iterations": float(np.median(its)) if its else None})
    plot_sweep(rows, out / "sweep.png", title=f"HF order parameters of the dataset solves ({len(rows)} U values)")


def _states_differences(cfg: object) -> str | None:
    """None when the preset ships states of this configuration, else why not."""
    from moireu.data.states import States, shipped_states_path

    path = shipped_states_path(cfg.preset)  # type: ignore[attr-defined]
    if not path.is_file():
        return f"preset {cfg.preset!r} ships none"  # type: ignore[attr-defined]
    diff = States.load(path).differences(cfg)  # a damaged file is an error, never skipped
    return "; ".join(diff) if diff else None


def demo_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="run directory"),
    full: bool = typer.Option(False, "--full", help="also train the ResNet-18 ensemble and measure robustness "
                              "under measurement corruptions (README: make demo)"),
    force: bool = ForceOpt,
) -> None:
    """Run the pipeline end to end and print where the report is."""
    from moireu.provenance import write_json_atomic

    p = Pipeline("demo", resolve(preset, config, set_), Path(out))
    cfg, out, conf = p.cfg, p.out, p.conf
    U_lo = min(cfg.dataset.U_values)
    data = out / "dataset.zarr"
    # without --force an interrupted solve/training resumes from its checkpoint instead of restarting
    refresh = ["--force"] if force else []

    # the stored HF states are trusted only after one of them is recomputed here from scratch
    diff = _states_differences(cfg)
    if diff is None:
        p.stage("verify stored HF states (one rung recomputed)", out / "states_verify.json",
                ["states", "verify", *conf, "--json"], force, stdout_to=out / "states_verify.json")
    else:
        info(f"[demo] no stored HF states for this configuration ({diff}): the dataset stage solves every point")
    p.stage("bands", out / "bands" / "bands.json", ["bands", *conf, "--out", str(out / "bands"), "--force"], force)
    # one self-consistent solve + STM simulation as the worked example (real-space map + FT-LDOS)
    sub = out / "hf" / f"U{U_lo:g}"
    p.stage(f"scf U={U_lo:g}", sub / "hf_result.nc",
            ["scf", *conf, "--set", f"hf.U={U_lo}", "--out", str(sub), *refresh], force)
    p.stage(f"stm U={U_lo:g}", out / "stm" / f"U{U_lo:g}" / "stm.json",
            ["stm", str(sub / "hf_result.nc"), *conf, "--out", str(out / "stm" / f"U{U_lo:g}"), "--force"], force)
    # the build is itself resumable and a no-op when the store is complete: always run it
    p.stage("dataset", out / ".never", ["dataset", "build", *conf, "--out", str(data)])
    p.stage("dataset overview", out / "stm" / "dataset" / "overview.png",
            ["dataset", "export-png", str(data), str(out / "stm" / "dataset"), "--limit", "0"], force)
    if force or not (out / "hf" / "sweep.json").exists():
        sweep_from_store(data, out / "hf")
    # (run name, model, extra settings): the cnn, optionally ResNet-18. Both train on the measurement model's
    # maps (noise, drift, piezo scale, strain, orientation drawn per acquisition), which is what `predict`
    # receives; the k-space `mild` augmentation (the registered `cnn_mild`) is not trained here: it perturbs
    # the FT image in ways no measured map does, and it scored worst of the three (held-out 0.210 eV, blind
    # 0.399 eV on the dense store, docs/results-demo.md)
    models = [("cnn", "cnn", [])]
    # ResNet-18 takes the preset's schedule (20 epochs, no early stop): on the 0.5 eV-grid store 20 epochs gave
    # held-out 0.111 eV, 40 epochs 0.217
    models += [("resnet18", "resnet18", [])] if full else []
    runs = [out / f"train_{m[0]}" for m in models]
    for (m, arch, extra), run in zip(models, runs):
        p.stage(f"train {m}", run / "checkpoint.pt",
                ["train", str(data), "--model", arch, *conf, *extra, "--out", str(run), *refresh], force)
        for split in ("test", "heldout"):
            p.stage(f"evaluate {m} {split}", run / f"eval_{split}.json",
                    ["evaluate", str(run), str(data), "--split", split], force)
    if full and _has_point_ldos(data):  # stores with per-atom LDOS (contract D): fresh acquisitions under each corruption
        p.stage("robustness (measurement corruptions)", out / "robustness" / "robustness.json",
                ["robustness", *map(str, runs), "--data", str(data), "--out", str(out / "robustness")], force,
                inputs=tuple(r / "checkpoint.pt" for r in runs))
    p.stage("analysis", out / "analysis" / "analysis.json",
            ["analyze", "--data", str(data), "--out", str(out / "analysis"), *conf, "--runs", *map(str, runs)],
            force, inputs=tuple(r / "checkpoint.pt" for r in runs))
    p.stage("report", out / "report.html", ["report", str(out)], True)
    write_json_atomic(out / "demo_timing.json", {"stages": p.log, "total_seconds": round(60 * p.minutes, 1)})
    info(f"[demo] finished in {p.minutes:.1f} min")
    typer.echo(f"report: {(out / 'report.html').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
