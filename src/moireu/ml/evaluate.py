"""Evaluation of a trained run: metrics, per-U errors, coverage, plots and the robustness table.

Metrics on n labelled images (U_i true, Û_i predicted, [L_i, H_i] the calibrated interval):

* MAE = (1/n) Σ ``|Û_i − U_i|``,  RMSE = √((1/n) Σ (Û_i − U_i)²)
* R² = 1 − Σ (Û_i − U_i)² / Σ (U_i − Ū)²  (undefined, reported as NaN, when all U are equal)
* coverage90 = (1/n) Σ 1[L_i ≤ U_i ≤ H_i] for the run's nominal level (0.9 by default)
* in_distribution = fraction of images whose out-of-distribution score is below the run's threshold

A run's own scores (``eval_<split>.json`` and the plots in the run directory) are only ever computed
on the store the run was trained on (same :func:`~moireu.ml.data.store_fingerprint`). Results on any
other store go to ``out`` (a separate folder) or only to the caller, never into the run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from moireu.errors import InputError
from moireu.ml.augment import augment as apply_augment
from moireu.ml.augment import get_profile, profile_names
from moireu.ml.data import StoreData, load_split, open_dataset, split_indices, store_fingerprint, stratified_split
from moireu.ml.predict import LoadedRun, load_run
from moireu.ml.uncertainty import RunModel, interval_coverage
from moireu.provenance import json_safe, write_json_atomic

__all__ = ["metrics", "evaluate_arrays", "score_details", "select_split", "evaluate_run", "robustness_table", "format_table"]


def metrics(y: np.ndarray, pred: np.ndarray, lower: np.ndarray | None = None,
            upper: np.ndarray | None = None) -> dict[str, float]:
    """MAE, RMSE, R², coverage (if an interval is given), n."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    out = {"n": int(y.size), "mae": float(np.abs(err).mean()) if y.size else math.nan,
           "rmse": float(np.sqrt((err**2).mean())) if y.size else math.nan,
           "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan,
           "bias": float(err.mean()) if y.size else math.nan}
    if lower is not None and upper is not None:
        out["coverage90"] = interval_coverage(y, lower, upper)
        out["mean_interval_width"] = float(np.mean(np.asarray(upper) - np.asarray(lower))) if y.size else math.nan
    return out


def per_u(y: np.ndarray, pred: np.ndarray, lower: np.ndarray, upper: np.ndarray, decimals: int = 6) -> list[dict]:
    """Errors grouped by the true U value."""
    rows = []
    keys = np.round(np.asarray(y, dtype=np.float64), decimals)
    for u in np.unique(keys):
        m = keys == u
        e = pred[m] - y[m]
        rows.append({"U": float(u), "n": int(m.sum()), "mae": float(np.abs(e).mean()),
                     "rmse": float(np.sqrt((e**2).mean())), "mean_pred": float(pred[m].mean()),
                     "coverage": interval_coverage(y[m], lower[m], upper[m])})
    return rows


def evaluate_arrays(model: RunModel, images: np.ndarray, U: np.ndarray, augment: str | None = None,
                    seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """Predict stored images (optionally corrupted by an augmentation profile) and score them.

    Returns metrics (:func:`metrics`), ``per_U`` rows and the raw arrays (``pred``, ``lower``,
    ``upper``, ``U``) as numpy arrays.
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x[:, None]
    if augment and augment != "clean":
        get_profile(augment)
        x = apply_augment(x, augment, torch.Generator().manual_seed(seed))
    return score_details(model.predict_details(x, batch_size), U)


def score_details(d: dict[str, np.ndarray], U: np.ndarray) -> dict[str, Any]:
    """Metrics, per-U rows, the in-distribution fraction and the arrays from :meth:`RunModel.predict_details`."""
    mu, lo, hi = (np.asarray(d[k], dtype=np.float64) for k in ("mean", "lower", "upper"))
    y = np.asarray(U, dtype=np.float64)
    res = metrics(y, mu, lo, hi)
    ind = np.asarray(d["in_distribution"], bool)
    res["in_distribution"] = float(ind.mean()) if ind.size else math.nan
    if ind.any() and not ind.all():
        m = metrics(y[ind], mu[ind], lo[ind], hi[ind])
        res["in_distribution_only"] = {k: m[k] for k in ("n", "mae", "coverage90")}
    res["per_U"] = per_u(y, mu, lo, hi)
    res["arrays"] = {"U": y, "pred": mu, "lower": lo, "upper": hi, "in_distribution": ind}
    return res


def select_split(ds, meta: dict[str, Any], split: str) -> tuple[StoreData, bool]:
    """The ``train``/``val``/``cal``/``test`` part of the grid samples (the run's split) or the ``heldout`` samples.

    On the training store (same fingerprint) the parts are the exact sample indices recorded in the
    checkpoint; on another store the run's split mode, seed and fractions are applied to its grid
    samples (every image of another store is unseen by the run in any case).

    Returns the data and whether the store is the one the run was trained on.
    """
    if split not in ("test", "heldout", "val", "cal", "train"):
        raise InputError(f"--split must be test, heldout, cal, val or train, got {split!r}")
    same = store_fingerprint(ds) == meta.get("store")
    shape = tuple(int(s) for s in ds["image"].shape[1:])
    trained = tuple(meta["preprocess"]["image_shape"])
    if shape != trained:
        raise InputError(f"the checkpoint was trained on {trained[0]}×{trained[1]} images but the dataset holds "
                         f"{shape[0]}×{shape[1]} images; evaluate on a store built with the same stm.n_pixels")
    if split == "heldout":
        return load_split(ds, "heldout"), same
    grid = load_split(ds, "grid")
    sp = meta["split"]
    if "mode" not in sp:  # checkpoints written before the variation split: the by-image stratified split
        if split == "cal":
            raise InputError("this run was calibrated on its validation split (an old checkpoint): use --split val")
        tr, va, te = stratified_split(grid.U, tuple(sp["fractions"]), seed=sp["seed"])
        return grid.take({"train": tr, "val": va, "test": te}[split]), same
    if same:
        pos = np.searchsorted(grid.index, np.asarray(sp[split], dtype=np.int64))
        return grid.take(pos), same
    parts = split_indices(sp["mode"], len(grid.U), grid.variation, seed=sp["seed"], fractions=tuple(sp["fractions"]))
    return grid.take(parts[split]), same


def evaluate_run(run_dir: str | Path, data: str | Path, split: str = "test", augment: str | None = None,
                 seed: int = 0, write: bool = True, out: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a run on a split of a store.

    Where the files go (``eval_<split>[_<profile>].json`` + parity/residual PNGs):

    * ``out`` given: into ``out`` only;
    * else, on the run's own training store and ``write``: into the run directory (its own scores);
    * else (another store): nowhere; the result is only returned. A run's own scores are never
      replaced by scores on another store.

    Returns the JSON-able result (keys ``mae``, ``rmse``, ``r2``, ``coverage90``, ``n``,
    ``in_distribution``, ``per_U``, ``split``, ``augment``, ``model``, ``recipe``, ``same_store``,
    ``written_to``).
    """
    run = load_run(run_dir)
    ds = open_dataset(data)
    sel, same = select_split(ds, run.meta, split)
    res = evaluate_arrays(run.model, sel.images, sel.U, augment=augment, seed=seed)
    tag = split if not augment or augment == "clean" else f"{split}_{augment}"
    result = {k: v for k, v in res.items() if k != "arrays"}
    result |= {"split": split, "augment": augment or "clean", "model": run.meta["model"],
               "recipe": run.meta["recipe"]["name"], "ensemble": len(run.model.members), "same_store": same,
               "nominal_coverage": 1.0 - run.model.alpha, "store": str(Path(data).resolve()),
               "run": str(Path(run_dir).resolve())}
    dest = Path(out) if out is not None else (Path(run_dir) if (write and same and Path(run_dir).is_dir()) else None)
    result["written_to"] = None if dest is None else str(dest.resolve())
    result = json_safe(result)
    if dest is not None:
        from moireu.plot.ml import plot_parity_residual

        dest.mkdir(parents=True, exist_ok=True)
        plot_parity_residual(res, dest, tag, f"{run.meta['model']} ({run.meta['recipe']['name']}) · {tag}"
                             + ("" if same else " · other store"))
        write_json_atomic(dest / f"eval_{tag}.json", result)
    return result


def robustness_table(runs: dict[str, LoadedRun | str | Path], images: np.ndarray, U: np.ndarray,
                     profiles: Iterable[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Each model evaluated on each augmentation profile (same corrupted images for every model).

    Parameters
    ----------
    runs : dict
        Name → loaded run (or run directory).
    images, U : arrays
        Stored images ``(n, H, W)`` and labels.
    profiles : iterable of str, optional
        Defaults to all profiles (``clean``, ``mild``, ``symb``, ``noisy``).

    Returns
    -------
    list of dict
        One row per (model, profile): ``model``, ``profile``, ``mae``, ``rmse``, ``r2``, ``coverage90``, ``n``.
    """
    rows = []
    for name, run in runs.items():
        lr = run if isinstance(run, LoadedRun) else load_run(run)
        for prof in profiles or profile_names():
            r = evaluate_arrays(lr.model, images, U, augment=prof, seed=seed)
            rows.append({"model": name, "profile": prof,
                         **{k: r[k] for k in ("mae", "rmse", "r2", "coverage90", "in_distribution", "n")}})
    return rows


def format_table(rows: list[dict[str, Any]], cols: tuple[str, ...] = ("mae", "rmse", "r2", "coverage90")) -> str:
    """Plain-text table: models as rows, profile × metric as columns."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    profs = list(dict.fromkeys(r["profile"] for r in rows))
    head = f"{'model':<20}" + "".join(f"{p + ':' + c:>18}" for p in profs for c in cols)
    lines = [head, "-" * len(head)]
    for m in models:
        cells = []
        for p in profs:
            r = next((r for r in rows if r["model"] == m and r["profile"] == p), None)
            cells += [f"{(r[c] if r else math.nan):>18.4f}" for c in cols]
        lines.append(f"{m:<20}" + "".join(cells))
    return "\n".join(lines)
