"""File formats of user STM maps: one reader per format, registered by suffix.

``read_map(path, pixel_size=None, channel=None, direction="forward", bias=None)`` returns
:class:`MapData` (a pixel grid) or :class:`AtomTable` (per-atom values); formats and conventions in
:mod:`moireu.io.readers` and :mod:`moireu.io.base`, the instrument files in their own modules
(:mod:`moireu.io.gwyddion` ``.gwy``, :mod:`moireu.io.rhk_sm4` ``.sm4``, :mod:`moireu.io.nanonis_3ds`
``.3ds``). This package imports no physics stage.
"""

from moireu.io import gwyddion as _gwyddion  # noqa: F401  (registers .gwy)
from moireu.io import nanonis_3ds as _nanonis_3ds  # noqa: F401  (registers .3ds)
from moireu.io import readers as _readers  # noqa: F401  (registers the readers)
from moireu.io import rhk_sm4 as _rhk_sm4  # noqa: F401  (registers .sm4)
from moireu.io.base import AtomTable, MapData, check_pixel_size
from moireu.io.readers import load_npy, parse_sxm_header, sidecar
from moireu.io.registry import read_map, readers, register_reader

__all__ = ["AtomTable", "MapData", "check_pixel_size", "load_npy", "parse_sxm_header", "read_map", "readers",
           "register_reader", "sidecar"]
