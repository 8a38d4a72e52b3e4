"""Robustness table: every trained run on fresh acquisitions of the held-out points under each
named measurement corruption.

For each corruption ``c`` of :data:`moireu.stm.measure.CORRUPTIONS` (noise, drift/creep, piezo
scale error, heterostrain, twist deviation, tip height; contract A) and each held-out point p of a
store, new STM maps are rendered from the store's per-atom LDOS (contract D: ``ldos (point,
bias_level, atom)`` with the moiré-cell geometry), with acquisitions drawn from the store's
measurement spec modified by ``c``:

    scan ~ draw_scan(default_rng(SeedSequence([seed, 23, p, b, r])), corrupted_spec(spec, c)),
    image, align = map_to_image(simulate_map(geom, ldos[p, b], scan), transform),

for every bias level b and repeat r — the same pipeline as the training images and as ``moireu
predict``, so the table measures what a user's map of that quality would get. No Hartree–Fock solve
is repeated. The same images serve every run. Per (run, corruption): MAE, RMSE, coverage of the
run's nominal interval, the fraction of images the run calls in distribution (its OOD score below
its threshold and the measured twist angle in range), and the fraction the alignment accepted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from moireu.errors import InputError

__all__ = ["Acquisitions", "render_heldout", "robustness_rows", "robustness_table", "format_rows"]

# stream id of the robustness acquisitions in the seed sequence (the dataset's own images use 7)
_STREAM = 23


@dataclass
class Acquisitions:
    """Rendered images of one corruption: ``images (n, ky, kx)``, labels ``U (n,)``, alignment ``in_range (n,)``."""

    corruption: str
    images: np.ndarray
    U: np.ndarray
    in_range: np.ndarray
    twist_deg: np.ndarray


def _store_inputs(ds) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any, Any]:
    """(geometry, ldos (point, bias, atom), point U, held-out point indices, MeasurementSpec, transform)."""
    need = ["ldos", "point_U", "point_split", "atom_xyz", "atom_layer", "atom_sublattice", "cell"]
    missing = [v for v in need if v not in ds.variables]
    if missing:
        raise InputError(f"the store lacks {missing}: it was built before per-atom LDOS was stored (contract D); "
                         "rebuild it with the current `moireu dataset build`")
    from moireu.config import config_from_json
    from moireu.stm.geometry import CellGeometry
    from moireu.stm.measure import MeasurementSpec

    cfg_txt = ds.attrs.get("config")
    if not cfg_txt:
        raise InputError("the store has no `config` attribute; its measurement spec is unknown")
    cfg = config_from_json(cfg_txt if isinstance(cfg_txt, str) else json.dumps(cfg_txt))
    geom = CellGeometry(np.asarray(ds["atom_xyz"].values), np.asarray(ds["cell"].values),
                        np.asarray(ds["atom_layer"].values), np.asarray(ds["atom_sublattice"].values))
    sp = ds["point_split"]
    vals = np.asarray(sp.values)
    if vals.dtype.kind in "iu":
        names = dict(zip((int(v) for v in np.atleast_1d(sp.attrs["flag_values"])), str(sp.attrs["flag_meanings"]).split()))
        split = np.array([names[int(v)] for v in vals.tolist()])
    else:
        split = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in vals.tolist()])
    held = np.flatnonzero(split == "heldout")
    if held.size == 0:
        raise InputError("the store has no held-out points")
    spec = MeasurementSpec.from_config(cfg.stm, geom.cell)
    transform = ds.attrs.get("image_transform")
    return geom, np.asarray(ds["ldos"].values, float), np.asarray(ds["point_U"].values, float), held, spec, transform


def render_heldout(ds, corruption: str, repeats: int = 1, seed: int = 0,
                   points: Iterable[int] | None = None) -> Acquisitions:
    """Fresh acquisitions of the store's held-out points under ``corruption`` (see the module docstring).

    Parameters
    ----------
    ds : xarray.Dataset
        A store with per-atom LDOS (contract D).
    corruption : str
        A key of :data:`moireu.stm.measure.CORRUPTIONS`.
    repeats : int
        Acquisitions per (point, bias level).
    seed : int
    points : iterable of int, optional
        Point indices to render (default: every held-out point).
    """
    geom, ldos, point_U, held, spec, transform = _store_inputs(ds)
    from moireu.stm.align import map_to_image
    from moireu.stm.measure import corrupted_spec, draw_scan, simulate_map

    spec = corrupted_spec(spec, corruption)
    pts = held if points is None else np.asarray(list(points), int)
    imgs, U, ok, tw = [], [], [], []
    for p in pts:
        for b in range(ldos.shape[1]):
            for r in range(int(repeats)):
                rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM, int(p), b, r]))
                img, info = map_to_image(simulate_map(geom, ldos[p, b], draw_scan(rng, spec)), transform)
                imgs.append(np.asarray(getattr(img, "values", img), np.float32))
                U.append(point_U[p])
                ok.append(bool(info.in_range))
                tw.append(float(info.twist_deg))
    return Acquisitions(corruption, np.stack(imgs), np.asarray(U), np.asarray(ok), np.asarray(tw))


def robustness_rows(runs: dict[str, Any], acquisitions: Iterable[Acquisitions]) -> list[dict[str, Any]]:
    """One row per (run, corruption): ``mae``, ``rmse``, ``coverage90``, ``in_distribution``, ``align_in_range``, ``n``.

    ``runs`` maps a name to a :class:`moireu.ml.LoadedRun` (or anything with ``.model`` a
    :class:`~moireu.ml.uncertainty.RunModel`).
    """
    import torch

    from moireu.ml.evaluate import metrics

    rows = []
    for acq in acquisitions:
        for name, run in runs.items():
            d = run.model.predict_details(torch.from_numpy(acq.images))
            m = metrics(acq.U, d["mean"], d["lower"], d["upper"])
            ind = np.asarray(d["in_distribution"], bool) & acq.in_range
            rows.append({"model": name, "corruption": acq.corruption, "n": m["n"], "mae": m["mae"],
                         "rmse": m["rmse"], "coverage90": m.get("coverage90", math.nan),
                         "in_distribution": float(ind.mean()) if ind.size else math.nan,
                         "align_in_range": float(acq.in_range.mean()) if acq.in_range.size else math.nan,
                         "mean_interval_width": m.get("mean_interval_width", math.nan)})
    return rows


def robustness_table(run_dirs: list[str | Path], store: str | Path, corruptions: Iterable[str] | None = None,
                     repeats: int = 1, seed: int = 0,
                     render: Callable[[Any, str], Acquisitions] | None = None) -> list[dict[str, Any]]:
    """Load the runs, render each corruption once (``render(ds, name)``; default :func:`render_heldout`),
    and score every run on the same images (:func:`robustness_rows`)."""
    from moireu.ml import load_run, open_dataset

    runs = {Path(d).name.removeprefix("train_"): load_run(d) for d in run_dirs}
    if not runs:
        raise InputError("no runs given")
    ds = open_dataset(store)
    if corruptions is None:
        from moireu.stm.measure import CORRUPTIONS

        corruptions = list(CORRUPTIONS)
    render = render or (lambda ds_, c: render_heldout(ds_, c, repeats=repeats, seed=seed))
    return robustness_rows(runs, (render(ds, c) for c in corruptions))


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Markdown table: corruption × run with MAE / coverage / in-distribution fraction."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    corr = list(dict.fromkeys(r["corruption"] for r in rows))
    head = "| corruption | " + " | ".join(f"{m}: MAE / cov90 / in-dist" for m in models) + " |"
    lines = [head, "|---" * (len(models) + 1) + "|"]
    for c in corr:
        cells = []
        for m in models:
            r = next((r for r in rows if r["model"] == m and r["corruption"] == c), None)
            cells.append("–" if r is None else f"{r['mae']:.3f} / {r['coverage90']:.2f} / {r['in_distribution']:.2f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
