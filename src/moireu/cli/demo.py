"""``moireu demo``: the whole pipeline on one preset, one run directory, resumable stage by stage.

bands → STM examples (U = 0 and U_max) → dataset (HF sweep on dask + FT-LDOS images) → train CNN
(and ResNet-18 unless ``--no-resnet``) → evaluate on test and held-out → analysis (similarity, PCA,
baselines, Grad-CAM / guided backprop, crossover) → report.html.

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


def _stage(name: str, marker: Path, cmd: list[str], force: bool, log: list[dict], stdout_to: Path | None = None) -> None:
    """Run one stage unless its marker exists; progress goes to stderr; stop the demo on failure.

    ``stdout_to``: keep the command's stdout (its ``--json`` document) in this file (atomically).
    """
    if marker.exists() and not force:
        info(f"[demo] {name}: done already ({marker}), skipping")
        log.append({"stage": name, "seconds": 0.0, "skipped": True})
        return
    info(f"[demo] {name}: {' '.join(cmd[2:])}")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE if stdout_to else subprocess.DEVNULL, text=True)
    if stdout_to is not None and r.returncode == 0:
        from moireu.provenance import write_text_atomic

        write_text_atomic(stdout_to, r.stdout)
    dt = time.perf_counter() - t0
    log.append({"stage": name, "seconds": round(dt, 1), "skipped": False, "rc": r.returncode})
    if r.returncode != 0:
        info(f"[demo] {name} failed (exit {r.returncode}) after {dt:.0f} s; rerun `moireu demo` to resume")
        raise typer.Exit(r.returncode)
    info(f"[demo] {name}: {dt:.0f} s")


def demo_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="run directory"),
    resnet: bool = typer.Option(True, "--resnet/--no-resnet", help="also train ResNet-18"),
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

    _stage("bands", out / "bands" / "bands.json", [*exe, "bands", *conf, "--out", str(out / "bands"), "--force"],
           force, log)
    for U in (U_lo, U_hi):
        sub = out / "hf" / f"U{U:g}"
        _stage(f"scf U={U:g}", sub / "hf_result.nc",
               [*exe, "scf", *conf, "--set", f"hf.U={U}", "--out", str(sub), "--force"], force, log)
        _stage(f"stm U={U:g}", out / "stm" / f"U{U:g}" / "stm.json",
               [*exe, "stm", str(sub / "hf_result.nc"), *conf, "--out", str(out / "stm" / f"U{U:g}"), "--force"],
               force, log)
    # the build is itself resumable and a no-op when the store is complete: always run it
    _stage("dataset", out / ".never", [*exe, "dataset", "build", *conf, "--out", str(data)], False, log)
    models = ["cnn"] + (["resnet18"] if resnet else [])
    for m in models:
        run = out / f"train_{m}"
        _stage(f"train {m}", run / "checkpoint.pt",
               [*exe, "train", str(data), "--model", m, *conf, "--out", str(run), "--force"], force, log)
        for split in ("test", "heldout"):
            _stage(f"evaluate {m} {split}", run / f"eval_{split}.json",
                   [*exe, "evaluate", str(run), str(data), "--split", split], force, log)
        _stage(f"robustness {m}", run / "robustness.json",
               [*exe, "evaluate", str(run), str(data), "--split", "test", "--augment", "all",
                "--json"], force, log, stdout_to=run / "robustness.json")
    _stage("analysis", out / "analysis" / "analysis.json",
           [*exe, "analyze", "--data", str(data), "--out", str(out / "analysis"), *conf,
            "--runs", *[str(out / f"train_{m}") for m in models]], force, log)
    _stage("report", out / "report.html", [*exe, "report", str(out)], True, log)
    total = time.perf_counter() - t0
    write_json_atomic(out / "demo_timing.json", {"stages": log, "total_seconds": round(total, 1)})
    info(f"[demo] finished in {total / 60:.1f} min")
    typer.echo(f"report: {(out / 'report.html').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
