"""The reference analysis (Tanksale & Stauber, arXiv:2602.18890): PCA of per-U mean images and its baselines.

PCA. The reference decomposes the **per-U mean images** :math:`\\bar I_U = \\langle I_s\\rangle_{s:U_s=U}`
(one row per distinct U), not every image: the explained-variance ratios (reference: 56.8 / 26.8 /
6.1 %) then measure how the mean image moves with U, free of the within-U scatter of crops.
Every image is projected on those components for the trajectory plots.

Baselines. Each image is z-scored, :math:`z = (I - \\langle I\\rangle)/\\sigma_I`, and high-passed by
subtracting its Gaussian blur, :math:`h = z - G_{\\sigma} * z` with σ = 4 px (removes the smooth
background, keeps the peaks); the flattened :math:`h` go through a per-pixel ``StandardScaler``,
``PCA(3)`` and either ``Ridge(α = 1)`` or ``KernelRidge(kernel="rbf", α = 1e-3, γ = 1e-3)``, fitted
on a random 80 % of the grid samples (``train_test_split(test_size=0.2, random_state=101)``) and
scored on the other 20 % and on the held-out fractional-U samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moireu.errors import InputError

from .baselines import BaselineResult, regression_metrics
from .pca import PCAResult, fit_pca
from .similarity import unique_u

__all__ = ["per_u_mean_images", "paper_pca", "highpass_zscore", "paper_split", "paper_baselines",
           "HIGHPASS_SIGMA", "SPLIT_SEED"]

HIGHPASS_SIGMA = 4.0
SPLIT_SEED = 101


def per_u_mean_images(images: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct U values (m,) and the mean image of each, (m, ny, nx) float64."""
    images = np.asarray(images)
    if images.ndim != 3 or len(images) != len(U):
        raise InputError(f"images must be (n, ny, nx) with one U each, got {images.shape} and {np.shape(U)}")
    vals, inv = unique_u(U)
    return vals, np.stack([images[inv == j].astype(np.float64).mean(axis=0) for j in range(len(vals))])


def paper_pca(images: np.ndarray, U: np.ndarray, n_components: int = 3, seed: int = 0) -> tuple[PCAResult, np.ndarray]:
    """PCA fitted on the per-U mean images; ``projections`` are those of *every* image.

    Returns
    -------
    (PCAResult, U values of the means)
        ``explained_variance_ratio`` is the reference's number (variance of the per-U means).
    """
    vals, means = per_u_mean_images(images, U)
    if len(vals) < 2:
        raise InputError(f"PCA of per-U mean images needs at least 2 distinct U, got {len(vals)}")
    fit = fit_pca(means, n_components, seed=seed)
    proj = fit.transform(np.asarray(images, dtype=np.float64))
    return PCAResult(fit.explained_variance_ratio, fit.components, fit.mean, proj), vals


def highpass_zscore(images: np.ndarray, sigma: float = HIGHPASS_SIGMA) -> np.ndarray:
    """Per-image z-score minus its Gaussian blur (σ in pixels): (n, ny, nx) float64."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise InputError(f"images must be (n, ny, nx), got shape {x.shape}")
    if not sigma > 0:
        raise InputError(f"high-pass σ must be > 0 pixels, got {sigma}")
    mu = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    z = (x - mu) / np.where(sd > 0, sd, 1.0)
    return z - gaussian_filter(z, sigma=(0, sigma, sigma), mode="reflect")


def paper_split(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The reference's 80/20 split of positions ``0..n−1`` (scikit-learn ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    if n < 5:
        raise InputError(f"the 80/20 split needs at least 5 samples, got {n}")
    tr, te = train_test_split(np.arange(n), test_size=0.2, random_state=seed)
    return np.asarray(tr, np.int64), np.asarray(te, np.int64)


def paper_baselines(images: np.ndarray, U: np.ndarray, heldout_images: np.ndarray | None = None,
                    heldout_U: np.ndarray | None = None, seed: int = SPLIT_SEED,
                    sigma: float = HIGHPASS_SIGMA) -> list[BaselineResult]:
    """PCA(3)+ridge and PCA(3)+RBF kernel ridge on high-passed z-scored images (module docstring).

    Parameters
    ----------
    images, U : grid samples (split 80/20 with ``seed``).
    heldout_images, heldout_U : optional held-out samples, scored as ``heldout``.
    """
    from sklearn.decomposition import PCA
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = highpass_zscore(images, sigma).reshape(len(images), -1)
    y = np.asarray(U, dtype=float)
    tr, te = paper_split(len(y), seed)
    sets = {"test": (X[te], y[te])}
    if heldout_images is not None and heldout_U is not None and len(heldout_U):
        sets["heldout"] = (highpass_zscore(heldout_images, sigma).reshape(len(heldout_U), -1),
                           np.asarray(heldout_U, float))
    k = int(min(3, len(tr)))
    regs: list[tuple[str, dict[str, Any], Any]] = [
        ("paper PCA(3)+ridge", {"k": k, "alpha": 1.0}, Ridge(alpha=1.0)),
        ("paper PCA(3)+kernel ridge", {"k": k, "alpha": 1e-3, "gamma": 1e-3, "kernel": "rbf"},
         KernelRidge(alpha=1e-3, kernel="rbf", gamma=1e-3))]
    out = []
    for name, params, reg in regs:
        pipe = make_pipeline(StandardScaler(), PCA(n_components=k, svd_solver="full"), reg).fit(X[tr], y[tr])
        res = BaselineResult(name, params | {"highpass_sigma_px": sigma, "split_seed": seed, "n_train": int(len(tr))})
        for split, (xs, ys) in sets.items():
            pred = pipe.predict(xs)
            res.metrics[split] = regression_metrics(ys, pred)
            res.predictions[split] = {"U": ys.tolist(), "pred": pred.tolist()}
        out.append(res)
    return out
