"""Every figure of moireu: the one home of matplotlib (import-linter contract in pyproject.toml).

Modules (one per stage drawn for)
---------------------------------
lattice
    Band structure and DOS (``moireu bands``).
hf
    Order parameters of a U sweep.
stm
    Simulated STM maps and FT-LDOS images with the Bragg peaks and moiré satellites marked.
data
    Viewable PNGs of a dataset store's images and its overview.
ml
    Training curves; parity and residual plots of an evaluation.
analysis
    Figures of the analysis stage (similarity, PCA, attribution, crossover).
raster
    The reference pipeline's image rasterisation (turbo PNG → 8-bit grayscale → 256², arXiv:2602.18890).

The figure functions take arrays, plain dicts and DataArrays and import no stage: the stages pass
their data in. matplotlib is imported inside the functions, with the ``Agg`` backend (no display
needed), through the shared helpers here: :func:`use_agg` / :func:`pyplot` to draw, :func:`png_bytes` /
:func:`save_png` to render a figure and write it atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["use_agg", "pyplot", "png_bytes", "save_png", "is_colormap"]


def use_agg() -> Any:
    """``matplotlib`` with the ``Agg`` backend selected (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the ``Agg`` backend."""
    use_agg()
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, **savefig_kw: Any) -> bytes:
    """Render ``fig`` as PNG bytes (``fig.savefig(..., format="png", **savefig_kw)``) and close it."""
    import io

    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig_kw)
    plt.close(fig)
    return buf.getvalue()


def save_png(fig: Any, path: str | Path, **savefig_kw: Any) -> Path:
    """Render ``fig`` as PNG (:func:`png_bytes`), close it and write the file atomically (no half-written
    figure on a crash). Returns ``Path(path)``."""
    from moireu.provenance import write_bytes_atomic

    return write_bytes_atomic(path, png_bytes(fig, **savefig_kw))


def is_colormap(name: str) -> bool:
    """Whether ``name`` is a registered matplotlib colour map (e.g. ``magma``, ``viridis``, ``gray``)."""
    import matplotlib

    return name in matplotlib.colormaps
