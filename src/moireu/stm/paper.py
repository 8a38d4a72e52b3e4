"""The reference pipeline's FT-LDOS (Tanksale & Stauber, arXiv:2602.18890), for reproducing it.

The reference image of one LDOS state is built in two steps; this module is the physics half,
:mod:`moireu.plot.raster` the drawing half.

1. The structure factor of the LDOS-weighted atoms, **without** subtracting the mean LDOS,

   .. math::  F(\\mathbf k) = \\sum_i \\mathrm{LDOS}_i\\, e^{-i\\mathbf k\\cdot\\mathbf r_i},

   on a 1003 × 1003 grid of the reference window
   :math:`k_x \\in \\tfrac{2\\pi}{a}[-1.1, 1.1]`, :math:`k_y \\in \\tfrac{4\\pi}{\\sqrt3 a}[-1.1, 1.1]`
   (end points included, a = 2.46 Å). Without mean subtraction the k = 0 peak
   :math:`F(0) = \\sum_i \\mathrm{LDOS}_i` and the Bragg peaks of the lattice form factor dominate ``|F|``.
   The grid is :func:`moireu.stm.ft.ft_grid` (finufft type 1; agrees with the direct sum).
2. ``|F|`` drawn with the turbo colour map, saved as PNG, read back in grayscale and resized to
   256 × 256 (:func:`moireu.plot.raster.paper_raster`).

The atoms are a P × P patch of moiré cells (:func:`moireu.stm.patch.build_patch`, the dataset's
``stm.patch_cells``) placed at an image's patch offset and rotation, so that a paper image and one
of ours of the same sample see the same atoms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.stm.ft import FTWindow, ft_grid
from moireu.stm.patch import build_patch

__all__ = ["PaperTransform", "paper_amplitude", "paper_image", "PAPER_GRID"]

#: points per axis of the reference's ``|F|`` grid
PAPER_GRID = 1003


@dataclass(frozen=True)
class PaperTransform:
    """Every setting of the reference image (stored as the ``image_transform`` of a paper store).

    Attributes
    ----------
    grid : int
        Points per axis of the ``|F|`` grid (1003).
    window_scale : float
        The window is ``window_scale · (2π/a, 4π/(√3 a))`` (1.1).
    figsize_in, dpi, cmap, size
        The rasterisation (:class:`moireu.plot.raster.RasterSpec`: 8 in, 112 dpi, turbo, 256 px).
    patch_cells : int
        P of the P × P patch of moiré cells whose atoms enter the sum.
    """

    grid: int = PAPER_GRID
    window_scale: float = 1.1
    figsize_in: float = 8.0
    dpi: int = 112
    cmap: str = "turbo"
    size: int = 256
    patch_cells: int = 8

    def __post_init__(self) -> None:
        if int(self.grid) != self.grid or self.grid < 8:
            raise InputError(f"paper |F| grid must be an integer ≥ 8, got {self.grid!r}")
        if int(self.patch_cells) != self.patch_cells or self.patch_cells < 1:
            raise InputError(f"patch_cells must be an integer ≥ 1, got {self.patch_cells!r}")

    @property
    def window(self) -> FTWindow:
        return FTWindow.reference(self.window_scale)

    def raster(self) -> Any:
        from moireu.plot.raster import RasterSpec

        return RasterSpec(self.figsize_in, self.dpi, self.cmap, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "paper", **asdict(self), "subtract_mean": False,
                "reference": "Tanksale & Stauber, arXiv:2602.18890"}


#: finufft tolerance of the paper transform: far below the 8-bit quantisation (≈ 4e-3) the image goes through
PAPER_EPS = 1e-8


def paper_amplitude(xy: np.ndarray, ldos: np.ndarray, grid: int = PAPER_GRID,
                    window: FTWindow | None = None, eps: float = PAPER_EPS) -> np.ndarray:
    """``|F(k)|`` = ``|Σ_i LDOS_i e^{−ik·r_i}|`` on the ``grid × grid`` window, array (ky, kx), no mean
    subtraction."""
    ldos = np.asarray(ldos, dtype=float)
    if not np.isfinite(ldos).all():
        raise InputError("LDOS contains NaN or inf")
    return np.abs(ft_grid(np.asarray(xy, dtype=float)[:, :2], ldos, int(grid), window or FTWindow.reference(), eps=eps))


def paper_image(atom_xyz: np.ndarray, cell: np.ndarray, ldos: np.ndarray,
                transform: PaperTransform = PaperTransform(), offset: tuple[float, float] = (0.0, 0.0),
                rotation_deg: float = 0.0) -> np.ndarray:
    """The reference network input of one per-atom LDOS of a moiré cell.

    Parameters
    ----------
    atom_xyz : ndarray (N, 2|3)
        Atom positions in the moiré cell (Å).
    cell : ndarray (2, 2)
        Moiré lattice vectors as rows (Å).
    ldos : ndarray (N,)
        Per-atom LDOS at one bias (1/eV).
    transform : PaperTransform
    offset, rotation_deg
        Patch origin (Å) and rotation (degrees) of this image.

    Returns
    -------
    ndarray (size, size) float32 in [0, 1] (row 0 = lowest k_y).
    """
    from moireu.plot.raster import paper_raster

    patch = build_patch(atom_xyz, cell, ldos, cells=transform.patch_cells, offset=offset, rotation_deg=rotation_deg)
    amp = paper_amplitude(patch.xy, patch.values, transform.grid, transform.window)
    return paper_raster(amp, transform.raster())
