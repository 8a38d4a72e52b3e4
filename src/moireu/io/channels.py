"""What the instrument-file readers share about channels: dI/dV names, value units, finiteness.

The **kind** of a channel (``meta["channel_kind"]`` of a :class:`~moireu.io.base.MapData`, the
flag ``moireu predict`` warns on) follows its value unit, as in :mod:`moireu.io.textgrid`: a length unit
(``m``, ``nm`` …) is a ``"height"`` channel (a topograph), any other unit a ``"signal"`` (current,
lock-in, dI/dV …; a bare ``A`` is the ampere here), no unit ``"unknown"``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.textgrid import length_unit

__all__ = ["channel_kind", "is_didv", "require_finite", "split_unit"]

# a lock-in / dI/dV channel: 'LI Demod 1 X', 'LI_Demod_1_X', 'LIX 1 omega', 'LIA Current', 'Lock-in X', 'dI/dV'
# ('LI' is matched in capitals and as a word of its own, so that 'Applied Voltage' is no lock-in channel)
_DIDV = re.compile(r"(?<![A-Za-z])LI(?:A|X|Y|R)?(?![A-Za-z])|(?i:lock.?in|\bdi\s*/?\s*dv\b|didv)")


def is_didv(name: str) -> bool:
    """Whether a channel name is a lock-in / dI/dV channel."""
    return bool(_DIDV.search(name))


def channel_kind(unit: str | None) -> str:
    """``"height"`` for a length unit, ``"signal"`` for any other unit, ``"unknown"`` without one."""
    u = "" if unit is None else str(unit).strip()
    if not u:
        return "unknown"
    if u == "A":  # ampere: instrument files write the ångström as Å, 'Angstrom' or m
        return "signal"
    return "height" if length_unit(u) is not None else "signal"


def split_unit(label: str) -> tuple[str, str | None]:
    """``'Current (A)'`` → ``('Current', 'A')``; ``'Z-Ctrl hold'`` → ``('Z-Ctrl hold', None)``."""
    m = re.match(r"^(.*?)\s*\(([^()]*)\)\s*$", label.strip())
    return (m.group(1).strip(), m.group(2).strip()) if m else (label.strip(), None)


def require_finite(values: Any, source: str, what: str) -> np.ndarray:
    """``values`` as float64, or an InputError saying how many pixels are NaN/inf."""
    a = np.asarray(values, dtype=float)
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise InputError(f"{source}: {bad} of {a.size} pixels of {what} are NaN/inf (an aborted or masked "
                         "scan?); crop the map to its measured part and save it as .npy with its pixel size")
    return a
