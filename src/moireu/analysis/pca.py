"""Principal component analysis of FT-LDOS images.

Images are flattened to vectors :math:`x_s \\in \\mathbb R^{HW}`, centred by the mean image, and
decomposed by a (seeded, randomized where large) SVD as in scikit-learn's ``PCA``. We report the
explained-variance ratios :math:`\\lambda_j/\\sum_l \\lambda_l` (the reference reports
56.8 / 26.8 / 6.1 % for the first three), the components as eigen-images, the projections
:math:`p_{sj} = (x_s - \\bar x)\\cdot v_j` as a function of U, and per-U pixel variance maps
:math:`\\mathrm{Var}_{s: U_s = U}[I_s(k)]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moireu.errors import InputError

from .similarity import unique_u


@dataclass(frozen=True)
class PCAResult:
    """Fitted PCA: ratios (k,), components (k, ny, nx), mean image (ny, nx), projections (n, k)."""

    explained_variance_ratio: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    projections: np.ndarray

    def transform(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, float).reshape(len(images), -1) - self.mean.reshape(1, -1)
        return x @ self.components.reshape(len(self.components), -1).T


def fit_pca(images: np.ndarray, n_components: int = 10, seed: int = 0) -> PCAResult:
    """PCA of images (n, ny, nx); ``n_components`` is capped at min(n, ny·nx)."""
    from sklearn.decomposition import PCA

    images = np.asarray(images)
    if images.ndim != 3:
        raise InputError(f"images must be (n, ny, nx), got shape {images.shape}")
    n, ny, nx = images.shape
    k = int(min(n_components, n, ny * nx))
    if k < 1:
        raise InputError(f"PCA needs at least one image and one component, got n={n}, n_components={n_components}")
    X = images.reshape(n, -1).astype(np.float64)
    pca = PCA(n_components=k, random_state=seed, svd_solver="auto")
    P = pca.fit_transform(X)
    comps = pca.components_.copy()
    # an SVD fixes components only up to sign: make the largest-|.| pixel of each eigen-image positive
    for j in range(k):
        if comps[j, np.argmax(np.abs(comps[j]))] < 0:
            comps[j] *= -1
            P[:, j] *= -1
    return PCAResult(pca.explained_variance_ratio_.copy(), comps.reshape(k, ny, nx), pca.mean_.reshape(ny, nx),
                     P)


def projections_vs_u(proj: np.ndarray, U: np.ndarray) -> dict[str, np.ndarray]:
    """Per distinct U: mean and standard deviation of each projection: arrays (m,), (m, k), (m, k)."""
    vals, inv = unique_u(U)
    mean = np.stack([proj[inv == j].mean(axis=0) for j in range(len(vals))])
    std = np.stack([proj[inv == j].std(axis=0) for j in range(len(vals))])
    return {"U": vals, "mean": mean, "std": std}


def variance_maps(images: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct U the pixel-wise variance over its samples: (U values (m,), maps (m, ny, nx))."""
    vals, inv = unique_u(U)
    maps = np.stack([images[inv == j].astype(np.float64).var(axis=0) for j in range(len(vals))])
    return vals, maps
