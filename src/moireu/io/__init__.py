"""File formats of user STM maps: one reader per format, registered by suffix.

``read_map(path, pixel_size=None, channel=None, direction="forward")`` returns
:class:`MapData` (a pixel grid) or :class:`AtomTable` (per-atom values); formats and conventions in
:mod:`moireu.io.readers` and :mod:`moireu.io.base`. This package imports no physics stage.
"""

from moireu.io import readers as _readers  # noqa: F401  (registers the readers)
from moireu.io.base import AtomTable, MapData, check_pixel_size
from moireu.io.readers import load_npy, parse_sxm_header, sidecar
from moireu.io.registry import read_map, readers, register_reader

__all__ = ["AtomTable", "MapData", "check_pixel_size", "load_npy", "parse_sxm_header", "read_map", "readers",
           "register_reader", "sidecar"]
