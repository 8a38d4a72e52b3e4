"""Structure factors of weighted points: :math:`F(\\mathbf k) = \\sum_i w_i e^{-i\\,\\mathbf k\\cdot\\mathbf r_i}`.

The lowest layer of :mod:`moireu.stm`: the rectangular k window (:class:`FTWindow`), the transform on
its grid (:func:`ft_grid`), at scattered wave vectors (:func:`ft_points`) and the direct sum
(:func:`ft_direct`) the two are tested against. Images built on them: :mod:`moireu.stm.ftldos`.

Algorithm (why type 1). The output points form a uniform grid,
:math:`k_{x,j} = k_{x,c} + m\\,\\Delta k_x` with integer :math:`m \\in [-\\lfloor N/2\\rfloor, \\lceil N/2\\rceil - 1]`
and :math:`k_{x,c} = -k_{x,\\max} + \\lfloor N/2\\rfloor\\Delta k_x`. Hence

.. math::  F(k_{x,j}, k_{y,l}) = \\sum_i \\big[w_i e^{-i(k_{x,c}x_i + k_{y,c}y_i)}\\big]\\,
           e^{-i(m\\,X_i + n\\,Y_i)},\\qquad X_i = \\Delta k_x x_i,\\ Y_i = \\Delta k_y y_i,

which is exactly a 2-D **type-1** NUFFT (non-uniform points → uniform modes) of the rescaled points
(reduced mod 2π, which is exact because m, n are integers) with pre-phased strengths. Type 1 costs
one spreading pass over the M atoms plus one FFT of the 2N × 2N oversampled grid,
O(M w² + N² log N) with kernel width w ≈ ``|log10 ε|`` + 1, and needs no extra work for an arbitrary
window. A type-3 transform (arbitrary k) would add a second spreading/interpolation pass and a
larger fine grid (its size grows with the product of the real-space and k-space extents), so it is
used only for scattered k points (:func:`ft_points`). Accuracy: finufft's relative ℓ2 error
tolerance ``eps`` (default 1e-10) guarantees agreement with the direct sum well below 1e-6
(Barnett, Magland & af Klinteberg, SIAM J. Sci. Comput. 41, C479 (2019)).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from moireu.constants import A_LAT, SQRT3
from moireu.errors import InputError

__all__ = ["DEFAULT_EPS", "FTWindow", "check_n", "check_points", "ft_direct", "ft_grid", "ft_points", "default_threads"]

DEFAULT_EPS = 1e-10


@dataclass(frozen=True)
class FTWindow:
    """Rectangular k window ``kx ∈ [−kx_max, kx_max]``, ``ky ∈ [−ky_max, ky_max]`` (Å⁻¹)."""

    kx_max: float
    ky_max: float

    def __post_init__(self) -> None:
        for name in ("kx_max", "ky_max"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"FT window {name} must be a positive number of Å⁻¹, got {v!r}")

    @classmethod
    def reference(cls, scale: float = 1.1, a: float = A_LAT) -> "FTWindow":
        """The reference window: ``scale·(2π/a, 4π/(√3 a))`` (scale 1.1, a = 2.46 Å)."""
        if not (np.isfinite(scale) and scale > 0):
            raise InputError(f"window scale must be positive, got {scale!r}")
        return cls(scale * 2.0 * math.pi / a, scale * 4.0 * math.pi / (SQRT3 * a))

    def axes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(kx, ky) grid axes of an n × n image (end points included)."""
        n = check_n(n)
        return np.linspace(-self.kx_max, self.kx_max, n), np.linspace(-self.ky_max, self.ky_max, n)

    def to_dict(self) -> dict[str, float]:
        return {"kx_max": float(self.kx_max), "ky_max": float(self.ky_max)}


def check_n(n: Any) -> int:
    """Validate the image size N (an integer ≥ 8)."""
    try:
        ni = int(n)
    except (TypeError, ValueError):
        raise InputError(f"FT-LDOS image size N must be an integer ≥ 8, got {n!r}") from None
    if ni != n or ni < 8:
        raise InputError(f"FT-LDOS image size N must be an integer ≥ 8, got {n!r}")
    return ni


def default_threads() -> int:
    """finufft threads: OMP_NUM_THREADS when set (the dask workers set it), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "0")) or (os.cpu_count() or 1))
    except ValueError:
        return os.cpu_count() or 1


def check_points(xy: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (M, 2) float and weights (M,) of a transform, or InputError (shape, empty, non-finite)."""
    xy = np.asarray(xy, dtype=float)
    w = np.asarray(w)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(f"positions must have shape (M, 2), got {xy.shape}")
    xy = xy[:, :2]
    if w.shape != (xy.shape[0],):
        raise InputError(f"weights must have shape ({xy.shape[0]},), got {w.shape}")
    if xy.shape[0] == 0:
        raise InputError("the patch holds no points (zero atoms)")
    if not (np.all(np.isfinite(xy)) and np.all(np.isfinite(w))):
        raise InputError("positions and weights must be finite (found NaN or inf)")
    return xy, w


def ft_grid(xy: np.ndarray, w: np.ndarray, n: int, window: FTWindow | None = None,
            eps: float = DEFAULT_EPS, nthreads: int | None = None) -> np.ndarray:
    """Complex :math:`F(k_x, k_y)=\\sum_i w_i e^{-i k\\cdot r_i}` on the n × n window grid, array (ky, kx).

    finufft type 1 after rescaling (see the module docstring); ``eps`` is finufft's tolerance.
    """
    import finufft

    xy, w = check_points(xy, w)
    window = window or FTWindow.reference()
    kx, ky = window.axes(n)
    dkx, dky = kx[1] - kx[0], ky[1] - ky[0]
    h = n // 2
    kcx, kcy = kx[h], ky[h]
    x, y = xy[:, 0], xy[:, 1]
    # centre the points first: |F| is unchanged, and the rescaled phases stay small
    cx, cy = 0.5 * (x.min() + x.max()), 0.5 * (y.min() + y.max())
    xs, ys = x - cx, y - cy
    c = w.astype(np.complex128) * np.exp(-1j * (kcx * xs + kcy * ys))
    X = np.remainder(dkx * xs + np.pi, 2 * np.pi) - np.pi
    Y = np.remainder(dky * ys + np.pi, 2 * np.pi) - np.pi
    # finufft 2-D type 1: f[l, j] = Σ c e^{isign i (m X + n Y)}, output (n_modes_x, n_modes_y) with
    # x modes along axis 0 (modeord=0: modes increasing from -N//2)
    f = finufft.nufft2d1(X, Y, c, (n, n), eps=eps, isign=-1, nthreads=nthreads or default_threads())
    F = f.T  # (ky, kx)
    # undo the centring shift: e^{-i k·r} = e^{-i k·(r_s + c)}
    F = F * np.exp(-1j * (ky[:, None] * cy + kx[None, :] * cx))
    return F


def ft_points(xy: np.ndarray, w: np.ndarray, k: np.ndarray, eps: float = DEFAULT_EPS,
              nthreads: int | None = None) -> np.ndarray:
    """:math:`F(\\mathbf k)` at scattered wave vectors ``k`` (K, 2) Å⁻¹ with a finufft type-3 transform."""
    import finufft

    xy, w = check_points(xy, w)
    k = np.asarray(k, dtype=float)
    if k.ndim != 2 or k.shape[1] != 2:
        raise InputError(f"k must have shape (K, 2), got {k.shape}")
    return finufft.nufft2d3(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]),
                            w.astype(np.complex128), np.ascontiguousarray(k[:, 0]),
                            np.ascontiguousarray(k[:, 1]), eps=eps, isign=-1,
                            nthreads=nthreads or default_threads())


def ft_direct(xy: np.ndarray, w: np.ndarray, kx: np.ndarray, ky: np.ndarray,
              chunk_bytes: int = 64 << 20) -> np.ndarray:
    """Reference direct sum on the grid ky × kx, array (len(ky), len(kx)).

    NumPy, chunked over k points: for each chunk the phase matrix
    :math:`\\exp(-i\\,\\mathbf k\\cdot\\mathbf r_i)` of shape (chunk, M) is formed and contracted
    with the weights, i.e. O(N_k · M) complex exponentials — the way the reference code evaluates
    the FT-LDOS. Used in tests and as the benchmark baseline.
    """
    xy, w = check_points(xy, w)
    kx = np.asarray(kx, dtype=float)
    ky = np.asarray(ky, dtype=float)
    KX, KY = np.meshgrid(kx, ky)
    kk = np.stack([KX.ravel(), KY.ravel()], axis=1)
    out = np.empty(kk.shape[0], dtype=np.complex128)
    m = xy.shape[0]
    step = max(1, int(chunk_bytes // (16 * m)))
    wc = w.astype(np.complex128)
    for s in range(0, kk.shape[0], step):
        ph = kk[s:s + step] @ xy.T  # (chunk, M)
        out[s:s + step] = np.exp(-1j * ph) @ wc
    return out.reshape(len(ky), len(kx))
