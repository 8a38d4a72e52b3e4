"""Loading a trained run and predicting U (with its calibrated interval) for images.

``load_run(run_dir)`` returns ``(model, meta, prep)``: a :class:`~moireu.ml.uncertainty.RunModel`
(stored image → U in eV, all members, calibrated), the checkpoint metadata (recipe, image
transform, split, calibration, provenance) and the :class:`~moireu.ml.data.Preprocess` module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from moireu.errors import InputError
from moireu.ml.data import Preprocess
from moireu.ml.train import FORMAT, build_model
from moireu.ml.uncertainty import FeatureDensity, RunModel, predict_tensor

__all__ = ["LoadedRun", "load_run", "load_checkpoint", "predict_image", "predict_tensor", "read_ready_image"]


class LoadedRun(NamedTuple):
    model: RunModel
    meta: dict[str, Any]
    prep: Preprocess


def _checkpoint_path(run_dir: str | Path) -> Path:
    p = Path(run_dir)
    if p.is_file():
        return p
    if not p.exists():
        raise InputError(f"run {str(p)!r} does not exist")
    ck = p / "checkpoint.pt"
    if not ck.is_file():
        hint = " (training was interrupted: rerun `moireu train` with the same --out to resume)" \
            if (p / "last.pt").exists() else ""
        raise InputError(f"run {str(p)!r} has no checkpoint.pt{hint}")
    return ck


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary (weights-only unpickling), validated."""
    ck = _checkpoint_path(run_dir)
    try:
        blob = torch.load(ck, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message for a refused object carries advice to load the file unsafely: never shown
        raise InputError(f"checkpoint {str(ck)!r} is corrupt or not a moireu checkpoint ({type(exc).__name__}); "
                         "retrain the run with `moireu train ... --force`") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise InputError(f"checkpoint {str(ck)!r} has format {got!r}; expected {FORMAT!r}")
    return blob


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the trained ensemble of a run directory (or a checkpoint file).

    Returns
    -------
    LoadedRun
        ``(model, meta, prep)``; ``model.predict(x)`` → (mean, lower, upper) in eV for stored
        images ``x`` of shape ``(n, 1, H, W)``; ``model.gradcam_layer`` names the last conv stage.
    """
    blob = load_checkpoint(run_dir)
    prep = Preprocess.from_spec(blob["preprocess"])
    members = []
    for sd in blob["members"]:
        m = build_model(blob["model"], blob["model_kwargs"], prep.out_shape)
        try:
            m.load_state_dict(sd)
        except RuntimeError as exc:
            raise InputError(f"checkpoint weights do not fit the {blob['model']!r} model: {exc}") from None
        m.eval()
        members.append(m)
    density = None
    try:
        if blob.get("density"):
            d = blob["density"]
            density = FeatureDensity(int(d["components"].shape[1]), int(d["components"].shape[0]))
            density.load_state_dict(d)
        t = blob["target"]
        model = RunModel(prep, members, t["mean"], t["std"], t["clamp_min"], conformal=blob["conformal"],
                         density=density, ood=blob.get("ood"), u_range=blob.get("u_range"))
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(f"checkpoint {str(_checkpoint_path(run_dir))!r} is incomplete "
                         f"({type(exc).__name__}: {exc})") from None
    model.eval()
    meta = {k: v for k, v in blob.items() if k not in ("members", "density")}
    meta["checkpoint"] = str(_checkpoint_path(run_dir))
    return LoadedRun(model, meta, prep)


def read_ready_image(path: str | Path, image_shape: tuple[int, int]) -> np.ndarray:
    """Read an FT-LDOS image already on the training window: a ``.npy`` array of the trained shape."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"map {str(path)!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{str(path)!r} is not a readable .npy array ({type(exc).__name__}: {exc})") from None
    arr = np.asarray(arr)
    if arr.ndim != 2 or tuple(arr.shape) != tuple(image_shape):
        raise InputError(f"{str(path)!r} holds an array of shape {arr.shape}; a ready FT-LDOS image must be "
                         f"{image_shape[0]}×{image_shape[1]} (the training image size)")
    return arr.astype(np.float32)


def predict_image(run: LoadedRun, image: np.ndarray) -> dict[str, Any]:
    """U with its calibrated interval and the out-of-distribution decision for one FT-LDOS image.

    Returns
    -------
    dict
        ``U`` (clipped to the trained range), ``U_unclipped``, ``U_low``, ``U_high`` (eV),
        ``coverage`` (nominal), ``members`` (each member's U), ``std`` (ensemble spread),
        ``in_distribution``, ``ood_score``, ``ood_threshold`` and its parts (``ood_components``),
        ``U_range`` (trained).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise InputError(f"an FT-LDOS image must be 2-D, got shape {img.shape}")
    n_bad = int((~np.isfinite(img)).sum())
    if n_bad:
        raise InputError(f"the map contains {n_bad} NaN/inf pixel(s) of {img.size}; clean or crop it first")
    d = run.model.predict_details(torch.from_numpy(img)[None, None])
    p = d["members"][:, 0]
    thr = float(run.model.ood.get("threshold", float("inf")))
    return {"U": float(d["mean"][0]), "U_low": float(d["lower"][0]), "U_high": float(d["upper"][0]),
            "U_unclipped": float(d["mean_unclipped"][0]), "clipped": bool(d["clipped"][0]),
            "coverage": 1.0 - run.model.alpha, "std": float(p.std()) if p.size > 1 else 0.0,
            "members": [float(v) for v in p], "model": run.meta["model"], "recipe": run.meta["recipe"]["name"],
            "in_distribution": bool(d["in_distribution"][0]), "ood_score": float(d["ood_score"][0]),
            "ood_threshold": thr, "constant_input": bool(d["constant"][0]),
            "ood_components": {"mahalanobis": float(d["ood_mahalanobis"][0]),
                               "residual": float(d["ood_residual"][0]), "spread": float(d["ood_spread"][0])},
            "U_range": None if run.model.u_range is None else list(run.model.u_range)}
