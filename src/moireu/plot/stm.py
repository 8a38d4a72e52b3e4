"""Figures for looking at STM results (PNG, colour-mapped): never used as data.

The stored data are the float32 arrays (:func:`moireu.stm.ftldos.ftldos`,
:func:`moireu.stm.patch.render_map`); these functions only draw them (DataArrays with coordinates
``x, y`` in Å or ``kx, ky`` in Å⁻¹), with the Bragg peaks of both layers and the moiré satellites
(``peaks``: the plain dict of arrays ``bragg``, ``bragg_layer``, ``moire`` of the simulation) marked
on the FT-LDOS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.plot import pyplot, save_png

DPI = 130

__all__ = ["draw_map", "draw_ft", "stm_figure", "comparison_figure"]


def draw_map(ax: Any, m: Any, title: str = "", cmap: str = "inferno") -> Any:
    """Real-space map (DataArray (y, x), Å) with equal aspect."""
    x, y = m.x.values, m.y.values
    im = ax.imshow(m.values, origin="lower", cmap=cmap, extent=(x[0], x[-1], y[0], y[-1]), interpolation="nearest")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(title, fontsize=9)
    return im


def draw_ft(ax: Any, img: Any, peaks: dict[str, np.ndarray] | None = None, title: str = "",
            cmap: str = "magma", legend: bool = True) -> Any:
    """FT-LDOS image (DataArray (ky, kx), Å⁻¹) with Bragg peaks (circles, one colour per layer) and
    moiré satellites (small crosses)."""
    kx, ky = img.kx.values, img.ky.values
    a = img.values
    lo, hi = np.percentile(a, [1.0, 99.7])
    im = ax.imshow(a, origin="lower", cmap=cmap, vmin=lo, vmax=hi, extent=(kx[0], kx[-1], ky[0], ky[-1]),
                   interpolation="nearest")
    if peaks is not None:
        cols = ["#35b779", "#31a8ff"]
        for lay in np.unique(peaks.get("bragg_layer", np.zeros(0, int))):
            b = peaks["bragg"][peaks["bragg_layer"] == lay]
            ax.scatter(b[:, 0], b[:, 1], s=90, facecolors="none", edgecolors=cols[int(lay) % 2], lw=1.0,
                       label=f"Bragg, layer {int(lay)}")
        mo = peaks.get("moire", np.zeros((0, 2)))
        if len(mo):
            ax.scatter(mo[:, 0], mo[:, 1], s=10, marker="x", color="w", lw=0.6, alpha=0.7, label="moiré")
        if legend:
            ax.legend(loc="lower left", fontsize=6, framealpha=0.6)
    ax.set_xlim(kx[0], kx[-1])
    ax.set_ylim(ky[0], ky[-1])
    ax.set_xlabel("k_x (Å⁻¹)")
    ax.set_ylabel("k_y (Å⁻¹)")
    ax.set_title(title, fontsize=9)
    return im


def stm_figure(m: Any, img: Any, peaks: dict[str, np.ndarray] | None, path: str | Path, title: str = "") -> Path:
    """Two panels: rendered LDOS map and FT-LDOS with peaks marked."""
    plt = pyplot()
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 4.6))
    fig.colorbar(draw_map(a0, m, "simulated STM map (tip-height p_z spots)"), ax=a0, shrink=0.8)
    fig.colorbar(draw_ft(a1, img, peaks, "FT-LDOS |F(k)| (" + str(img.attrs.get("normalize", "")) + ")"),
                 ax=a1, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=DPI)


def comparison_figure(panels: Sequence[tuple[str, Any, Any]], peaks: dict[str, np.ndarray] | None,
                      path: str | Path, title: str = "") -> Path:
    """Columns of (label, map, FT image): maps on the top row, FT-LDOS below (e.g. U = 0 vs U = 6 eV)."""
    plt = pyplot()
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 8.6), squeeze=False)
    for j, (label, m, img) in enumerate(panels):
        fig.colorbar(draw_map(axes[0, j], m, f"{label}: LDOS map"), ax=axes[0, j], shrink=0.8)
        fig.colorbar(draw_ft(axes[1, j], img, peaks, f"{label}: FT-LDOS", legend=(j == 0)), ax=axes[1, j], shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=DPI)
