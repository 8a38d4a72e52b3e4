"""The reference pipeline's rasterisation: ``|F|`` → turbo PNG → PIL grayscale → bilinear 256² in [0, 1].

Tanksale & Stauber (arXiv:2602.18890, public code) do not feed ``|F|`` to the network. They draw it
with ``imshow(|F|, cmap="turbo", origin="lower")`` and per-image automatic colour limits
(``vmin = min |F|``, ``vmax = max |F|``) on an 8 × 8 in figure at 112 dpi with the axes off,
save it as an 8-bit RGB PNG with a tight bounding box (≈ 694 × 689 px), read it back with PIL
``convert("L")`` (ITU-R 601-2 luma, ``L = (299 R + 587 G + 114 B) / 1000``), resize it bilinearly
to 256 × 256 and divide by 255. Turbo → luma is not monotonic in ``|F|`` (turbo's dark red top end
has L ≈ 0.2), so the k = 0 maximum comes out dark: that is the reference, reproduced as is.

:func:`render_png` and :func:`png_to_gray` are the two halves; :func:`paper_raster` chains them.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.plot import use_agg

__all__ = ["RasterSpec", "render_png", "png_to_gray", "paper_raster", "luma"]


@dataclass(frozen=True)
class RasterSpec:
    """Settings of the reference rasterisation (defaults: the reference's values)."""

    figsize_in: float = 8.0
    dpi: int = 112
    cmap: str = "turbo"
    size: int = 256

    def __post_init__(self) -> None:
        if not (self.figsize_in > 0 and self.dpi > 0 and self.size >= 8):
            raise InputError(f"raster figure size, dpi must be positive and size ≥ 8, got {asdict(self)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of 8-bit RGB, as PIL's ``convert("L")`` computes it (rounded to 8 bit)."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def render_png(amplitude: np.ndarray, spec: RasterSpec = RasterSpec()) -> bytes:
    """``imshow(amplitude, cmap, origin="lower")`` with automatic limits, axes off, tight PNG bytes.

    The image fills the default axes box of the figure (``aspect="auto"``) and the tight bounding
    box is taken without padding: 8 in × 112 dpi gives the reference's ≈ 694 × 689 px.
    """
    a = np.asarray(amplitude, dtype=float)
    if a.ndim != 2 or min(a.shape) < 2:
        raise InputError(f"amplitude must be a 2-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError("amplitude contains NaN or inf")
    use_agg()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(spec.figsize_in, spec.figsize_in), dpi=spec.dpi)
    ax = fig.add_subplot(111)
    ax.imshow(a, cmap=spec.cmap, origin="lower", aspect="auto", interpolation="antialiased")
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=spec.dpi, bbox_inches="tight", pad_inches=0)
    return buf.getvalue()


def png_to_gray(png: bytes, size: int = 256) -> np.ndarray:
    """PNG bytes → PIL ``convert("L")`` → bilinear resize to ``size × size`` → float32 in [0, 1].

    The returned array is (rows, columns) in the PNG's top-down row order.
    """
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(png))
        img.load()
    except Exception as exc:
        raise InputError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    g = img.convert("L").resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(g, dtype=np.float32) / 255.0


def paper_raster(amplitude: np.ndarray, spec: RasterSpec = RasterSpec()) -> np.ndarray:
    """The reference network input of an ``|F|`` array: :func:`render_png` then :func:`png_to_gray`.

    Returns
    -------
    ndarray (size, size) float32 in [0, 1], flipped to ``origin="lower"`` row order (row 0 = lowest
    k_y), like the arrays of our own FT-LDOS images.
    """
    return np.ascontiguousarray(png_to_gray(render_png(amplitude, spec), spec.size)[::-1])
