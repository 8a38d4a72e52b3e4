"""Map readers registered by file suffix (in the style of sisl's ``add_sile``).

A reader is a class with a ``read(path, pixel_size=None, channel=None, direction="forward")``
method returning :class:`moireu.io.base.MapData` (pixel grids) or :class:`moireu.io.base.AtomTable`
(per-atom tables). :func:`register_reader` binds it to one or more suffixes;
:func:`read_map` dispatches on the (lower-cased) suffix. A reader of a format that holds maps at many
biases (grid spectroscopy) also takes a ``bias`` keyword (V); :func:`read_map` passes ``bias`` only when
one is asked for, and refuses it for a format whose reader has no ``bias`` parameter.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, TypeVar

from moireu.errors import InputError

_READERS: dict[str, type] = {}
R = TypeVar("R", bound=type)


def register_reader(*suffixes: str) -> Callable[[R], R]:
    """Class decorator: register a reader for ``suffixes`` (e.g. ``".npy"``); a suffix has one reader."""
    def deco(cls: R) -> R:
        for s in suffixes:
            s = s.lower()
            if not s.startswith("."):
                raise ValueError(f"suffix must start with a dot, got {s!r}")
            if s in _READERS and _READERS[s] is not cls:
                raise ValueError(f"suffix {s!r} already has the reader {_READERS[s].__name__}")
            _READERS[s] = cls
        cls.suffixes = tuple(sorted(set(getattr(cls, "suffixes", ())) | {s.lower() for s in suffixes}))
        return cls
    return deco


def readers() -> dict[str, type]:
    """Suffix → reader class (a copy)."""
    return dict(_READERS)


def read_map(path: str | Path, pixel_size: Any = None, channel: str | None = None,
             direction: str = "forward", bias: float | None = None) -> Any:
    """Read a user STM map with the reader registered for its suffix.

    Formats: ``.npy`` (+ sidecar JSON), ``.npz``, text grids and per-atom tables
    (``.csv .txt .dat .xyz .asc``), grey-scale ``.png .tif .tiff``, Nanonis ``.sxm`` (scan) and ``.3ds``
    (grid spectroscopy), Gwyddion ``.gwy``, RHK ``.sm4``; see :func:`readers` for the suffixes.

    Parameters
    ----------
    path : file
    pixel_size : float or (float, float), optional
        Å; overrides the file's own metadata (sidecar JSON, .npz key, instrument-file header).
    channel : str, optional
        Channel of a multi-channel file: a .sxm / .3ds channel name, a .gwy channel title, an .sm4
        page label (or ``topography`` / ``current`` / ``lia``). Default: the file's lock-in (dI/dV)
        channel where the format has one (.sxm, .3ds, .sm4), the first channel of a .gwy.
    direction : ``"forward"`` or ``"backward"``
        Scan direction (.sxm, .sm4) or sweep direction (a .3ds ``[bwd]`` channel).
    bias : float, optional
        V; the bias of the map taken from a grid-spectroscopy file (.3ds): the sweep point nearest to
        it. Default: the sweep point nearest to 0 V (the Fermi level). Refused for single-bias formats.

    Returns
    -------
    MapData or AtomTable

    Raises
    ------
    InputError
        Missing file, unknown suffix, unreadable or inconsistent content.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"map file {str(p)!r} does not exist")
    cls = _READERS.get(p.suffix.lower())
    if cls is None:
        allowed = " ".join(sorted(_READERS))
        raise InputError(f"{p}: unsupported map format {p.suffix!r}; accepted suffixes: {allowed}")
    if bias is None:
        return cls().read(p, pixel_size=pixel_size, channel=channel, direction=direction)
    if "bias" not in inspect.signature(cls.read).parameters:
        takes = " ".join(sorted(s for s, c in _READERS.items() if "bias" in inspect.signature(c.read).parameters))
        raise InputError(f"{p}: a {p.suffix} file holds no bias sweep, so there is no bias to choose "
                         f"(bias={bias!r} V); a bias selects the map of a grid-spectroscopy file ({takes or 'none'})")
    return cls().read(p, pixel_size=pixel_size, channel=channel, direction=direction, bias=bias)
