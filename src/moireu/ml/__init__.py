"""Learning U from FT-LDOS images: models, training, augmentation, uncertainty, evaluation, predict.

Tensors in, tensors out: this stage reads the dataset store (``docs/ARCHITECTURE.md``) and never
imports the physics stages.

Public API
----------
``create_model(name, **kw)``
    registered variants (list_models()): (n, 1, H, W) → (n,)
``train_run(data, out, cfg)``
    train a run directory (checkpoint, curves, resumable)
``fit_ensemble(train, val, recipe)``
    the training loop on arrays → (RunModel, info)
``resolve_recipe(train_cfg)``
    ``paper`` / ``ours`` recipe settings
``split_indices(mode, n, variation)``
    ``variation`` (leak-free train/val/cal/test) or ``paper`` split
``load_run(run_dir)``
    → (model: RunModel, meta: dict, prep: Preprocess)
``predict_tensor(model, x)``
    → (mean, lower, upper) in eV for stored images x
``model.predict_details(x)``
    the prediction plus the out-of-distribution score, threshold and decision
``evaluate_run(run_dir, data, split)``
    metrics (mae, rmse, r2, coverage90, n, per_U) + plots
``robustness_table(runs, images, U)``
    each model × each augmentation profile
``augment(x, profile, generator)``
    ``clean``, ``mild``, ``symb``, ``noisy``
``model.gradcam_layer``
    dotted name of the last conv stage (``get_submodule``)
"""

from moireu.ml.augment import PROFILES, AugmentProfile, augment, profile_names
from moireu.ml.data import (SPLIT_MODES, Preprocess, StoreData, load_split, open_dataset, split_indices,
                             store_fingerprint, stratified_split)
from moireu.ml.evaluate import evaluate_arrays, evaluate_run, format_table, metrics, robustness_table
from moireu.ml.models import available_models, create_model, gradcam_module, list_models, register_model
from moireu.ml.predict import LoadedRun, load_checkpoint, load_run, predict_image, read_ready_image
from moireu.ml.train import Recipe, fit_ensemble, resolve_recipe, train_run
from moireu.ml.uncertainty import FeatureDensity, RunModel, calibrate, conformal_quantile, fit_difficulty, predict_tensor

__all__ = [
    "PROFILES", "AugmentProfile", "augment", "profile_names",
    "SPLIT_MODES", "Preprocess", "StoreData", "load_split", "open_dataset", "split_indices", "store_fingerprint",
    "stratified_split",
    "evaluate_arrays", "evaluate_run", "format_table", "metrics", "robustness_table",
    "available_models", "create_model", "gradcam_module", "list_models", "register_model",
    "LoadedRun", "load_checkpoint", "load_run", "predict_image", "read_ready_image",
    "Recipe", "fit_ensemble", "resolve_recipe", "train_run",
    "FeatureDensity", "RunModel", "calibrate", "conformal_quantile", "fit_difficulty", "predict_tensor",
]
