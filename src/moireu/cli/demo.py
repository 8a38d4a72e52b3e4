"""``moireu demo``: the whole pipeline on one preset, one run directory, resumable stage by stage.

bands → STM example (U = 0) → dataset (HF sweep on dask + FT-LDOS images) → train the CNN on clean
images and on ``mild``-corrupted ones (and ResNet-18 unless ``--no-resnet``) → evaluate on test and
held-out → robustness under measurement corruptions (stores with per-atom LDOS) → analysis (similarity, PCA, baselines, Grad-CAM / guided backprop, crossover) → report.html.

Each stage runs as its own ``moireu`` subcommand in a child process and leaves a marker file; a rerun
skips finished stages (``--force`` reruns everything). The layout is the run directory of
docs/ARCHITECTURE.md, so ``moireu report RUN_DIR`` reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, PresetOpt, SetOpt, info, resolve


def _stage(name: str, marker: Path, cmd: list[str], force: bool, log: list[dict], stdout_to: Path | None = None,
           inputs: tuple[Path, ...] = (), tag: str = "demo") -> None:
    """Run one stage unless its marker exists; progress goes to stderr; stop the demo on failure.

    ``stdout_to``: keep the command's stdout (its ``--json`` document) in this file (atomically).
    ``inputs``: files the stage reads; the stage reruns when one is missing from an earlier run or
    newer than the marker (e.g. the analysis after a second model was trained).
    ``tag``: the pipeline command (``demo``, ``paper``) named in the messages.
    """
    stale = marker.exists() and any(not p.exists() or p.stat().st_mtime > marker.stat().st_mtime for p in inputs)
    if stale:
        info(f"[{tag}] {name}: inputs changed since {marker.name}, rerunning")
    if marker.exists() and not force and not stale:
        info(f"[{tag}] {name}: done already ({marker}), skipping")
        log.append({"stage": name, "seconds": 0.0, "skipped": True})
        return
    info(f"[{tag}] {name}: {' '.join(cmd[2:])}")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE if stdout_to else subprocess.DEVNULL, text=True)
    if stdout_to is not None and r.returncode == 0:
        from moireu.provenance import write_text_atomic

        write_text_atomic(stdout_to, r.stdout)
    dt = time.perf_counter() - t0
    log.append({"stage": name, "seconds": round(dt, 1), "skipped": False, "rc": r.returncode})
    if r.returncode != 0:
        info(f"[{tag}] {name} failed (exit {r.returncode}) after {dt:.0f} s; rerun `moireu {tag}` to resume")
        raise typer.Exit(r.returncode)
    info(f"[{tag}] {name}: {dt:.0f} s")


def _has_point_ldos(data: Path) -> bool:
    """Whether the store keeps the per-atom LDOS of its points (new acquisitions can be rendered from it)."""
    import xarray as xr

    try:
        return "ldos" in xr.open_zarr(data, consolidated=None).variables
    except Exception:  # an unreadable store fails loudly in the stages that need it
        return False


def sweep_from_store(data: Path, out: Path) -> None:
    """HF order parameters vs U (one row per solved (U, ν)) from the dataset store → sweep.json + sweep.png.

    The dataset build already solved HF at every U; this reuses those solutions instead of a second sweep.
    """
    import numpy as np

    from moireu.data import open_store
    from moireu.hf.driver import plot_sweep
    from moireu.provenance import write_json_atomic

    ds = open_store(data)
    keys = ["hf_max_moment", "hf_staggered_moment", "hf_charge_spread", "hf_gap", "hf_iterations", "hf_converged"]
    meta = ds[["U", "filling", *keys]].load()
    rows = {}
    for i in range(int(ds.sizes["sample"])):
        key = (round(float(meta["U"].values[i]), 6), float(meta["filling"].values[i]))
        if key not in rows:
            rows[key] = {"U": key[0], "filling": key[1],
                         "max_moment": float(meta["hf_max_moment"].values[i]),
                         "staggered_moment": float(meta["hf_staggered_moment"].values[i]),
                         "charge_spread": float(meta["hf_charge_spread"].values[i]),
                         "gap_eV": float(meta["hf_gap"].values[i]),
                         "iterations": int(meta["hf_iterations"].values[i]),
                         "converged": bool(meta["hf_converged"].values[i])}
    ordered = [rows[k] for k in sorted(rows)]
    out.mkdir(parents=True, exist_ok=True)
    its = [r["iterations"] for r in ordered]
    write_json_atomic(out / "sweep.json", {"source": str(data), "points": ordered,
                                           "all_converged": all(r["converged"] for r in ordered),
                                           "median_iterations": float(np.median(its)) if its else None})
    plot_sweep(ordered, out / "sweep.png", title=f"HF order parameters of the dataset solves ({len(ordered)} U values)")


def demo_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="run directory"),
    resnet: bool = typer.Option(True, "--resnet/--no-resnet",
                                help="also train ResNet-18 (≈ +70 s on 2 cores)"),
    force: bool = ForceOpt,
) -> None:
    """Run the pipeline end to end and print where the report is."""
    from moireu.config import save_resolved
    from moireu.provenance import write_json_atomic

    cfg = resolve(preset, config, set_)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the demo's own config: every stage below reads this file, so they all see the same settings
    save_resolved(cfg, out)
    conf = ["--preset", "", "--config", str(out / "config.toml")]
    exe = [sys.executable, "-m", "moireu"]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    log: list[dict] = []
    t0 = time.perf_counter()
    U_lo, U_hi = min(cfg.dataset.U_values), max(cfg.dataset.U_values)
    data = out / "dataset.zarr"
    # without --force an interrupted solve/training resumes from its checkpoint instead of restarting
    refresh = ["--force"] if force else []

    _stage("bands", out / "bands" / "bands.json", [*exe, "bands", *conf, "--out", str(out / "bands"), "--force"],
           force, log)
    # one self-consistent solve + STM simulation as the worked example (real-space map + FT-LDOS)
    sub = out / "hf" / f"U{U_lo:g}"
    _stage(f"scf U={U_lo:g}", sub / "hf_result.nc",
           [*exe, "scf", *conf, "--set", f"hf.U={U_lo}", "--out", str(sub), *refresh], force, log)
    _stage(f"stm U={U_lo:g}", out / "stm" / f"U{U_lo:g}" / "stm.json",
           [*exe, "stm", str(sub / "hf_result.nc"), *conf, "--out", str(out / "stm" / f"U{U_lo:g}"), "--force"],
           force, log)
    # the build is itself resumable and a no-op when the store is complete: always run it
    _stage("dataset", out / ".never", [*exe, "dataset", "build", *conf, "--out", str(data)], False, log)
    _stage("dataset overview", out / "stm" / "dataset" / "overview.png",
           [*exe, "dataset", "export-png", str(data), str(out / "stm" / "dataset"), "--limit", "0"], force, log)
    if force or not (out / "hf" / "sweep.json").exists():
        sweep_from_store(data, out / "hf")
    # (run name, model, extra settings): the cnn on clean images (accuracy), the same cnn trained with the
    # `mild` corruptions (robustness on measured maps), optionally ResNet-18
    models = [("cnn", "cnn", []), ("cnn_mild", "cnn", ["--set", "train.augment=mild"])]
    # without the ridge read-out ResNet-18 learns slowly: best epochs 4–19 of 30 were measured with patience 4
    models += [("resnet18", "resnet18", ["--set", "train.patience=10", "--set", "train.epochs=40"])] if resnet else []
    for m, arch, extra in models:
        run = out / f"train_{m}"
        _stage(f"train {m}", run / "checkpoint.pt",
               [*exe, "train", str(data), "--model", arch, *conf, *extra, "--out", str(run), *refresh], force, log)
        for split in ("test", "heldout"):
            _stage(f"evaluate {m} {split}", run / f"eval_{split}.json",
                   [*exe, "evaluate", str(run), str(data), "--split", split], force, log)
        _stage(f"robustness {m}", run / "robustness.json",
               [*exe, "evaluate", str(run), str(data), "--split", "test", "--augment", "all",
                "--json"], force, log, stdout_to=run / "robustness.json")
    if _has_point_ldos(data):  # stores with per-atom LDOS (contract D): fresh acquisitions under each corruption
        _stage("robustness (measurement corruptions)", out / "robustness" / "robustness.json",
               [*exe, "robustness", *[str(out / f"train_{m[0]}") for m in models], "--data", str(data),
                "--out", str(out / "robustness")], force, log,
               inputs=tuple(out / f"train_{m[0]}" / "checkpoint.pt" for m in models))
    _stage("analysis", out / "analysis" / "analysis.json",
           [*exe, "analyze", "--data", str(data), "--out", str(out / "analysis"), *conf,
            "--runs", *[str(out / f"train_{m[0]}") for m in models]], force, log,
           inputs=tuple(out / f"train_{m[0]}" / "checkpoint.pt" for m in models))
    _stage("report", out / "report.html", [*exe, "report", str(out)], True, log)
    total = time.perf_counter() - t0
    write_json_atomic(out / "demo_timing.json", {"stages": log, "total_seconds": round(total, 1)})
    info(f"[demo] finished in {total / 60:.1f} min")
    typer.echo(f"report: {(out / 'report.html').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
