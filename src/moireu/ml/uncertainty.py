"""Deep ensembles with normalised split-conformal intervals and an out-of-distribution score.

A deep ensemble (Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017) of K independently initialised
and shuffled networks gives, for an input x, member predictions ``ŷ_k(x)``, a mean
``μ(x) = (1/K) Σ_k ŷ_k(x)`` and a spread ``σ(x) = std_k ŷ_k(x)``.

**Distance to the training set** (:class:`FeatureDensity`). The network input ``z(x)`` (the
preprocessed image, flattened to P pixels) is compared with the training inputs through a PCA
``z ≈ m + Vᵀ c`` with k components (variances λ_j) fitted on the training split:

* ``D_M(x) = √((1/k) Σ_j c_j² / (λ_j + λ_floor))``, the RMS Mahalanobis distance inside the PCA
  subspace (Mahalanobis 1936; Lee et al., NeurIPS 2018, use it on network features for OOD
  detection), with ``λ_floor = 10⁻³ λ_1``;
* ``D_R(x) = ‖z − m − Vᵀc‖ / √P``, the reconstruction residual outside it.

**Out-of-distribution score.** Each of ``D_M``, ``D_R`` and ``σ`` is divided by its median over the
validation split, and ``s_OOD(x) = max(D̃_M, D̃_R, σ̃)``. The threshold ``τ`` is the 99 % quantile
of ``s_OOD`` over the calibration split (crops never trained on), so 99 % of in-distribution
images pass; ``s_OOD > τ`` (or an input that is constant) flags the input out of distribution.

**Normalised (locally weighted) split-conformal intervals** (Vovk et al. 2005; Lei, G'Sell,
Rinaldo, Tibshirani, Wasserman, JASA 113, 1094 (2018), sect. 5.2). A difficulty scale

    σ̂(x) = a + b σ(x) + c D̃(x),   D̃ = max(D̃_M, D̃_R)   (a, b, c ≥ 0),

is fitted by non-negative least squares of ``|y − μ|`` on the validation split (``a`` floored at
5 % of the mean validation error), so the interval widens with the ensemble's disagreement and
with the distance of the input from the training images (input quality). On the calibration split
(n images, not used for any fit) the scores ``s_i = |y_i − μ_i| / σ̂(x_i)`` give
``q = s_(⌈(n+1)(1−α)⌉)`` (the k-th smallest; ``+∞`` if k > n) and the interval

    C(x) = [μ(x) − q σ̂(x),  μ(x) + q σ̂(x)] ∩ [U_min, U_max]

contains a new exchangeable label with probability ≥ 1 − α. The prediction is clipped to the
trained range ``[U_min, U_max]``; intersecting the interval with the range cannot lose coverage
of a label inside it. When the raw interval misses the range entirely, or the input is out of
distribution (where exchangeability with the calibration set, hence the guarantee, is lost), the
interval is the whole trained range: the model cannot place the answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from moireu.ml.data import Preprocess

__all__ = ["conformal_quantile", "calibrate", "fit_difficulty", "FeatureDensity", "RunModel", "predict_tensor",
           "interval_coverage", "OOD_QUANTILE"]

#: fraction of calibration images that the out-of-distribution threshold keeps in distribution
OOD_QUANTILE = 0.99


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile ``s_(⌈(n+1)(1−α)⌉)`` of calibration scores (∞ if too few)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = s.size
    if n == 0:
        return math.inf
    k = int(math.ceil((n + 1) * (1.0 - alpha)))
    return math.inf if k > n else float(s[k - 1])


def fit_difficulty(abs_err: np.ndarray, sigma: np.ndarray, dist: np.ndarray) -> list[float]:
    """Coefficients ``(a, b, c) ≥ 0`` of ``σ̂ = a + b σ + c D̃`` by non-negative least squares on ``|y − μ|``.

    ``a`` is floored at 5 % of the mean absolute error so that σ̂ > 0 everywhere.
    """
    from scipy.optimize import nnls

    e = np.asarray(abs_err, dtype=np.float64).ravel()
    if e.size == 0:
        return [1.0, 0.0, 0.0]
    A = np.column_stack([np.ones_like(e), np.asarray(sigma, np.float64).ravel(), np.asarray(dist, np.float64).ravel()])
    coef, _ = nnls(A, e)
    floor = max(0.05 * float(e.mean()), 1e-6)
    coef[0] = max(float(coef[0]), floor)
    return [float(c) for c in coef]


def sigma_hat(coef: list[float] | np.ndarray, sigma: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """``σ̂ = a + b σ + c D̃`` (numpy)."""
    a, b, c = (float(v) for v in coef)
    return a + b * np.asarray(sigma, np.float64) + c * np.asarray(dist, np.float64)


def calibrate(mu: np.ndarray, y: np.ndarray, scale: np.ndarray | None = None, alpha: float = 0.1) -> dict[str, float]:
    """Split-conformal quantile of the normalised scores ``|y − μ| / σ̂`` on a calibration set.

    Parameters
    ----------
    mu : array (n,)
        Predictions (or ``(K, n)`` member predictions, averaged).
    y : array (n,)
        Labels.
    scale : array (n,), optional
        σ̂ of each calibration input (1 when omitted: the plain absolute-residual score).
    alpha : float
        Miscoverage.

    Returns
    -------
    dict
        ``{"q", "alpha", "n_cal"}``.
    """
    p = np.asarray(mu, dtype=np.float64)
    if p.ndim == 2:
        p = p.mean(0)
    s = np.ones_like(p) if scale is None else np.asarray(scale, np.float64)
    scores = np.abs(np.asarray(y, dtype=np.float64) - p) / s
    return {"q": conformal_quantile(scores, alpha), "alpha": float(alpha), "n_cal": int(p.size)}


def interval_coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of labels inside their interval."""
    y = np.asarray(y)
    return float(np.mean((y >= lower) & (y <= upper))) if y.size else math.nan


class FeatureDensity(nn.Module):
    """PCA model of the training inputs: Mahalanobis distance inside, residual outside (see module doc).

    Parameters
    ----------
    n_features : int
        P, the number of input pixels.
    n_components : int
        k.
    """

    def __init__(self, n_features: int, n_components: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("components", torch.zeros(n_components, n_features))
        self.register_buffer("eigvals", torch.ones(n_components))

    @classmethod
    @torch.no_grad()
    def fit(cls, z: torch.Tensor, max_components: int = 32, explained: float = 0.99) -> "FeatureDensity":
        """PCA of training inputs ``z`` (n, P): the fewest components explaining ``explained`` of the
        variance, at most ``max_components`` and ``n − 1``."""
        z = z.flatten(1).double()
        n, p = z.shape
        m = z.mean(0)
        _, s, vt = torch.linalg.svd(z - m, full_matrices=False)
        lam = s**2 / max(n - 1, 1)
        frac = torch.cumsum(lam, 0) / lam.sum().clamp_min(1e-300)
        k = int(torch.searchsorted(frac, torch.tensor(explained, dtype=frac.dtype)).item()) + 1
        k = max(1, min(k, max_components, max(n - 1, 1), vt.shape[0]))
        out = cls(p, k)
        out.mean.copy_(m.float())
        out.components.copy_(vt[:k].float())
        out.eigvals.copy_(lam[:k].float())
        return out

    @torch.no_grad()
    def distances(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_M, D_R)`` for inputs ``z`` (n, …) flattened to (n, P)."""
        d = z.flatten(1).float() - self.mean
        c = d @ self.components.T
        lam = self.eigvals + 1e-3 * self.eigvals[0]
        dm = ((c**2) / lam).mean(1).sqrt()
        res = d - c @ self.components
        dr = res.pow(2).mean(1).sqrt()
        return dm, dr


class RunModel(nn.Module):
    """A trained run as one module: stored image → U (eV).

    ``forward(x)`` takes stored images ``(n, 1, H, W)`` (or ``(n, H, W)``), applies the run's
    :class:`~moireu.ml.data.Preprocess`, averages the members and undoes the target
    standardisation, returning ``(n,)`` differentiably (for attribution methods; not clipped).
    :meth:`predict` adds the clipping and the calibrated interval, :meth:`predict_details` the
    out-of-distribution score.

    Attributes
    ----------
    prep : Preprocess
    members : nn.ModuleList
    density : FeatureDensity or None
    conformal : dict
        ``q``, ``alpha``, ``coef`` (a, b, c of σ̂), ``n_cal``.
    ood : dict
        ``norms`` (medians of D_M, D_R, σ on validation), ``threshold``, ``quantile``.
    u_range : (float, float) or None
        The trained U range the predictions are clipped to.
    gradcam_layer : str or None
        Dotted name of the last convolutional stage of the first member (``get_submodule``).
    """

    def __init__(self, prep: Preprocess, members: list[nn.Module], y_mean: float = 0.0, y_std: float = 1.0,
                 clamp_min: float | None = None, conformal: dict[str, Any] | None = None,
                 density: FeatureDensity | None = None, ood: dict[str, Any] | None = None,
                 u_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.prep = prep
        self.members = nn.ModuleList(members)
        self.register_buffer("y_mean", torch.tensor(float(y_mean)))
        self.register_buffer("y_std", torch.tensor(float(y_std)))
        self.clamp_min = clamp_min
        conf = dict(conformal or {})
        if "coef" not in conf:  # checkpoints before normalised conformal: σ̂ = σ + σ₀
            conf["coef"] = [float(conf.get("sigma0", 1.0)), 1.0, 0.0]
        conf.setdefault("q", math.inf)
        conf.setdefault("alpha", 0.1)
        self.conformal = conf
        self.density = density
        self.ood = dict(ood or {})
        self.u_range = None if u_range is None else (float(u_range[0]), float(u_range[1]))
        inner = getattr(members[0], "gradcam_layer", None) if members else None
        self.gradcam_layer = None if inner is None else f"members.0.{inner}"

    @property
    def alpha(self) -> float:
        return float(self.conformal["alpha"])

    @property
    def q(self) -> float:
        return float(self.conformal["q"])

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
    def raw(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Member predictions ``(K, n)`` (eV), ``D_M``, ``D_R`` and whether each input is constant."""
        was = self.training
        self.eval()
        try:
            x = self.prep.check(torch.as_tensor(x))
            preds, dm, dr, const = [], [], [], []
            for i in range(0, x.shape[0], batch_size):
                xb = self.prep.resize(x[i:i + batch_size])
                const.append(xb.flatten(1).std(1) <= 1e-12 * xb.flatten(1).abs().amax(1).clamp_min(1e-30))
                z = self.prep.normalise(xb)
                preds.append(torch.stack([self._out(m(z)) for m in self.members]))
                if self.density is not None:
                    a, b = self.density.distances(z)
                    dm.append(a)
                    dr.append(b)
            k = len(self.members)
            cat = lambda L, shape: torch.cat(L).numpy().astype(np.float64) if L else np.zeros(shape)  # noqa: E731
            p = torch.cat(preds, dim=1).numpy().astype(np.float64) if preds else np.zeros((k, 0))
            n = p.shape[1]
            return {"members": p, "dist_mahalanobis": cat(dm, (n,)) if self.density is not None else np.zeros(n),
                    "dist_residual": cat(dr, (n,)) if self.density is not None else np.zeros(n),
                    "constant": torch.cat(const).numpy() if const else np.zeros(0, bool)}
        finally:
            self.train(was)

    def scores(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalised distances, spread, the input-distance term D̃ and the OOD score from :meth:`raw`."""
        p = raw["members"]
        sigma = p.std(0) if p.shape[0] > 1 else np.zeros(p.shape[1])
        norms = self.ood.get("norms", [0.0, 0.0, 0.0])
        comp = []
        for v, nm in zip((raw["dist_mahalanobis"], raw["dist_residual"], sigma), norms):
            comp.append(v / nm if nm > 0 else np.zeros_like(v))
        dist = np.maximum(comp[0], comp[1])
        score = np.maximum(dist, comp[2])
        score = np.where(raw["constant"], np.inf, score)
        return {"sigma": sigma, "dist": dist, "ood_score": score, "ood_mahalanobis": comp[0],
                "ood_residual": comp[1], "ood_spread": comp[2]}

    def finish(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Clipped mean, calibrated interval and the OOD decision from :meth:`raw`."""
        sc = self.scores(raw)
        mu_raw = raw["members"].mean(0)
        mu = mu_raw.copy()
        sh = sigma_hat(self.conformal["coef"], sc["sigma"], sc["dist"])
        half = self.q * sh
        lo, hi = mu - half, mu + half
        if self.u_range is not None:
            ulo, uhi = self.u_range
            mu = np.clip(mu, ulo, uhi)
            miss = (hi < ulo) | (lo > uhi)
            lo, hi = np.clip(lo, ulo, uhi), np.clip(hi, ulo, uhi)
            lo, hi = np.where(miss, ulo, lo), np.where(miss, uhi, hi)
        elif self.clamp_min is not None:
            lo = np.maximum(lo, self.clamp_min)
        thr = float(self.ood.get("threshold", math.inf))
        ind = sc["ood_score"] <= thr
        if self.u_range is not None:  # outside the calibrated domain the interval is the whole trained range
            lo, hi = np.where(ind, lo, self.u_range[0]), np.where(ind, hi, self.u_range[1])
        return sc | {"mean": mu, "mean_unclipped": mu_raw, "lower": lo, "upper": hi, "sigma_hat": sh,
                     "in_distribution": ind, "clipped": mu != mu_raw}

    @torch.no_grad()
    def predict_details(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Everything about a batch of stored images: members, mean, interval, OOD score and decision."""
        raw = self.raw(x, batch_size)
        return raw | self.finish(raw)

    @torch.no_grad()
    def predict_members(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(K, n) predictions in eV, in eval mode, batched."""
        return torch.from_numpy(self.raw(x, batch_size)["members"]).float()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, lower, upper) in eV: the clipped mean and the calibrated ``1 − α`` interval."""
        d = self.predict_details(x, batch_size)
        return tuple(torch.from_numpy(np.asarray(d[k], dtype=np.float64)) for k in ("mean", "lower", "upper"))


def predict_tensor(models: RunModel, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean U and the calibrated interval ``(mean, lower, upper)`` for stored images ``x`` (eV)."""
    return models.predict(x, batch_size)
