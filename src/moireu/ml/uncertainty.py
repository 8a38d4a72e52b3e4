"""Deep ensembles calibrated by split-conformal prediction.

A deep ensemble (Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017) of K independently initialised
and shuffled networks gives, for an input x, member predictions ``ŷ_k(x)``, a mean
``μ(x) = (1/K) Σ_k ŷ_k(x)`` and a spread ``σ(x) = std_k ŷ_k(x)``.

Split-conformal calibration (Vovk et al. 2005; Lei et al., JASA 2018; Romano et al. 2019 for the
normalised score) turns these into intervals with guaranteed marginal coverage on exchangeable
data. On a calibration set (the validation split, never used for gradient steps) compute the
normalised scores

    s_i = |y_i − μ(x_i)| / (σ(x_i) + σ₀),

with ``σ₀`` = median of σ over the calibration set (``σ₀ = 1``, ``σ ≡ 0`` for K = 1, which gives
the plain absolute-residual score). With n scores and miscoverage α, let
``q = s_(⌈(n+1)(1−α)⌉)`` (the k-th smallest; ``+∞`` if k > n). The interval

    C(x) = [μ(x) − q (σ(x) + σ₀),  μ(x) + q (σ(x) + σ₀)]

then contains a new exchangeable y with probability ≥ 1 − α.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from moireu.ml.data import Preprocess

__all__ = ["conformal_quantile", "calibrate", "RunModel", "predict_tensor", "interval_coverage"]


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile ``s_(⌈(n+1)(1−α)⌉)`` of calibration scores (∞ if too few)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = s.size
    if n == 0:
        return math.inf
    k = int(math.ceil((n + 1) * (1.0 - alpha)))
    return math.inf if k > n else float(s[k - 1])


def calibrate(member_preds: np.ndarray, y: np.ndarray, alpha: float = 0.1) -> dict[str, float]:
    """Conformal constants from calibration predictions ``(K, n)`` and labels ``(n,)``.

    Returns ``{"q", "sigma0", "alpha", "n_cal"}`` (see the module docstring).
    """
    p = np.asarray(member_preds, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    mu = p.mean(0)
    if p.shape[0] > 1:
        sigma = p.std(0)
        sigma0 = float(max(np.median(sigma), 1e-6))
    else:
        sigma = np.zeros_like(mu)
        sigma0 = 1.0
    scores = np.abs(np.asarray(y, dtype=np.float64) - mu) / (sigma + sigma0)
    q = conformal_quantile(scores, alpha)
    return {"q": q, "sigma0": sigma0, "alpha": float(alpha), "n_cal": int(mu.size)}


def interval_coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of labels inside their interval."""
    y = np.asarray(y)
    return float(np.mean((y >= lower) & (y <= upper))) if y.size else math.nan


class RunModel(nn.Module):
    """A trained run as one module: stored image → U (eV).

    ``forward(x)`` takes stored images ``(n, 1, H, W)`` (or ``(n, H, W)``), applies the run's
    :class:`~moireu.ml.data.Preprocess`, averages the members and undoes the target
    standardisation, returning ``(n,)`` differentiably (for attribution methods).
    :meth:`predict` adds the calibrated interval.

    Attributes
    ----------
    prep : Preprocess
    members : nn.ModuleList
    gradcam_layer : str or None
        Dotted name of the last convolutional stage of the first member (``get_submodule``).
    """

    def __init__(self, prep: Preprocess, members: list[nn.Module], y_mean: float = 0.0, y_std: float = 1.0,
                 clamp_min: float | None = None, q: float = math.inf, sigma0: float = 1.0, alpha: float = 0.1) -> None:
        super().__init__()
        self.prep = prep
        self.members = nn.ModuleList(members)
        self.register_buffer("y_mean", torch.tensor(float(y_mean)))
        self.register_buffer("y_std", torch.tensor(float(y_std)))
        self.clamp_min = clamp_min
        self.q = float(q)
        self.sigma0 = float(sigma0)
        self.alpha = float(alpha)
        inner = getattr(members[0], "gradcam_layer", None) if members else None
        self.gradcam_layer = None if inner is None else f"members.0.{inner}"

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        u = z * self.y_std + self.y_mean
        return u.clamp_min(self.clamp_min) if self.clamp_min is not None else u

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(K, n) predictions in eV (differentiable)."""
        z = self.prep(x)
        return torch.stack([self._out(m(z)) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_outputs(x).mean(0)

    @torch.no_grad()
    def predict_members(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(K, n) predictions in eV, in eval mode, batched."""
        was = self.training
        self.eval()
        try:
            x = self.prep.check(torch.as_tensor(x))
            outs = [self.member_outputs(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
            return torch.cat(outs, dim=1) if outs else torch.zeros(len(self.members), 0)
        finally:
            self.train(was)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, lower, upper) in eV of the calibrated ``1 − α`` interval."""
        p = self.predict_members(x, batch_size)
        mu = p.mean(0)
        sigma = p.std(0, unbiased=False) if p.shape[0] > 1 else torch.zeros_like(mu)
        half = self.q * (sigma + self.sigma0)
        lo, hi = mu - half, mu + half
        if self.clamp_min is not None:
            lo = lo.clamp_min(self.clamp_min)
        return mu, lo, hi


def predict_tensor(models: RunModel, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean U and the calibrated interval ``(mean, lower, upper)`` for stored images ``x`` (eV)."""
    return models.predict(x, batch_size)
