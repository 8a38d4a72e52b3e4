"""Text files: a pixel grid with a header (as STM software exports them), or a per-atom table.

A ``.txt .dat .csv .asc .xyz`` file is read as a **grid** when its header gives the scan size, or when its
numeric rows hold more than three equal-length columns; otherwise as a per-atom table ``x y ldos``
(:class:`moireu.io.readers.TextReader`). Header lines are the non-numeric lines before the data
(``#`` / ``%`` comment prefixes stripped), parsed as ``key: value`` (or ``key = value``). Recognised keys
(case-insensitive), in the layouts of common exports:

* pixel counts ``Data Size: 256 x 256`` (or ``Number of columns``/``Number of rows``, ``xpixels``/``ypixels``);
* scan size ``Surface Size: 100.0 x 100.0`` with ``X Unit: NanoMeter`` / ``Y Unit``; ``Width: 100 nm`` /
  ``Height: 100 nm`` (Gwyddion's ASCII matrix export); ``X Amplitude: 100 nm`` / ``Y Amplitude`` (WSxM);
  ``xlength`` / ``ylength`` with ``xunit`` (SPIP ASCII);
* value unit ``Z Unit: PicoMeter``, ``Value units: m``, ``Z Amplitude: 1.2 nm``, ``zunit``: a length
  unit means a **height** channel (a topograph), which the map's metadata says (``channel_kind``).

Units are parsed, never assumed: a size without a length unit is refused. Rows run along x; the first row
is the top of the image (the display convention of every export named above), so the array is flipped
to moireu's ``values[iy, ix]`` with y growing with the row index.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError

__all__ = ["LENGTH_UNITS", "length_unit", "parse_text"]

#: length units → Å
LENGTH_UNITS = {"m": 1e10, "meter": 1e10, "metre": 1e10, "mm": 1e7, "millimeter": 1e7, "um": 1e4, "µm": 1e4,
                "μm": 1e4, "micrometer": 1e4, "micrometre": 1e4, "micron": 1e4, "nm": 10.0, "nanometer": 10.0,
                "nanometre": 10.0, "a": 1.0, "å": 1.0, "Å": 1.0, "angstrom": 1.0, "ang": 1.0, "pm": 0.01,
                "picometer": 0.01, "picometre": 0.01}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def length_unit(text: str) -> float | None:
    """Å per unit of a length unit name (``NanoMeter``, ``nm``, ``Å``, ``um`` …), None when not a length."""
    key = text.strip().strip("[]()").replace(" ", "").lower()
    return LENGTH_UNITS.get(key, LENGTH_UNITS.get(text.strip().strip("[]()")))


def _header_pairs(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        s = line.strip().lstrip("#%").strip()
        m = re.match(r"^([A-Za-z][A-Za-z0-9 _./()-]*?)\s*[:=]\s*(.*)$", s)
        if m:
            out.setdefault(m.group(1).strip().lower(), m.group(2).strip())
    return out


def _pair(text: str) -> tuple[float, float] | None:
    nums = re.findall(_NUM, text)
    if len(nums) >= 2 and re.search(r"[x×*,]", text):
        return float(nums[0]), float(nums[1])
    return None


def _qty(text: str) -> tuple[float, str]:
    """'100.0 nm' → (100.0, 'nm'); '100' → (100.0, '')."""
    m = re.match(rf"^\s*({_NUM})\s*(.*)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)), m.group(2).strip()


def _scan_size(h: dict[str, str], source: str) -> tuple[float, float] | None:
    """The scan size (Å, Å) from the header, or None when it gives none; refuses a size without a unit."""
    def scale(unit: str, what: str) -> float:
        f = length_unit(unit) if unit else None
        if f is None:
            raise InputError(f"{source}: the header gives the {what} without a length unit it names "
                             f"({unit!r}); allowed: nm, Å, pm, µm, m (and their spelled-out names)")
        return f

    if "surface size" in h:
        xy = _pair(h["surface size"])
        if xy is None:
            raise InputError(f"{source}: 'Surface Size: {h['surface size']}' is not 'W x H'")
        unit_x = h.get("x unit") or h.get("xy unit") or h.get("unit") or ""
        unit_y = h.get("y unit") or unit_x
        return xy[0] * scale(unit_x, "surface size (X Unit)"), xy[1] * scale(unit_y, "surface size (Y Unit)")
    for kx, ky in (("width", "height"), ("x amplitude", "y amplitude"), ("xlength", "ylength"),
                   ("x size", "y size"), ("scan size x", "scan size y")):
        if kx in h and ky in h:
            try:
                (w, uw), (hh, uh) = _qty(h[kx]), _qty(h[ky])
            except ValueError:
                raise InputError(f"{source}: header {kx!r}/{ky!r} values {h[kx]!r}, {h[ky]!r} are not numbers"
                                 ) from None
            uw = uw or h.get("xunit") or h.get("x unit") or ""
            uh = uh or h.get("yunit") or h.get("y unit") or uw
            return w * scale(uw, kx), hh * scale(uh, ky)
    return None


def _value_unit(h: dict[str, str]) -> str | None:
    for k in ("z unit", "zunit", "value units", "value unit", "z units"):
        if k in h:
            return h[k].strip()
    if "z amplitude" in h:
        try:
            return _qty(h["z amplitude"])[1] or None
        except ValueError:
            return None
    return None


def parse_text(path: Path) -> tuple[dict[str, str], list[list[float]], str | None, list[str] | None]:
    """``(header pairs, numeric rows, first non-numeric data line, column names)`` of a text map or table.

    Header lines are comments anywhere and the non-numeric lines before the first numeric row; a
    non-numeric line after it is returned as the third element (the caller refuses the file). The
    column names are the tokens of the last non-comment header line (a table's ``x y ldos``), if any.
    """
    header: list[str] = []
    names: list[str] | None = None
    rows: list[list[float]] = []
    bad = None
    for ln, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s[0] in "#%":
            header.append(s)
            continue
        s = s.split("#", 1)[0].strip()
        parts = [p for p in re.split(r"[,\s;]+", s) if p]
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            if rows:
                bad = bad or f"line {ln} is not numeric: {s[:80]!r}"
                continue
            header.append(s)
            names = [p.lower() for p in parts]
    return _header_pairs(header), rows, bad, names


def read_text_grid(path: Path, h: dict[str, str], rows: list[list[float]], pixel_size: Any,
                   source: str) -> tuple[np.ndarray, Any, dict[str, Any]] | None:
    """``(values[iy, ix], pixel size, metadata)`` when the file is a grid, None when it is a per-atom table."""
    size = _scan_size(h, source)
    ncols = {len(r) for r in rows}
    wide = len(ncols) == 1 and next(iter(ncols)) > 3
    if size is None and not wide and "data size" not in h:
        return None
    if len(ncols) != 1:
        raise InputError(f"{source}: the grid's rows have different lengths {sorted(ncols)[:5]}")
    a = np.array(rows, float)
    ny, nx = a.shape
    if "data size" in h:
        n = _pair(h["data size"])
        if n is None or (int(n[0]), int(n[1])) != (nx, ny):
            raise InputError(f"{source}: the header says 'Data Size: {h['data size']}' but the file holds "
                             f"{nx} x {ny} values (columns x rows)")
    if nx < 8 or ny < 8:
        raise InputError(f"{source}: a {nx} x {ny} grid is too small to be a map (at least 8 x 8)")
    if pixel_size is None:
        if size is None:
            raise InputError(f"{source}: a {nx} x {ny} grid without a scan size in its header: pass --pixel-size "
                             "(Å) or export the header (Surface Size / Width / X Amplitude with units)")
        pixel_size = (size[0] / nx, size[1] / ny)
    unit = _value_unit(h)
    kind = "height" if unit is not None and length_unit(unit) is not None else "unknown" if unit is None else "signal"
    meta = {"format": "text grid", "header": h, "value_unit": unit, "channel_kind": kind}
    return a[::-1], pixel_size, meta  # first row = top of the image = largest y
