"""Figures of the dataset stage: viewable PNGs of the stored images (for looking only: the store keeps
the float32 data) and the overview of one image per (split, U, ν)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from moireu.plot import png_bytes, pyplot, save_png

__all__ = ["display_range", "image_png", "overview_figure"]


def display_range(img: np.ndarray) -> tuple[float, float]:
    """Colour range for looking: the 1st–99.5th percentiles (FT-LDOS is dominated by a few peaks)."""
    lo, hi = np.percentile(img, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def image_png(img: np.ndarray, cmap: str, title: str | None = None) -> bytes:
    """PNG bytes of one image (origin lower, colours clipped to :func:`display_range`): one pixel per
    value without ``title``, a small titled figure with it."""
    plt = pyplot()
    lo, hi = display_range(img)
    if title is None:
        buf = io.BytesIO()
        plt.imsave(buf, img, cmap=cmap, origin="lower", format="png", vmin=lo, vmax=hi)
        return buf.getvalue()
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    ax.imshow(img, cmap=cmap, origin="lower", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return png_bytes(fig, bbox_inches="tight")


def overview_figure(images: Iterable[np.ndarray], titles: Sequence[str], extent: Sequence[float], cmap: str,
                    suptitle: str, path: str | Path) -> Path:
    """Grid of images (at most 6 columns, each clipped to :func:`display_range`) with their titles,
    written atomically as PNG.

    ``images`` may be a generator (read one at a time); ``titles`` sets the number of panels;
    ``extent`` is ``[kx_min, kx_max, ky_min, ky_max]`` in Å⁻¹.
    """
    plt = pyplot()
    ncol = min(6, len(titles))
    nrow = int(np.ceil(len(titles) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.3 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        lo, hi = display_range(img)
        ax.imshow(img, cmap=cmap, origin="lower", extent=list(extent), vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    return save_png(fig, path, dpi=110, bbox_inches="tight")
