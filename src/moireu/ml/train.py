"""Training: recipes, the seeded deterministic loop, deep ensembles, checkpoints and resuming.

Two recipes share one loop:

``paper`` (Tanksale & Stauber, arXiv:2602.18890, reproduced): the random 60/20/20 split with
seed 42; images at the stored size standardised by one global mean/std of the training pixels;
raw targets; MSE; Adam (lr 1e-3, weight decay 1e-4), batch 32 shuffled, gradient-norm clipping
at 1.0, CosineAnnealingLR(T_max = epochs, eta_min = 1e-6) stepped per epoch, early stopping with
patience 10 on the validation loss keeping the best weights; one network, no augmentation. The
variants ``cnn_paper``/``resnet18_paper`` carry the L2-normalised features and the U ≥ 0 clamp.

``ours`` (default): images area-downsampled to ``input_size`` (CPU time), per-image z-score then
global standardisation (training-split statistics), targets standardised
``t = (U − mean U_train) / std U_train``, Huber loss (δ = 1 in standardised units), the
``augment`` profile on the fly, CoordConv input channels for the CNN, and a deep ensemble of
``ensemble`` members whose spread feeds split-conformal intervals (:mod:`moireu.ml.uncertainty`).
For the CNN, ``ours`` adds a "wide & deep" linear read-out of the input pixels whose weights are the
closed-form ridge solution on per-pixel standardised training inputs (:func:`ridge_readout`; the
penalty is chosen on the validation split from ``skip_ridge_alpha · 10^0…6``,
:func:`select_ridge_alpha`), frozen; the network starts at the ridge prediction and its convolutional
path learns the residual. With an ``augment`` profile the read-out is regularised by the per-pixel
variance the corruptions add (the closed-form expectation over corruptions, :func:`ridge_readout`).
Measured on the demo store: U is carried by the intensity at fixed wave
vectors, which a global-average-pooled CNN cannot localise (ridge alone: test MAE 0.07 eV vs
0.16 eV for the plain CNN).
Learning rate, weight decay, epochs, patience, clipping come from the config.

The loop is a plain torch loop over in-memory tensors: every random draw (initialisation,
shuffling, augmentation, dropout) comes from seeded generators, and
``torch.use_deterministic_algorithms(True)`` is on, so two runs with one seed give identical
weights on CPU. After every epoch the full state (weights, optimiser, scheduler, generators,
best weights, history, finished members) is written atomically to ``RUN/last.pt``; a rerun of
the same command resumes from it. The final ``RUN/checkpoint.pt`` holds everything prediction
needs (:func:`moireu.ml.predict.load_run`).

The cosine schedule (Loshchilov & Hutter, ICLR 2017) is :func:`make_scheduler`:
``lr_t = lr_min + ½ (lr − lr_min)(1 + cos(π t / T))``, per batch with ``lr_min = lr/100`` (ours)
or per epoch with ``lr_min = 1e-6`` (paper).
"""

from __future__ import annotations

import inspect
import io
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from moireu.errors import InputError
from moireu.ml.augment import augment as apply_augment
from moireu.ml.data import (PAPER_SEED, Preprocess, StoreData, load_split, open_dataset, split_indices,
                            store_fingerprint)
from moireu.ml.models import ConvNet, FCNet, create_model, load_resnet18_weights, model_spec
from moireu.ml.uncertainty import OOD_QUANTILE, FeatureDensity, RunModel, calibrate, fit_difficulty, sigma_hat
from moireu.provenance import json_safe, provenance, write_bytes_atomic, write_json_atomic

__all__ = ["Recipe", "resolve_recipe", "fit_ensemble", "train_run", "save_torch_atomic", "seed_everything",
           "FORMAT"]

FORMAT = "moireu-ml-1"
# With an augmentation profile, the per-pixel corruption variance that regularises the ridge read-out of
# the cnn is estimated from this many corrupted copies of the training images.
_RIDGE_AUG_COPIES = 4


@dataclass(frozen=True)
class Recipe:
    """Every setting of one training run, resolved from :class:`moireu.config.TrainConfig` by
    :func:`resolve_recipe` (no defaults here: the config section is their one home, the paper recipe's
    pinned values are in :func:`resolve_recipe`)."""

    name: str
    model: str
    model_kwargs: dict[str, Any]
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    grad_clip: float
    loss: str
    per_image: str
    standardise_inputs: bool
    standardise_targets: bool
    clamp_min: float | None
    augment: str
    ensemble: int
    input_size: int
    retrain_full: bool
    coverage: float
    skip_ridge_alpha: float
    schedule: str  # lr schedule: "batch" (ours) or "epoch" (cosine per epoch to lr_min: the reference)
    lr_min: float | None
    split: str  # a mode of moireu.ml.data.split_indices: variation (ours) or paper
    pretrained_weights: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_recipe(tc: Any) -> Recipe:
    """The concrete :class:`Recipe` of a ``TrainConfig`` (``tc.recipe`` ∈ {``paper``, ``ours``}).

    The model variant (:func:`moireu.ml.models.model_spec`) fixes its own constructor arguments
    and may imply training settings (``cnn_mild``: ``augment = "mild"``), which override the config.
    ``paper`` pins everything the reference fixed (Adam lr 1e-3, weight decay 1e-4, batch 32, MSE,
    gradient clip 1.0, cosine annealing per epoch to 1e-6, patience 10, the random 60/20/20 split
    with seed 42, images as stored with one global mean/std of the training pixels, raw targets,
    U ≥ 0, no augmentation, one network); it takes only ``model``, ``epochs``, ``width``,
    ``retrain_full``, ``coverage`` and ``pretrained_weights`` from the config.
    """
    spec = model_spec(tc.model)
    if spec.train:
        tc = tc.model_copy(update=spec.train)
    params = inspect.signature(spec.builder).parameters
    kw: dict[str, Any] = {}
    if tc.width and "width" in params:
        kw["width"] = tc.width
    if tc.recipe not in _RECIPE_BUILDERS:
        raise InputError(f"train.recipe must be one of {', '.join(_RECIPE_BUILDERS)}, got {tc.recipe!r}")
    return _RECIPE_BUILDERS[tc.recipe](tc, spec, kw)


def _paper_recipe(tc: Any, spec: Any, kw: dict[str, Any]) -> Recipe:
    """Everything the reference fixed (see :func:`resolve_recipe`); ``kw``: the model's arguments."""
    return Recipe(name="paper", model=tc.model, model_kwargs=kw, epochs=tc.epochs, batch_size=32, lr=1e-3,
                  weight_decay=1e-4, patience=10, grad_clip=1.0, loss="mse", per_image="none",
                  standardise_inputs=True, standardise_targets=False, clamp_min=0.0, augment="clean",
                  ensemble=1, input_size=0, retrain_full=tc.retrain_full, coverage=tc.coverage,
                  skip_ridge_alpha=0.0, schedule="epoch", lr_min=1e-6, split="paper",
                  pretrained_weights=tc.pretrained_weights)


def _ours_recipe(tc: Any, spec: Any, kw: dict[str, Any]) -> Recipe:
    """Our recipe from the config (see :func:`resolve_recipe`); ``kw``: the model's arguments so far."""
    kw["dropout"] = tc.dropout
    skip_alpha = 0.0
    if spec.builder is ConvNet:
        skip_alpha = tc.skip_ridge_alpha if tc.linear_skip else 0.0
        kw |= {"coord_channels": tc.coord_channels, "pool_grid": tc.pool_grid, "linear_skip": tc.linear_skip}
    elif spec.builder is FCNet:
        width = int(tc.width or 256)
        kw.pop("width", None)
        kw |= {"hidden": (width, max(width // 4, 8))}
    return Recipe(name="ours", model=tc.model, model_kwargs=kw, epochs=tc.epochs, batch_size=tc.batch_size,
                  lr=tc.lr, weight_decay=tc.weight_decay, patience=tc.patience, grad_clip=tc.grad_clip,
                  loss=tc.loss, per_image="zscore", standardise_inputs=True, standardise_targets=True,
                  clamp_min=None, augment=tc.augment, ensemble=tc.ensemble, input_size=tc.input_size,
                  retrain_full=tc.retrain_full, coverage=tc.coverage, skip_ridge_alpha=skip_alpha,
                  schedule="batch", lr_min=None, split=tc.split, pretrained_weights=tc.pretrained_weights)


#: the training recipes by name (moireu.ml.models.RECIPES), each ``(train config, model spec, model kwargs)
#: → Recipe``
_RECIPE_BUILDERS = {"ours": _ours_recipe, "paper": _paper_recipe}


def ridge_readout(x: torch.Tensor, y: torch.Tensor, alpha: float, eps: float = 1e-6,
                  noise_var: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Closed-form ridge regression of ``y`` on the pixels of ``x`` with per-pixel standardisation.

    Each pixel ``j`` is standardised on the given (training) images, ``a_ij = (x_ij − m_j) / s_j``;
    the ridge solution in dual form (n ≪ number of pixels P) is

    ``c = (A Aᵀ + α I)⁻¹ (y − ȳ)``,  ``w = Aᵀ c``,  ``ŷ(x) = ȳ + Σ_j w_j (x_j − m_j) / s_j``

    (Hoerl & Kennard, Technometrics 12, 55 (1970); the dual form: Saunders, Gammerman & Vovk,
    ICML 1998). The standardisation is folded into the returned weights:
    ``ŷ(x) = w_effᵀ vec(x) + b`` with ``w_eff = w / s`` and ``b = ȳ − Σ_j w_j m_j / s_j``.

    With ``noise_var`` (the variance v_j that the expected corruptions add to pixel j), the loss is
    averaged over the corruptions instead of sampled: for zero-mean, pixel-independent corruptions
    ``E‖A' w − y‖² = ‖A w − y‖² + n Σ_j v_j w_j² / s_j²`` (Bishop, Neural Comput. 7, 108 (1995):
    training with noise is Tikhonov regularisation), i.e. a diagonal penalty
    ``D = diag(α + n v_j / s_j²)`` and ``w = D⁻¹ Aᵀ (A D⁻¹ Aᵀ + I)⁻¹ (y − ȳ)`` (push-through identity).
    Sampling corrupted copies instead would not work here: with P > n rows the ridge interpolates
    every sampled copy and stays blind to the next draw.

    Parameters
    ----------
    x : tensor (n, 1, H, W)
        Network inputs (already normalised by :class:`~moireu.ml.data.Preprocess`).
    y : tensor (n,)
        Targets.
    alpha : float
        Ridge penalty α > 0 (in units of the summed squares of standardised pixels).
    noise_var : tensor (H·W,), optional
        Per-pixel corruption variance in the units of ``x``.

    Returns
    -------
    (w_eff (1, H·W) float32, b float)
    """
    if alpha <= 0:
        raise InputError(f"ridge penalty alpha must be > 0, got {alpha}")
    a = x.flatten(1).double()
    n = a.shape[0]
    m = a.mean(0)
    s = a.std(0).clamp_min(eps)
    a = (a - m) / s
    t = y.double()
    t_mean = t.mean()
    penalty = alpha if noise_var is None else alpha + n * noise_var.double().flatten() / s ** 2
    ad = a / penalty  # A D⁻¹ (D = α I without noise_var: the plain dual ridge)
    c = torch.linalg.solve(ad @ a.T + torch.eye(n, dtype=a.dtype), t - t_mean)
    w = ad.T @ c
    w_eff = (w / s).float()[None]
    b = float(t_mean - (w * m / s).sum())
    return w_eff, b


def select_ridge_alpha(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, alpha: float,
                       noise_var: torch.Tensor | None = None, decades: int = 6) -> tuple[float, list[dict[str, float]]]:
    """The ridge penalty of the grid ``alpha · 10^j`` (j = 0 … ``decades``) with the smallest
    validation MAE (:func:`ridge_readout` fitted on ``x, y``, scored on ``x_val, y_val``; in the units of
    the targets given, i.e. standardised U during training).

    With more pixels than training images the ridge interpolates its training set for any small α,
    which leaves the network nothing to learn (zero training residual) and memorises acquisition
    details; the validation images (crops never trained on) choose how much to smooth.

    Returns
    -------
    (alpha, table) with one ``{"alpha", "val_mae"}`` row per grid value.
    """
    table = []
    for j in range(int(decades) + 1):
        a = float(alpha) * 10.0 ** j
        w, b = ridge_readout(x, y, a, noise_var=noise_var)
        pred = x_val.flatten(1) @ w[0] + b
        table.append({"alpha": a, "val_mae": float((pred - y_val).abs().mean())})
    best = min(table, key=lambda r: r["val_mae"])
    return best["alpha"], table


def _init_skip(model: nn.Module, w_eff: torch.Tensor, b: float) -> None:
    """Set the cnn's linear skip to a fixed ridge read-out and zero the last head layer.

    The network then starts exactly at the ridge prediction; the convolutional path learns the
    residual. The skip weights are frozen (``requires_grad = False``): Adam's per-coordinate
    steps would otherwise walk thousands of well-conditioned ridge weights away from the optimum.
    """
    skip = getattr(model, "skip", None)
    if skip is None:
        raise InputError("skip_ridge_alpha > 0 needs the cnn with linear_skip on")
    with torch.no_grad():
        skip.weight.copy_(w_eff)
        last = model.head[-1]
        last.weight.zero_()
        last.bias.fill_(b)
    skip.weight.requires_grad_(False)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, epochs: int, n_train: int) -> Any:
    """The cosine learning-rate schedule of a recipe (Loshchilov & Hutter, ICLR 2017).

    ``lr(t) = lr_min + ½ (lr − lr_min)(1 + cos(π t / T))``. ``schedule = "epoch"`` (paper):
    stepped once per epoch, ``T = epochs``, ``lr_min = recipe.lr_min`` (1e-6), so epoch ``e``
    (from 0) trains at ``lr(e)``. ``schedule = "batch"`` (ours): stepped per batch,
    ``T = epochs × batches``, ``lr_min = lr / 100`` unless ``recipe.lr_min`` is set.
    """
    if recipe.schedule not in ("epoch", "batch"):
        raise InputError(f"learning-rate schedule must be 'epoch' or 'batch', got {recipe.schedule!r}")
    if recipe.schedule == "epoch":
        t_max = epochs
    else:
        t_max = epochs * max(1, math.ceil(n_train / max(1, min(recipe.batch_size, n_train))))
    lr_min = recipe.lr / 100 if recipe.lr_min is None else recipe.lr_min
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, t_max), eta_min=lr_min)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through an in-memory buffer and an atomic rename."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes_atomic(path, buf.getvalue())


#: regression losses (on standardised targets in recipe ours)
LOSSES = ("mse", "huber", "l1")


def _loss_fn(name: str) -> nn.Module:
    return {"mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=1.0), "l1": nn.L1Loss()}[name]


def build_model(name: str, model_kwargs: dict[str, Any], input_shape: tuple[int, int]) -> nn.Module:
    """Instantiate a recipe's model for network inputs of ``input_shape`` (fills size-dependent options)."""
    kw = dict(model_kwargs)
    if model_spec(name).builder is FCNet:
        kw["image_size"] = tuple(input_shape)
    if kw.get("linear_skip") is True:
        kw["linear_skip"] = tuple(input_shape)
    elif not kw.get("linear_skip"):
        kw.pop("linear_skip", None)
    return create_model(name, **kw)


def _build(recipe: Recipe, image_shape: tuple[int, int]) -> nn.Module:
    return build_model(recipe.model, recipe.model_kwargs, image_shape)


def _init_model(recipe: Recipe, image_shape: tuple[int, int]) -> nn.Module:
    """A freshly initialised network to train (with ``recipe.pretrained_weights`` loaded when set)."""
    model = _build(recipe, image_shape)
    if recipe.pretrained_weights:
        load_resnet18_weights(model, recipe.pretrained_weights)
    return model


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device of ``train.device``: ``auto`` is CUDA when torch sees a GPU, else the CPU.

    ``cuda`` without a GPU is an error rather than a silent fall-back, so that a run asked to use an
    accelerator never reports CPU timings as GPU ones.
    """
    if name not in DEVICES:
        raise InputError(f"train.device must be one of {list(DEVICES)}, got {name!r}")
    has_cuda = torch.cuda.is_available()
    if name == "cuda" and not has_cuda:
        raise InputError("train.device = 'cuda' but torch sees no CUDA device (torch "
                         f"{torch.__version__}, CUDA build {torch.version.cuda}); use 'auto' or 'cpu'")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and has_cuda) else "cpu")


def device_record(dev: torch.device) -> dict[str, Any]:
    """What a run records about where it trained: the device, its name, the torch threads on the CPU."""
    rec: dict[str, Any] = {"device": dev.type, "torch": str(torch.__version__), "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        rec |= {"name": str(torch.cuda.get_device_name(dev)), "cuda": str(torch.version.cuda)}
    return rec


def _on_device(model: nn.Module, dev: torch.device) -> nn.Module:
    """The network on ``dev`` with its convolution weights channels-last (NHWC): the same arithmetic
    in another memory order, 1.3–1.8× faster training on the CPU (``benchmarks/paper_recipe_epoch.py``)."""
    return model.to(dev, memory_format=torch.channels_last)


def _state_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights, contiguous (NCHW) whatever the training layout was."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for k, v in module.state_dict().items()}


@torch.inference_mode()
def _predict_z(model: nn.Module, x: torch.Tensor, prep: Preprocess, batch: int = 256) -> torch.Tensor:
    """Standardised predictions of the batches of ``x`` (on the CPU), the model on its own device."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model(prep.normalise(x[i:i + batch].to(dev))).cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class _MemberState:
    """Resumable state of the member being trained."""

    member: int
    epoch: int = 0
    phase: str = "fit"  # "fit" (early-stopped on val) or "retrain" (train+val, fixed epochs)
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _train_epochs(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
                  xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor | None, yva: torch.Tensor | None,
                  prep: Preprocess, recipe: Recipe, st: _MemberState, n_epochs: int, y_std: float,
                  save: Callable[[nn.Module, dict | None], None], best_holder: dict,
                  progress: bool, desc: str, callback: Callable[[dict], None] | None) -> None:
    """Run epochs ``st.epoch .. n_epochs−1`` (early stopping when a validation set is given)."""
    from moireu.progress import progress_bar

    loss_fn = _loss_fn(recipe.loss)
    dev = next(model.parameters()).device
    n = xtr.shape[0]
    bs = min(recipe.batch_size, n)
    bar = progress_bar("train", disable=not progress, transient=True)
    bar.start()
    task = bar.add_task(desc, total=n_epochs, completed=st.epoch)
    try:
        while st.epoch < n_epochs:
            t0 = time.perf_counter()
            lr_epoch = opt.param_groups[0]["lr"]
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot, seen = 0.0, 0
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                if idx.numel() < 2:  # batch norm needs two samples
                    continue
                xb = xtr[idx]
                if recipe.augment != "clean":
                    xb = apply_augment(xb, recipe.augment, gen)  # on the CPU, from the CPU generator
                xb = prep.normalise(xb.to(dev, non_blocking=True))
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), ytr[idx].to(dev, non_blocking=True))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {st.epoch}")
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                opt.step()
                if recipe.schedule == "batch":
                    sched.step()
                tot += loss.item() * idx.numel()
                seen += idx.numel()
            if recipe.schedule == "epoch":
                sched.step()
            rec = {"epoch": st.epoch, "train_loss": tot / max(seen, 1), "lr": lr_epoch,
                   "seconds": time.perf_counter() - t0}
            improved = False
            if xva is not None:
                pz = _predict_z(model, xva, prep)
                val_loss = float(loss_fn(pz, yva))
                rec |= {"val_loss": val_loss, "val_mae_eV": float((pz - yva).abs().mean()) * y_std}
                if val_loss < st.best_val - 1e-12:
                    st.best_val, st.best_epoch, st.bad_epochs = val_loss, st.epoch, 0
                    best_holder["state"] = _state_cpu(model)
                    improved = True
                else:
                    st.bad_epochs += 1
            else:
                best_holder["state"] = _state_cpu(model)
                st.best_epoch = st.epoch
            st.history.append(rec)
            st.epoch += 1
            bar.update(task, advance=1, description=desc + " " + " ".join(
                f"{k} {v:.4g}" for k, v in rec.items() if k in ("train_loss", "val_loss", "val_mae_eV")))
            stop = xva is not None and st.bad_epochs >= recipe.patience
            save(model, {"improved": improved})
            if callback is not None:
                callback({"member": st.member, "phase": st.phase, **rec})
            if stop:
                break
    finally:
        bar.stop()


def fit_ensemble(train: StoreData, val: StoreData, recipe: Recipe, seed: int = 0, *,
                 cal: StoreData | None = None, state_path: str | Path | None = None, resume: bool = True,
                 progress: bool = True, callback: Callable[[dict], None] | None = None,
                 meta: dict[str, Any] | None = None, device: str = "auto") -> tuple[RunModel, dict[str, Any]]:
    """Train ``recipe.ensemble`` members on ``train``, early-stop on ``val``, calibrate on ``cal``.

    The difficulty model σ̂ and the normalisation of the out-of-distribution distances are fitted on
    ``val``; the conformal quantile and the OOD threshold on ``cal`` (:mod:`moireu.ml.uncertainty`).

    Parameters
    ----------
    train, val : StoreData
        Images ``(n, H, W)`` and labels (eV).
    cal : StoreData, optional
        Calibration images never used for training or early stopping (default: ``val``).
    recipe : Recipe
    seed : int
        Member k uses seed ``seed + 1000 k`` for initialisation, shuffling, augmentation, dropout.
    state_path : path, optional
        Where the per-epoch resumable state is written (``last.pt``); resumed from when present.
    callback : callable, optional
        Called after every epoch with the epoch record (may raise to stop training).
    device : {"auto", "cpu", "cuda"}
        Where the networks train (:func:`resolve_device`); images stay on the CPU and go over batch by
        batch, the returned members live on the CPU. Recorded in ``info["device"]``.

    Returns
    -------
    (RunModel, info)
        The calibrated ensemble and a JSON-able dict (history, best epochs, calibration, timing).
    """
    if train.image_shape != val.image_shape:
        raise InputError(f"train/val image shapes differ: {train.image_shape} vs {val.image_shape}")
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        seed_everything(seed)
        dev = resolve_device(device)
        run, info = _fit_ensemble(train, val, recipe, seed, state_path, resume, progress, callback, meta, dev)
        info["device"] = device_record(dev)
        return calibrate_run(run, train, val, val if cal is None else cal, recipe.coverage, info)
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)


def _fit_ensemble(train: StoreData, val: StoreData, recipe: Recipe, seed: int, state_path: str | Path | None,
                  resume: bool, progress: bool, callback: Callable[[dict], None] | None,
                  meta: dict[str, Any] | None, dev: torch.device) -> tuple[RunModel, dict[str, Any]]:
    """Train the ``recipe.ensemble`` members one after the other (member ``k`` seeded ``seed + 1000 k``),
    each early-stopped on ``val`` and optionally retrained on train + val for its best epoch count; the
    state after every epoch goes to ``state_path`` so that an interrupted run resumes where it stopped."""
    prep, (xtr, ytr), (xva, yva), y_mean, y_std = _tensors(train, val, recipe)
    signature = {"recipe": recipe.to_dict(), "seed": seed, "n_train": int(xtr.shape[0]),
                 "n_val": int(xva.shape[0]), "meta": meta or {}}
    state_path = Path(state_path) if state_path is not None else None
    finished, val_preds, member_info, resume_blob = [], [], [], None
    if resume:
        finished, val_preds, member_info, resume_blob = _resume_state(state_path, signature)

    t_start = time.perf_counter()
    skip_alpha, skip_table, skip_init = _skip_readout(prep, xtr, ytr, xva, yva, recipe, seed)
    for k in range(len(finished), recipe.ensemble):
        mseed = seed + 1000 * k
        torch.manual_seed(mseed)
        model = _init_model(recipe, prep.out_shape)
        if skip_init is not None:
            _init_skip(model, *skip_init)
        _on_device(model, dev)
        gen = torch.Generator().manual_seed(mseed)
        st = _MemberState(member=k)
        best: dict[str, Any] = {"state": None}
        pre_retrain: dict[str, Any] = {}

        def make_opt(m: nn.Module, epochs: int) -> tuple[torch.optim.Optimizer, Any]:
            opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=recipe.weight_decay)
            return opt, make_scheduler(opt, recipe, epochs, xtr.shape[0])

        opt, sched = make_opt(model, recipe.epochs)
        if resume_blob is not None and resume_blob["member"] == k:
            st = _MemberState(**resume_blob["st"])
            pre_retrain = resume_blob.get("pre_retrain", {})
            if st.phase == "retrain":
                n_ep = pre_retrain["best_epoch"] + 1
                opt, sched = make_opt(model, n_ep)
            model.load_state_dict(resume_blob["model"])
            opt.load_state_dict(resume_blob["opt"])
            sched.load_state_dict(resume_blob["sched"])
            gen.set_state(resume_blob["gen"])
            torch.set_rng_state(resume_blob["torch_rng"])
            best["state"] = resume_blob["best"]
            resume_blob = None

        def save(m: nn.Module, _info: dict | None) -> None:
            # late binding is the point: called during this member's epochs, it saves the member's *current*
            # state, optimiser, schedule and generator, which the retrain phase below replaces
            if state_path is None:
                return
            cur = {"member": k, "st": asdict(st), "model": _state_cpu(m), "opt": opt.state_dict(),  # noqa: B023
                   "sched": sched.state_dict(), "gen": gen.get_state(),  # noqa: B023
                   "torch_rng": torch.get_rng_state(), "best": best["state"], "pre_retrain": pre_retrain}  # noqa: B023
            save_torch_atomic({"signature": signature, "finished": finished, "val_preds": val_preds,
                               "member_info": member_info, "current": cur}, state_path)

        desc = f"member {k + 1}/{recipe.ensemble}"
        if st.phase == "fit":
            _train_epochs(model, opt, sched, gen, xtr, ytr, xva, yva, prep, recipe, st, recipe.epochs, y_std,
                          save, best, progress, desc, callback)
            model.load_state_dict(best["state"])
            pz = _predict_z(model, xva, prep)
            pre_retrain = {"val_pred": (pz * y_std + y_mean).tolist(), "best_epoch": st.best_epoch,
                           "best_val": st.best_val, "history": st.history}
            if recipe.retrain_full:
                torch.manual_seed(mseed + 1)
                model = _init_model(recipe, prep.out_shape)
                if skip_init is not None:
                    w_all, b_all = ridge_readout(prep.normalise(torch.cat([xtr, xva])), torch.cat([ytr, yva]),
                                                 skip_alpha)
                    _init_skip(model, w_all, b_all)
                _on_device(model, dev)
                gen = torch.Generator().manual_seed(mseed + 1)
                opt, sched = make_opt(model, st.best_epoch + 1)
                st = _MemberState(member=k, phase="retrain")
                best = {"state": None}
        if st.phase == "retrain":
            xall, yall = torch.cat([xtr, xva]), torch.cat([ytr, yva])
            _train_epochs(model, opt, sched, gen, xall, yall, None, None, prep, recipe, st,
                          pre_retrain["best_epoch"] + 1, y_std, save, best, progress, desc + " (train+val)", callback)
            model.load_state_dict(best["state"])
        finished.append(_state_cpu(model))
        val_preds.append(pre_retrain["val_pred"])
        member_info.append({"member": k, "seed": mseed, "best_epoch": pre_retrain["best_epoch"],
                            "best_val_loss": pre_retrain["best_val"], "history": pre_retrain["history"],
                            "retrain_history": st.history if recipe.retrain_full else []})
        if state_path is not None:
            save_torch_atomic({"signature": signature, "finished": finished, "val_preds": val_preds,
                               "member_info": member_info, "current": None}, state_path)

    run = RunModel(prep, _members(recipe, prep, finished), y_mean, y_std, recipe.clamp_min)
    mu = np.asarray(val_preds).mean(0)
    info = {"members": member_info, "train_seconds": time.perf_counter() - t_start,
            "target": {"mean": y_mean, "std": y_std},
            "val_mae": float(np.abs(mu - val.U).mean()), "n_train": int(xtr.shape[0]), "n_val": int(xva.shape[0]),
            "skip_ridge": {"alpha": skip_alpha, "selection": skip_table}}
    return run, info


def _tensors(train: StoreData, val: StoreData, recipe: Recipe) -> tuple[Preprocess, tuple, tuple, float, float]:
    """The fitted input preprocessing, (images, standardised U) of train and val, and the target scale."""
    prep = Preprocess(train.image_shape, recipe.input_size, recipe.per_image)
    xtr = prep.resize(torch.from_numpy(train.images))
    xva = prep.resize(torch.from_numpy(val.images))
    if recipe.standardise_inputs:
        prep.fit(xtr)
    y_mean = float(train.U.mean()) if recipe.standardise_targets else 0.0
    y_std = float(train.U.std()) if recipe.standardise_targets else 1.0
    if y_std <= 0:
        y_std = 1.0
    ytr = torch.from_numpy((train.U - y_mean) / y_std).float()
    yva = torch.from_numpy((val.U - y_mean) / y_std).float()
    return prep, (xtr, ytr), (xva, yva), y_mean, y_std


def _resume_state(state_path: Path | None, signature: dict[str, Any]) -> tuple[list, list, list, dict | None]:
    """Finished members, their validation predictions and records, and the interrupted member's state from
    ``state_path`` (nothing when it does not exist); refused when written by other settings or data."""
    if state_path is None or not state_path.exists():
        return [], [], [], None
    try:
        blob = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot resume: {str(state_path)!r} is unreadable ({type(exc).__name__}: {exc}); "
                         "delete it or rerun with --force") from None
    if blob.get("signature") != signature:
        raise InputError(f"cannot resume from {str(state_path)!r}: it was written by a run with other "
                         "settings or data; rerun with --force to start afresh")
    return blob["finished"], blob["val_preds"], blob["member_info"], blob.get("current")


def _skip_readout(prep: Preprocess, xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor,
                  recipe: Recipe, seed: int) -> tuple[float, list, Any]:
    """The frozen ridge read-out of the cnn's linear skip (``recipe.skip_ridge_alpha > 0``): the α chosen on
    val, the selection table and the initial weights (:func:`ridge_readout`); none otherwise."""
    if recipe.skip_ridge_alpha <= 0:
        return 0.0, [], None
    with torch.no_grad():
        clean = prep.normalise(xtr)
        noise_var = None
        if recipe.augment != "clean":
            # the frozen read-out is made blind to what the corruptions change: their per-pixel
            # variance, estimated from _RIDGE_AUG_COPIES corrupted copies, enters as a penalty
            g = torch.Generator().manual_seed(seed + 7919)
            noise_var = torch.stack([(prep.normalise(apply_augment(xtr, recipe.augment, g)) - clean)
                                     .pow(2).mean(0).flatten() for _ in range(_RIDGE_AUG_COPIES)]).mean(0)
        alpha, table = select_ridge_alpha(clean, ytr, prep.normalise(xva), yva, recipe.skip_ridge_alpha,
                                          noise_var=noise_var)
        return alpha, table, ridge_readout(clean, ytr, alpha, noise_var=noise_var)


def _members(recipe: Recipe, prep: Preprocess, states: list[dict[str, torch.Tensor]]) -> list[nn.Module]:
    """The trained members from their state dicts, in evaluation mode."""
    members = []
    for sd in states:
        m = _build(recipe, prep.out_shape)
        m.load_state_dict(sd)
        m.eval()
        members.append(m)
    return members


def calibrate_run(run: RunModel, train: StoreData, val: StoreData, cal: StoreData, coverage: float,
                  info: dict[str, Any]) -> tuple[RunModel, dict[str, Any]]:
    """Fit the input density on ``train``, σ̂ and the distance scales on ``val``, conformal q and the OOD
    threshold on ``cal``; set them (and the trained U range) on ``run``.

    Returns ``(run, info)`` with ``info["calibration"]`` and ``info["ood"]`` filled in.
    """
    with torch.no_grad():
        z = run.prep(torch.from_numpy(train.images))
        run.density = FeatureDensity.fit(z)
    run.u_range = (float(train.U.min()), float(train.U.max()))
    rv = run.raw(torch.from_numpy(val.images))
    sig_v = rv["members"].std(0) if rv["members"].shape[0] > 1 else np.zeros(len(val.U))
    norms = [float(np.median(v)) for v in (rv["dist_mahalanobis"], rv["dist_residual"], sig_v)]
    run.ood = {"norms": norms, "threshold": float("inf"), "quantile": OOD_QUANTILE}
    sv = run.scores(rv)
    mu_v = np.clip(rv["members"].mean(0), *run.u_range)
    coef = fit_difficulty(np.abs(val.U - mu_v), sv["sigma"], sv["dist"])
    rc = run.raw(torch.from_numpy(cal.images))
    sc = run.scores(rc)
    mu_c = np.clip(rc["members"].mean(0), *run.u_range)
    conf = calibrate(mu_c, cal.U, sigma_hat(coef, sc["sigma"], sc["dist"]), alpha=1.0 - coverage)
    conf |= {"coef": coef, "method": "normalised split-conformal, sigma_hat = a + b*spread + c*distance"}
    run.conformal = conf
    finite = sc["ood_score"][np.isfinite(sc["ood_score"])]
    thr = float(np.quantile(finite, OOD_QUANTILE, method="higher")) if finite.size else float("inf")
    run.ood["threshold"] = thr
    run.ood["n_cal"] = int(len(cal.U))
    d = run.finish(rc)
    info = dict(info) | {"calibration": conf, "ood": dict(run.ood), "u_range": list(run.u_range),
                         "n_cal": int(len(cal.U)),
                         "cal_mae": float(np.abs(d["mean"] - cal.U).mean()) if len(cal.U) else float("nan"),
                         "cal_in_distribution": float(np.mean(d["in_distribution"])) if len(cal.U) else float("nan")}
    return run, info


def checkpoint_dict(run: RunModel, recipe: Recipe, info: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Everything :func:`moireu.ml.predict.load_run` needs, as plain types + tensors."""
    return {
        "format": FORMAT,
        "model": recipe.model,
        "model_kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.model_kwargs.items()},
        "recipe": recipe.to_dict(),
        "preprocess": run.prep.spec(),
        "target": {"mean": float(run.y_mean), "std": float(run.y_std), "clamp_min": run.clamp_min},
        "conformal": info["calibration"],
        "ood": dict(run.ood),
        "density": None if run.density is None else _state_cpu(run.density),
        "u_range": None if run.u_range is None else list(run.u_range),
        "members": [_state_cpu(m) for m in run.members],
        "info": {k: v for k, v in info.items() if k not in ("calibration", "ood")},
        **extra,
    }


def train_run(data: str | Path, out: str | Path, cfg: Any, *, resume: bool = True, progress: bool = True,
              callback: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train on a dataset store and write a run directory.

    Writes ``out/checkpoint.pt`` (final), ``out/last.pt`` (resumable state, removed on success),
    ``out/curves.png``, ``out/train.json`` (summary). The caller stores config + provenance.

    Parameters
    ----------
    data : path
        Dataset store (see ``docs/ARCHITECTURE.md``).
    out : path
        Run directory.
    cfg : moireu.config.MoireuConfig
        Resolved configuration; ``cfg.train`` drives the recipe, ``cfg.seed`` every random choice.
    """
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    recipe = resolve_recipe(tc)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(data)
    grid = load_split(ds, "grid")
    fr = tc.split_fractions
    if fr[0] <= 0:
        raise InputError(f"train.val_fraction + cal_fraction + test_fraction = {1 - fr[0]:g} leaves nothing to train on")
    mode = recipe.split
    parts = split_indices(mode, len(grid.U), grid.variation, seed=cfg.seed, fractions=fr)
    train, val, cal = (grid.take(parts[k]) for k in ("train", "val", "cal"))
    fp = store_fingerprint(ds)
    run, info = fit_ensemble(train, val, recipe, seed=cfg.seed, cal=cal, state_path=out / "last.pt", resume=resume,
                             progress=progress, callback=callback, meta={"store": fp}, device=tc.device)
    extra = {"image_transform": grid.attrs.get("image_transform", {}), "store": fp,
             "split": {"mode": mode, "seed": PAPER_SEED if mode == "paper" else cfg.seed, "fractions": list(fr),
                       **{k: grid.index[v].tolist() for k, v in parts.items()}},
             "config": cfg.to_dict(), "provenance": provenance(), "data_path": str(Path(data).resolve())}
    save_torch_atomic(checkpoint_dict(run, recipe, info, extra), out / "checkpoint.pt")
    from moireu.plot.ml import plot_curves

    plot_curves(info, out / "curves.png", f"{recipe.model} · recipe {recipe.name} · K={recipe.ensemble}")
    summary = {"model": recipe.model, "recipe": recipe.to_dict(), "n_train": info["n_train"], "n_val": info["n_val"],
               "n_cal": info["n_cal"], "n_test": int(parts["test"].size), "split": mode,
               "val_mae": info["val_mae"], "cal_mae": info["cal_mae"], "calibration": info["calibration"],
               "ood": info["ood"], "cal_in_distribution": info["cal_in_distribution"], "u_range": info["u_range"],
               "best_epochs": [m["best_epoch"] for m in info["members"]], "train_seconds": info["train_seconds"],
               "epochs_run": [len(m["history"]) for m in info["members"]], "skip_ridge": info["skip_ridge"],
               "device": info["device"], "seconds_per_epoch": _seconds_per_epoch(info)}
    summary = json_safe(summary)  # a conformal q of +inf (too few calibration images) is written as null
    write_json_atomic(out / "train.json", summary)
    (out / "last.pt").unlink(missing_ok=True)
    return summary


def _seconds_per_epoch(info: dict[str, Any]) -> float | None:
    """Median wall seconds of one training epoch over every member and phase (the recipe's speed figure)."""
    sec = [h["seconds"] for m in info["members"] for h in m["history"] + m.get("retrain_history", [])]
    return float(np.median(sec)) if sec else None


def with_overrides(recipe: Recipe, **kw: Any) -> Recipe:
    """A copy of a recipe with some fields replaced (for sweeps and tests)."""
    return replace(recipe, **kw)
