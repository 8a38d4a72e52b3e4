"""How similar are the FT-LDOS images of different U? Cosine similarity of per-U mean images.

For each distinct U the mean image :math:`\\bar I_U` is z-scored,
:math:`z_U = (\\bar I_U - \\langle \\bar I_U\\rangle)/\\sigma(\\bar I_U)`, and

.. math:: S_{UU'} = \\frac{z_U \\cdot z_{U'}}{\\lVert z_U\\rVert\\,\\lVert z_{U'}\\rVert}.

The reference study reports min S > 99.98 %: the U signal is a tiny modulation on a dominant,
U-independent pattern, which is why a learned regressor is needed at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moireu.data.schema import U_DECIMALS
from moireu.errors import InputError


def unique_u(U: np.ndarray, decimals: int = U_DECIMALS) -> tuple[np.ndarray, np.ndarray]:
    """Distinct U values (sorted) and the index of each sample's value (rounded to ``decimals``; default
    the store's U rounding, :data:`moireu.data.schema.U_DECIMALS`)."""
    u = np.round(np.asarray(U, float), decimals)
    vals, inv = np.unique(u, return_inverse=True)
    return vals, inv


def mean_per_u(images: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U values, mean image per U) for images (n, ny, nx)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] != len(U):
        raise InputError(f"images must be (n, ny, nx) with n = len(U) = {len(U)}, got {images.shape}")
    vals, inv = unique_u(U)
    means = np.stack([images[inv == j].astype(np.float64).mean(axis=0) for j in range(len(vals))])
    return vals, means


def zscore(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation over all but the first axis (constant arrays → zeros)."""
    x = np.asarray(x, float)
    flat = x.reshape(x.shape[0], -1)
    mu = flat.mean(axis=1, keepdims=True)
    sd = flat.std(axis=1, keepdims=True)
    return ((flat - mu) / np.where(sd > 0, sd, 1.0)).reshape(x.shape)


@dataclass(frozen=True)
class SimilarityResult:
    """U values, cosine similarity matrix S (m, m) and its minimum (with the pair attaining it)."""

    U: np.ndarray
    matrix: np.ndarray
    minimum: float
    argmin: tuple[float, float]

    def summary(self) -> dict:
        off = self.matrix[~np.eye(len(self.U), dtype=bool)]
        return {"U": self.U.tolist(), "min_similarity": self.minimum,
                "min_pair_U": list(self.argmin),
                "mean_offdiag_similarity": float(off.mean()) if off.size else 1.0,
                "matrix": self.matrix.tolist()}


def cosine_similarity_matrix(images: np.ndarray, U: np.ndarray) -> SimilarityResult:
    """Cosine similarity between z-scored mean FT-LDOS images of every pair of U values."""
    vals, means = mean_per_u(images, U)
    z = zscore(means).reshape(len(vals), -1)
    nrm = np.linalg.norm(z, axis=1)
    nrm = np.where(nrm > 0, nrm, 1.0)
    S = (z @ z.T) / np.outer(nrm, nrm)
    S = np.clip(S, -1.0, 1.0)
    i, j = np.unravel_index(np.argmin(S), S.shape)
    return SimilarityResult(vals, S, float(S[i, j]), (float(vals[i]), float(vals[j])))
