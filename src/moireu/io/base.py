"""What every map reader returns: :class:`MapData` (a pixel grid) or :class:`AtomTable` (per-atom values).

These two containers are the whole interface between file formats (:mod:`moireu.io`) and the
measurement model (:mod:`moireu.stm.measure`, :mod:`moireu.stm.align`); they import nothing from
the physics stages.

Conventions of :class:`MapData`: ``values[iy, ix]`` with **x growing with the column index and y
growing with the row index** (row 0 is the bottom line of the frame, as in a plot with
``origin="lower"``); pixel ``(ix, iy)`` is centred at ``((ix + ½) p_x, (iy + ½) p_y)`` Å from the
frame's lower-left corner. Readers of formats whose first row is the top of the image (PNG/TIFF,
Nanonis "down" scans) flip the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moireu.errors import InputError


def check_pixel_size(value: Any, source: str = "map") -> tuple[float, float]:
    """``(p_x, p_y)`` in Å from one or two positive finite numbers (InputError otherwise)."""
    if value is None:
        raise InputError(f"{source}: a 2-D map needs its pixel size in Å (--pixel-size, a sidecar JSON "
                         "'<map>.json' with 'pixel_size', or an .npz key 'pixel_size')")
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{source}: pixel size must be one or two positive numbers (Å), got {value!r}") from None
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{source}: pixel size must be one or two positive numbers (Å), got {value!r}")
    return float(arr[0]), float(arr[1])


@dataclass
class MapData:
    """A real-space STM map on a square-pixel (or rectangular-pixel) grid.

    Attributes
    ----------
    values : ndarray (ny, nx) float64
        dI/dV (or current, height …) in any unit; see the module docstring for the orientation.
    pixel_size : (p_x, p_y)
        Å per pixel.
    meta : dict
        Where it came from (``source``), scan parameters of a simulated map, channel of an .sxm …
    """

    values: np.ndarray
    pixel_size: tuple[float, float]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = str(self.meta.get("source", "map"))
        v = np.asarray(self.values)
        if v.dtype.kind == "c":
            raise InputError(f"{src}: complex map values; give the real dI/dV (or |.|) map")
        if v.dtype.kind not in "biuf":
            raise InputError(f"{src}: map values must be numbers, got dtype {v.dtype}")
        v = v.astype(float)
        if v.ndim != 2:
            raise InputError(f"{src}: expected a 2-D real-space map, got shape {v.shape}")
        self.values = v
        self.pixel_size = check_pixel_size(self.pixel_size, src)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    @property
    def field_of_view(self) -> tuple[float, float]:
        """(L_x, L_y) = pixels × pixel size (Å)."""
        return self.values.shape[1] * self.pixel_size[0], self.values.shape[0] * self.pixel_size[1]

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "map"))

    def centred_xy(self) -> np.ndarray:
        """Pixel-centre coordinates (ny·nx, 2) in Å relative to the frame centre, row-major order."""
        ny, nx = self.shape
        px, py = self.pixel_size
        x = (np.arange(nx) + 0.5 - 0.5 * nx) * px
        y = (np.arange(ny) + 0.5 - 0.5 * ny) * py
        X, Y = np.meshgrid(x, y)
        return np.stack([X.ravel(), Y.ravel()], axis=1)


@dataclass
class AtomTable:
    """Per-atom values: positions ``xy`` (M, 2) Å and ``values`` (M,) (e.g. an LDOS table)."""

    xy: np.ndarray
    values: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = str(self.meta.get("source", "table"))
        xy = np.asarray(self.xy, dtype=float)
        v = np.asarray(self.values, dtype=float)
        if xy.ndim != 2 or xy.shape[1] < 2 or xy.shape[0] == 0 or v.shape != (xy.shape[0],):
            raise InputError(f"{src}: a per-atom table needs rows of (x, y, ldos), got positions {xy.shape} "
                             f"and values {v.shape}")
        self.xy, self.values = xy[:, :2], v

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "table"))
