"""``moireu dataset build | info | export-png``: U sweeps on dask into one Zarr store."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, JsonOpt, PresetOpt, SetOpt, emit_json, fail, info, resolve
from moireu.errors import InputError

dataset_app = typer.Typer(no_args_is_help=True, help="Build, inspect and export FT-LDOS datasets (Zarr).")


@dataset_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", "-o", help="the Zarr store to write (e.g. runs/demo/dataset.zarr)"),
    preset: str = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    heldout: Optional[int] = typer.Option(None, "--heldout", help="held-out random U values (overrides dataset.heldout)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of held-out U and patch variations (dataset.seed)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of a running dask scheduler "
                                            "(tcp://host:8786); default: a LocalCluster on this machine"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="LocalCluster workers (0 = one per core)"),
    threads: bool = typer.Option(False, "--threads", help="run the LocalCluster workers as threads of this "
                                 "process (small builds, debugging; default: one process per worker)"),
    append: bool = typer.Option(False, "--append", help="add U values / fillings / held-out values to a store "
                                "built with the same physics and image settings"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    worker_timeout: float = typer.Option(300.0, "--worker-timeout", help="with --scheduler: seconds to wait for a "
                                         "first dask worker to join"),
    states: Optional[Path] = typer.Option(None, "--states", help="states file to render from (default: the "
                                          "preset's shipped states when their fingerprint is this configuration's)"),
    recompute: bool = typer.Option(False, "--recompute", help="solve every point with Hartree–Fock even where "
                                   "stored states exist"),
    as_json: bool = JsonOpt,
) -> None:
    """The HF state per (U, ν) on the grid and held-out U — from the stored states when they are this
    configuration's, else solved — then every image variation of each state.

    Resumable: rerun the same command after an interruption; finished points are skipped.
    Exits 1 if any point remains failed or unconverged (flagged in the store) or the work could not
    be finished (no workers, lost scheduler, a failed final write: nothing partial is published),
    2 on bad input, 130 on Ctrl-C.
    """
    overrides = list(set_ or [])
    if heldout is not None:
        if heldout < 0:
            raise InputError(f"--heldout must be ≥ 0 (number of held-out random U values), got {heldout}")
        overrides.append(f"dataset.heldout={heldout}")
    if seed is not None:
        if seed < 0:
            raise InputError(f"--seed must be ≥ 0, got {seed}")
        overrides.append(f"dataset.seed={seed}")
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be ≥ 0 (0 = one per core), got {workers}")
    if not worker_timeout > 0 or worker_timeout == float("inf"):
        raise InputError(f"--worker-timeout must be a positive number of seconds, got {worker_timeout}")
    cfg = resolve(preset, config, overrides)

    from moireu.data import BuildError, build_dataset
    from moireu.data.workdir import work_dir_for

    try:
        report = build_dataset(cfg, out, scheduler=scheduler, workers=workers, append=append,
                               processes=not threads, progress=not no_progress, worker_timeout=worker_timeout,
                               states=states, recompute=recompute)
    except BuildError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        _quiet_interrupt()
        fail(f"interrupted; nothing was published — the finished points are kept in "
             f"{str(work_dir_for(out))!r}, rerun the same command to resume", 130)
    for line in report.summary_lines():
        info(line)
    if as_json:
        emit_json(report.to_dict())
    if not report.ok:
        raise typer.Exit(1)


@dataset_app.command("info")
def info_cmd(data: Path = typer.Argument(..., help="dataset store"), as_json: bool = JsonOpt) -> None:
    """Counts per U and split, image shape, config and provenance of a store."""
    from moireu.data.info import dataset_info, format_info

    d = dataset_info(data)
    if as_json:
        emit_json(d)
    else:
        typer.echo(format_info(d))


@dataset_app.command("export-png")
def export_png_cmd(
    data: Path = typer.Argument(..., help="dataset store"),
    out_dir: Path = typer.Argument(..., help="folder for the PNGs"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many per-sample PNGs"),
    cmap: str = typer.Option("magma", "--cmap", help="matplotlib colour map"),
) -> None:
    """Colour-mapped PNGs of the images (for looking; the store keeps the float32 data) + overview.png."""
    from moireu.plot import is_colormap

    if not is_colormap(cmap):
        raise InputError(f"--cmap {cmap!r} is not a matplotlib colour map (e.g. magma, viridis, gray)")
    from moireu.data.info import export_png

    files = export_png(data, out_dir, limit=limit, cmap=cmap)
    info(f"wrote {len(files)} PNG files to {out_dir}")


def _quiet_interrupt() -> None:
    """After Ctrl-C: silence the shutdown noise of dask's client/cluster (one line for the user)."""
    import logging
    import sys

    logging.disable(logging.CRITICAL)
    sys.unraisablehook = lambda *_: None  # "Exception ignored in Client.__del__" of a loop already closed


@dataset_app.command("paper-images")
def paper_images_cmd(
    data: Path = typer.Argument(..., help="dataset store that keeps the per-atom LDOS (contract D)"),
    out: Path = typer.Option(..., "--out", "-o", help="the paper-image store to write"),
    workers: int = typer.Option(1, "--workers", "-w", help="rendering processes"),
    grid: int = typer.Option(1003, "--grid", help="points per axis of the |F| grid (reference: 1003)"),
    force: bool = typer.Option(False, "--force", help="overwrite a finished --out"),
    as_json: bool = JsonOpt,
) -> None:
    """Same samples, HF states and U labels; images made the reference's way (arXiv:2602.18890).

    The magnitude of F = Σ LDOS e^(−ik·r), without mean subtraction, on the grid × grid window, drawn
    with turbo, saved as PNG, read back in grayscale, resized to 256². Resumable: rerun after an interruption.
    """
    from moireu.data.paper import paper_store
    from moireu.stm.paper import PaperTransform

    transform = None
    if grid != 1003:
        from moireu.data import open_store
        from moireu.data.store import store_config

        transform = PaperTransform(grid=grid, patch_cells=store_config(open_store(data)).stm.patch_cells)
    rep = paper_store(data, out, transform, workers=workers, force=force,
                      progress=lambda d, n: info(f"paper images {d}/{n}"))
    info(f"wrote {rep['n_samples']} paper images ({rep['image_shape'][0]}²) to {out}")
    if as_json:
        emit_json(rep)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
