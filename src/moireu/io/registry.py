"""Map readers registered by file suffix (in the style of sisl's ``add_sile``).

A reader is a class with a ``read(path, pixel_size=None, channel=None, direction="forward")``
method returning :class:`moireu.io.base.MapData` (pixel grids) or :class:`moireu.io.base.AtomTable`
(per-atom tables). :func:`register_reader` binds it to one or more suffixes;
:func:`read_map` dispatches on the (lower-cased) suffix.
"""

from __future__ import annotations

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
             direction: str = "forward") -> Any:
    """Read a user STM map with the reader registered for its suffix.

    Parameters
    ----------
    path : file
    pixel_size : float or (float, float), optional
        Å; overrides the file's own metadata (sidecar JSON, .npz key, .sxm header).
    channel, direction : Nanonis .sxm channel name and scan direction.

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
    return cls().read(p, pixel_size=pixel_size, channel=channel, direction=direction)
