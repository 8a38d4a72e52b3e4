"""Real-space patches of the periodic LDOS, rendered STM maps, and Bragg / moiré peak positions.

Patch. The per-atom LDOS of one moiré cell is periodic, LDOS(r_i + n_1 t_1 + n_2 t_2) = LDOS(r_i).
A patch is the set of lattice sites inside the P × P parallelogram
:math:`\\{\\mathbf o + f_1 \\mathbf t_1 + f_2 \\mathbf t_2 : 0 \\le f_{1,2} < P\\}` whose origin
:math:`\\mathbf o` is the *offset* (Å). With half-open boundaries every offset gives exactly
P² N atoms; the offset changes which atoms sit at the patch edges (a dataset variation, it moves
the window of the crop relative to the moiré pattern). The patch is then rotated by ``rotation_deg``
about its centre (an in-plane sample rotation; the FT pattern rotates with it) and optionally
cropped to a centred rectangle or disc, like an STM frame.

Rendered map (Tersoff–Hamann, PRB 31, 805 (1985)). The tunnelling conductance at the tip position
:math:`\\mathbf R = (x, y, h)` is :math:`\\propto \\sum_i \\mathrm{LDOS}_i\\, |\\phi(\\mathbf R - \\mathbf r_i)|^2`
with a p_z orbital on each atom. For a Slater p_z orbital
:math:`\\phi(\\mathbf r) \\propto z\\, e^{-\\zeta r}` the spot is

.. math::  s(\\rho) = \\frac{h^2}{\\rho^2 + h^2}\\, e^{-2\\zeta(\\sqrt{\\rho^2 + h^2} - h)}

(normalised to s(0) = 1), with ζ = 1.5679 bohr⁻¹ = 2.963 Å⁻¹ for the carbon 2p shell
(Clementi & Raimondi, J. Chem. Phys. 38, 2686 (1963)) so that the spot widens with the tip
height h; the ``"gaussian"`` spot is :math:`e^{-\\rho^2/2\\sigma^2}` with σ = ``spot_width``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.lattice.geometry import rotation

BOHR = 0.529177210903  # Å
ZETA_C2P = 1.5679 / BOHR  # Å⁻¹, Clementi–Raimondi exponent of the C 2p orbital


@dataclass(frozen=True)
class Patch:
    """Points of a patch: positions ``xy`` (M, 2) Å, ``values`` (M,), atom index into the cell, geometry."""

    xy: np.ndarray
    values: np.ndarray
    atom: np.ndarray
    center: np.ndarray
    cells: int
    offset: tuple[float, float]
    rotation_deg: float

    def attrs(self) -> dict[str, Any]:
        return {"patch_cells": self.cells, "offset_x": float(self.offset[0]), "offset_y": float(self.offset[1]),
                "rotation_deg": float(self.rotation_deg), "n_atoms": int(self.xy.shape[0])}


def build_patch(xy: np.ndarray, cell: np.ndarray, values: np.ndarray | None = None, cells: int = 6,
                offset: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0,
                crop: tuple[float, float] | float | None = None) -> Patch:
    """Tile the per-atom values of one cell over a P × P patch (see the module docstring).

    Parameters
    ----------
    xy : ndarray (N, 2) or (N, 3)
        Atom positions in one cell (Å); only x, y are used.
    cell : ndarray (2, 2)
        Lattice vectors t1, t2 as rows (Å).
    values : ndarray (N,), optional
        Per-atom values (LDOS); ones if omitted.
    cells : int
        P ≥ 1.
    offset : (float, float)
        Origin of the patch parallelogram (Å).
    rotation_deg : float
        Rotation of the patch about its centre (degrees, counter-clockwise).
    crop : float or (float, float), optional
        Keep only atoms inside a centred disc of this radius (float) or a centred axis-aligned
        rectangle (width, height) after rotation (Å).

    Returns
    -------
    Patch
        Positions are relative to the patch centre (the centre is at the origin).
    """
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] < 2 or xy.shape[0] == 0:
        raise InputError(f"cell positions must have shape (N, 2|3) with N ≥ 1, got {xy.shape}")
    xy = xy[:, :2]
    cell = np.asarray(cell, dtype=float)
    if cell.shape != (2, 2) or abs(np.linalg.det(cell)) < 1e-9:
        raise InputError(f"cell must be two independent lattice vectors (2, 2), got {cell.tolist()}")
    vals = np.ones(len(xy)) if values is None else np.asarray(values, dtype=float)
    if vals.shape != (len(xy),):
        raise InputError(f"values must have one entry per atom ({len(xy)}), got shape {vals.shape}")
    try:
        P = int(cells)
    except (TypeError, ValueError):
        raise InputError(f"patch cells must be an integer ≥ 1, got {cells!r}") from None
    if P != cells or P < 1:
        raise InputError(f"patch must hold at least one moiré cell: cells = P ≥ 1, got {cells!r}")
    off = np.asarray(offset, dtype=float).reshape(2)
    if not np.all(np.isfinite(off)) or not math.isfinite(rotation_deg):
        raise InputError(f"offset {offset!r} and rotation {rotation_deg!r} must be finite")
    inv = np.linalg.inv(cell)
    # reduce the offset into the first cell: the tiling range [-1, P] then covers the parallelogram
    f_off = off @ inv
    f_red = f_off - np.floor(f_off)
    o_red = f_red @ cell
    n = np.arange(-1, P + 1)
    n1, n2 = np.meshgrid(n, n, indexing="ij")
    shifts = np.stack([n1.ravel(), n2.ravel()], axis=1) @ cell  # (T, 2)
    pts = (xy[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    atom = np.tile(np.arange(len(xy)), len(shifts))
    f = (pts - o_red) @ inv
    tol = 1e-9
    keep = np.all((f >= -tol) & (f < P - tol), axis=1)
    pts, atom = pts[keep], atom[keep]
    center = o_red + 0.5 * P * (cell[0] + cell[1])
    rel = (pts - center) @ rotation(math.radians(rotation_deg)).T
    if crop is not None:
        if np.ndim(crop) == 0:
            r = float(crop)  # type: ignore[arg-type]
            if not r > 0:
                raise InputError(f"crop radius must be positive, got {crop!r}")
            inside = np.hypot(rel[:, 0], rel[:, 1]) <= r
        else:
            wd, ht = (float(c) for c in crop)  # type: ignore[union-attr]
            if not (wd > 0 and ht > 0):
                raise InputError(f"crop rectangle must have positive sides, got {crop!r}")
            inside = (np.abs(rel[:, 0]) <= wd / 2) & (np.abs(rel[:, 1]) <= ht / 2)
        rel, atom = rel[inside], atom[inside]
        if len(rel) == 0:
            raise InputError(f"crop {crop!r} leaves no atoms in the patch")
    return Patch(xy=rel, values=vals[atom], atom=atom, center=center, cells=P,
                 offset=(float(off[0]), float(off[1])), rotation_deg=float(rotation_deg))


def patch_points(xy: np.ndarray, cell: np.ndarray, values: np.ndarray | None = None, cells: int = 6,
                 offset: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0,
                 crop: tuple[float, float] | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(xy, w)`` of :func:`build_patch` (positions relative to the patch centre, tiled values)."""
    p = build_patch(xy, cell, values, cells, offset, rotation_deg, crop)
    return p.xy, p.values


def spot_profile(rho: np.ndarray, tip_height: float = 3.0, orbital: str = "slater",
                 spot_width: float = 0.7, zeta: float = ZETA_C2P) -> np.ndarray:
    """Tip-height spot s(ρ) of one atom (s(0) = 1), see the module docstring."""
    rho = np.asarray(rho, dtype=float)
    if orbital == "slater":
        h = float(tip_height)
        if not h > 0:
            raise InputError(f"tip height must be positive (Å), got {tip_height!r}")
        r2 = rho * rho + h * h
        return (h * h / r2) * np.exp(-2.0 * zeta * (np.sqrt(r2) - h))
    if orbital == "gaussian":
        if not spot_width > 0:
            raise InputError(f"spot width must be positive (Å), got {spot_width!r}")
        return np.exp(-0.5 * (rho / spot_width) ** 2)
    raise InputError(f"orbital {orbital!r} not supported; allowed: slater, gaussian")


def render_map(xy: np.ndarray, w: np.ndarray, pixels: int = 256, extent: tuple[float, float, float, float] | None = None,
               tip_height: float = 3.0, orbital: str = "slater", spot_width: float = 0.7,
               rel_cutoff: float = 1e-4) -> Any:
    """Rendered constant-height STM (dI/dV) map :math:`I(\\mathbf R)=\\sum_i w_i\\, s(|\\mathbf R-\\mathbf r_i|)`.

    Parameters
    ----------
    xy, w : (M, 2) positions (Å) and weights (LDOS).
    pixels : int
        Image is pixels × pixels (≥ 8).
    extent : (xmin, xmax, ymin, ymax), optional
        Å; default: the largest centred square inside the points' bounding box.
    tip_height, orbital, spot_width : see :func:`spot_profile`.
    rel_cutoff : float
        Spots are truncated where s < rel_cutoff.

    Returns
    -------
    xarray.DataArray (y, x) float32 with coordinates in Å (pixel centres).
    """
    import xarray as xr

    from moireu.stm.ft import check_points

    xy, w = check_points(xy, w)
    w = np.asarray(w, dtype=float)
    if int(pixels) != pixels or pixels < 8:
        raise InputError(f"map size must be an integer ≥ 8 pixels, got {pixels!r}")
    if extent is None:
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        c = 0.5 * (lo + hi)
        half = 0.5 * float(min(hi - lo))
        if half <= 0:
            half = 5.0
        extent = (c[0] - half, c[0] + half, c[1] - half, c[1] + half)
    x0, x1, y0, y1 = (float(v) for v in extent)
    px, py = (x1 - x0) / pixels, (y1 - y0) / pixels
    xs = x0 + (np.arange(pixels) + 0.5) * px
    ys = y0 + (np.arange(pixels) + 0.5) * py
    # spot radius where the profile drops below rel_cutoff
    rr = np.linspace(0, 30.0, 3001)
    prof = spot_profile(rr, tip_height, orbital, spot_width)
    rcut = float(rr[np.argmax(prof < rel_cutoff)]) if np.any(prof < rel_cutoff) else 30.0
    nx, ny = int(math.ceil(rcut / px)) + 1, int(math.ceil(rcut / py)) + 1
    ix0 = np.floor((xy[:, 0] - x0) / px - 0.5).astype(int)
    iy0 = np.floor((xy[:, 1] - y0) / py - 0.5).astype(int)
    # only atoms whose spot reaches the frame
    sel = (ix0 >= -nx - 1) & (ix0 <= pixels + nx) & (iy0 >= -ny - 1) & (iy0 <= pixels + ny)
    xa, ya, wa, ix0, iy0 = xy[sel, 0], xy[sel, 1], w[sel], ix0[sel], iy0[sel]
    img = np.zeros(pixels * pixels)
    for dy in range(-ny, ny + 2):
        iy = iy0 + dy
        oky = (iy >= 0) & (iy < pixels)
        for dx in range(-nx, nx + 2):
            ix = ix0 + dx
            ok = oky & (ix >= 0) & (ix < pixels)
            if not ok.any():
                continue
            rho = np.hypot(xs[ix[ok]] - xa[ok], ys[iy[ok]] - ya[ok])
            val = wa[ok] * spot_profile(rho, tip_height, orbital, spot_width) * (rho <= rcut)
            img += np.bincount(iy[ok] * pixels + ix[ok], weights=val, minlength=pixels * pixels)
    da = xr.DataArray(img.reshape(pixels, pixels).astype(np.float32), dims=("y", "x"),
                      coords={"y": ("y", ys, {"units": "Angstrom"}), "x": ("x", xs, {"units": "Angstrom"})},
                      name="ldos_map",
                      attrs={"quantity": "rendered LDOS map sum_i LDOS_i s(|R - r_i|)", "tip_height": float(tip_height),
                             "orbital": orbital, "spot_width": float(spot_width), "pixel_size_x": px,
                             "pixel_size_y": py})
    return da


def reciprocal_peaks(positions: np.ndarray, cell: np.ndarray, layer: np.ndarray | None = None,
                     sublattice: np.ndarray | None = None, window: Any = None, tol: float = 1e-6
                     ) -> dict[str, np.ndarray]:
    """Bragg peaks of each graphene layer and first-shell moiré satellites inside a k window.

    Every reciprocal vector of a layer's graphene lattice is a superlattice reciprocal vector
    :math:`\\mathbf G = m_1\\mathbf b_1 + m_2\\mathbf b_2` (commensurate structure). G is a Bragg
    peak of layer l iff the structure factor of that layer's A sublattice,
    :math:`|\\sum_{i\\in l,A} e^{-i\\mathbf G\\cdot\\mathbf r_i}| / N_{l,A}`, equals 1. Moiré
    satellites are the non-Bragg G within :math:`1.01\\,|\\mathbf b_{\\max}|` of a Bragg peak, plus
    the first moiré shell around k = 0.

    Returns
    -------
    dict with ``bragg`` (n, 2), ``bragg_layer`` (n,), ``moire`` (m, 2) in Å⁻¹.
    """
    from moireu.stm.ft import FTWindow

    window = window or FTWindow.reference()
    pos = np.asarray(positions, dtype=float)[:, :2]
    cell = np.asarray(cell, dtype=float)
    rec = 2 * np.pi * np.linalg.inv(cell).T  # rows b1, b2
    layer = np.zeros(len(pos), int) if layer is None else np.asarray(layer, int)
    sub = np.zeros(len(pos), int) if sublattice is None else np.asarray(sublattice, int)
    # m_i = G·t_i / 2π, so |m_i| ≤ |G|max |t_i| / 2π covers the window
    kcorner = math.hypot(window.kx_max, window.ky_max)
    mmax = int(math.ceil(kcorner * float(np.linalg.norm(cell, axis=1).max()) / (2 * np.pi))) + 1
    m = np.arange(-mmax, mmax + 1)
    M1, M2 = np.meshgrid(m, m, indexing="ij")
    G = np.stack([M1.ravel(), M2.ravel()], axis=1) @ rec
    inwin = (np.abs(G[:, 0]) <= window.kx_max) & (np.abs(G[:, 1]) <= window.ky_max)
    G = G[inwin]
    bragg, blayer = [], []
    is_bragg = np.zeros(len(G), bool)
    for lay in np.unique(layer):
        idx = (layer == lay) & (sub == 0)
        if not idx.any():
            continue
        S = np.abs(np.exp(-1j * G @ pos[idx].T).sum(axis=1)) / idx.sum()
        hit = (S > 1 - 1e-6) & (np.linalg.norm(G, axis=1) > tol)
        bragg.append(G[hit])
        blayer.append(np.full(hit.sum(), lay))
        is_bragg |= hit
    B = np.concatenate(bragg) if bragg else np.zeros((0, 2))
    origin = np.linalg.norm(G, axis=1) <= tol
    cand = G[~is_bragg & ~origin]
    bmax = float(max(np.linalg.norm(rec, axis=1)))
    centres = np.vstack([B, np.zeros((1, 2))])
    if len(cand):
        d = np.linalg.norm(cand[:, None, :] - centres[None], axis=2).min(axis=1)
        moire = cand[d <= 1.01 * bmax]
    else:
        moire = np.zeros((0, 2))
    return {"bragg": B, "bragg_layer": np.concatenate(blayer) if blayer else np.zeros(0, int), "moire": moire}
