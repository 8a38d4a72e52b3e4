"""RHK ``.sm4`` files (XPMPro / Rev9), parsed here from the published SM4 layout.

``spym`` (the Python reader of SM4) is not used: ``import spym`` needs ``hvplot``, a plotting stack
it does not declare, so it does not import with moireu's dependencies. The layout (all integers
little-endian, strings UTF-16LE):

* **file header**: ``uint16`` header size (56), the signature ``STiMage 005.NNN N`` (18 UTF-16
  characters), ``uint32`` page count, object count, object field size (12), two reserved; then, at
  ``2 + header size``, the object list: ``object count`` × (``uint32`` type, offset, size);
* the **page index header** object (type 1): page count, object count, two reserved, its objects —
  one of them the **page index array** (type 2): per page a 16-byte GUID, ``uint32`` data type
  (0 image, 1 line/spectrum, 6 sequential …), source, object count, minor version, then that many
  objects (page header type 3, page data type 4, …);
* the **page header** (type 3): ``uint16`` field size, string count; ``uint32`` page type (1
  topographic, 2 current, …), data sub-source, line type; ``int32`` x/y corner; ``uint32`` x size,
  y size, image type, scan direction (0 right, 1 left, 2 up, 3 down), group id, data size; ``int32``
  min/max z; ``float32`` x scale, y scale, z scale, xy scale, x/y/z offset, period, bias, current,
  angle; ``uint32`` colour-info count, grid x/y size, object count; 64 reserved bytes; then its
  objects (string data type 10, …);
* **string data** (type 10): ``string count`` × (``uint16`` length + UTF-16 characters) in the
  order label, system text, session text, user text, path, date, time, x units, y units, z units, …;
* **page data** (type 4) of an image page: ``x size × y size`` ``int32``, row by row; the value is
  ``raw · z scale + z offset`` (z units); raw pixel (row i, column j) lies at
  ``(x offset + j · x scale, y offset + i · y scale)`` — the scales are signed, so the rows and
  columns are flipped where a scale is negative to moireu's x growing with the column, y with the row.

Channels are the image pages, named by their label (``Topography``, ``Current``, ``LIA Current`` …).
``channel=`` a label (case-insensitive) or ``topography`` / ``current`` / ``lia`` (``didv``);
default: the first lock-in (dI/dV) page, else the current, else the topography. ``direction=``
``forward`` takes a page scanned right (or up/down), ``backward`` one scanned left. The pixel size
is ``|x scale|``, ``|y scale|`` in the page's x/y units (metres), in Å.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.base import MapData, check_pixel_size
from moireu.io.channels import channel_kind, is_didv, require_finite
from moireu.io.registry import register_reader
from moireu.io.textgrid import length_unit

PAGE_INDEX_HEADER, PAGE_INDEX_ARRAY, PAGE_HEADER, PAGE_DATA, STRING_DATA = 1, 2, 3, 4, 10
DATA_IMAGE, DATA_SEQUENTIAL = 0, 6
PAGE_TOPOGRAPHIC, PAGE_CURRENT = 1, 2
SCAN_DIRECTIONS = {0: "right", 1: "left", 2: "up", 3: "down"}
STRING_NAMES = ("label", "system_text", "session_text", "user_text", "path", "date", "time", "x_units",
                "y_units", "z_units", "x_label", "y_label")
_PAGE_FIXED = struct.Struct("<HH3I2i6I2i11f4I")  # up to the object count; 64 reserved bytes follow
_PAGE_HEADER_SIZE = _PAGE_FIXED.size + 64


class _Truncated(Exception):
    pass


@dataclass
class _Page:
    data_type: int
    objects: dict[int, tuple[int, int]]
    header: dict[str, Any] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        lab = self.strings.get("label", "").strip()
        if lab:
            return lab
        return {PAGE_TOPOGRAPHIC: "Topography", PAGE_CURRENT: "Current"}.get(self.header.get("page_type"),
                                                                               f"page type {self.header.get('page_type')}")

    @property
    def direction(self) -> str:
        return "backward" if self.header.get("scan_dir") == 1 else "forward"


class _Buf:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def unpack(self, fmt: str | struct.Struct, offset: int) -> tuple:
        s = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        if offset < 0 or offset + s.size > len(self.raw):
            raise _Truncated(f"{s.size} bytes at offset {offset}")
        return s.unpack_from(self.raw, offset)

    def objects(self, offset: int, count: int, field_size: int = 12) -> dict[int, tuple[int, int]]:
        """type → (offset, size) of an object list (the first object of each type)."""
        out: dict[int, tuple[int, int]] = {}
        for k in range(count):
            typ, off, size = self.unpack("<3I", offset + k * field_size)
            if typ and size and off + size > len(self.raw):
                raise _Truncated(f"object of type {typ} ends at {off + size}")
            out.setdefault(typ, (off, size))
        return out

    def strings(self, offset: int, size: int, count: int) -> dict[str, str]:
        out: dict[str, str] = {}
        pos, end = offset, offset + size
        for name in STRING_NAMES[:count]:
            if pos + 2 > end:
                break
            (n,) = self.unpack("<H", pos)
            if pos + 2 + 2 * n > end:
                break
            out[name] = self.raw[pos + 2:pos + 2 + 2 * n].decode("utf-16-le", errors="replace").rstrip("\0")
            pos += 2 + 2 * n
        return out


def _parse(raw: bytes) -> list[_Page]:
    b = _Buf(raw)
    (header_size,) = b.unpack("<H", 0)
    page_count, object_count, field_size, _, _ = b.unpack("<5I", 38)
    field_size = max(int(field_size), 12)
    top = b.objects(2 + header_size, object_count, field_size)
    if PAGE_INDEX_HEADER not in top:
        raise _Truncated("no page index header object")
    off, _ = top[PAGE_INDEX_HEADER]
    n_pages, n_obj, _, _ = b.unpack("<4I", off)
    idx = b.objects(off + 16, n_obj, field_size)
    if PAGE_INDEX_ARRAY not in idx:
        raise _Truncated("no page index array object")
    pos, _ = idx[PAGE_INDEX_ARRAY]
    pages = []
    for _ in range(n_pages):
        data_type, _source, n_obj, _minor = b.unpack("<4I", pos + 16)
        pages.append(_Page(int(data_type), b.objects(pos + 32, n_obj, field_size)))
        pos += 32 + n_obj * field_size
    for p in pages:
        if p.data_type == DATA_SEQUENTIAL or PAGE_HEADER not in p.objects:
            continue
        off, _ = p.objects[PAGE_HEADER]
        v = b.unpack(_PAGE_FIXED, off)
        keys = ("field_size", "string_count", "page_type", "data_sub_source", "line_type", "x_corner", "y_corner",
                "x_size", "y_size", "image_type", "scan_dir", "group_id", "data_size", "min_z", "max_z",
                "x_scale", "y_scale", "z_scale", "xy_scale", "x_offset", "y_offset", "z_offset", "period", "bias",
                "current", "angle", "color_info_count", "grid_x_size", "grid_y_size", "object_count")
        p.header = dict(zip(keys, v))
        hobj = b.objects(off + _PAGE_HEADER_SIZE, p.header["object_count"], field_size)
        if STRING_DATA in hobj:
            p.strings = b.strings(*hobj[STRING_DATA], p.header["string_count"])
    return pages


def _pick(pages: list[_Page], channel: str | None, direction: str, src: str) -> _Page:
    labels = list(dict.fromkeys(p.label for p in pages))
    if channel is None:
        cand = [p for p in pages if is_didv(p.label)] \
            or [p for p in pages if p.header["page_type"] == PAGE_CURRENT or p.label.lower().startswith("current")] \
            or [p for p in pages if p.header["page_type"] == PAGE_TOPOGRAPHIC] or pages
        chosen = cand[0].label
        cand = [p for p in pages if p.label == chosen]
    else:
        key = str(channel).strip().lower()
        cand = [p for p in pages if p.label.lower() == key]
        if not cand and key in ("lia", "didv", "di/dv", "lock-in", "lockin"):
            cand = [p for p in pages if is_didv(p.label)]
        elif not cand and key in ("current", "i"):
            cand = [p for p in pages if p.header["page_type"] == PAGE_CURRENT]
        elif not cand and key in ("topography", "topo", "z", "height"):
            cand = [p for p in pages if p.header["page_type"] == PAGE_TOPOGRAPHIC]
        if not cand:
            raise InputError(f"{src}: channel {channel!r} not in the file; available: {', '.join(labels)} "
                             "(or topography, current, lia)")
        cand = [p for p in pages if p.label == cand[0].label]
    same = [p for p in cand if p.direction == direction]
    if not same:
        have = sorted({SCAN_DIRECTIONS.get(p.header["scan_dir"], "?") for p in cand})
        raise InputError(f"{src}: channel {cand[0].label!r} has no {direction} scan (scanned {', '.join(have)}); "
                         f"allowed: {'backward' if direction == 'forward' else 'forward'}")
    return same[0]


@register_reader(".sm4")
class Sm4Reader:
    """RHK ``.sm4`` (see the module docstring)."""

    def read(self, path: Path, pixel_size: Any = None, channel: str | None = None,
             direction: str = "forward", **_: Any) -> MapData:
        src = str(path)
        if direction not in ("forward", "backward"):
            raise InputError(f"direction must be 'forward' or 'backward', got {direction!r}")
        raw = path.read_bytes()
        sig = raw[2:38].decode("utf-16-le", errors="replace") if len(raw) >= 38 else ""
        if not sig.startswith("STiMage"):
            raise InputError(f"{src}: not an RHK .sm4 file (no 'STiMage' signature after the first two bytes)")
        try:
            pages = _parse(raw)
        except (_Truncated, struct.error) as exc:
            raise InputError(f"{src}: truncated or corrupt .sm4 file ({exc})") from None
        images = [p for p in pages if p.data_type == DATA_IMAGE and p.header and PAGE_DATA in p.objects]
        if not images:
            kinds = sorted({p.data_type for p in pages})
            raise InputError(f"{src}: the .sm4 file holds no image page (page data types {kinds}; 0 is an image, "
                             "1 a spectrum); moireu reads real-space maps")
        page = _pick(images, channel, direction, src)
        h = page.header
        nx, ny = int(h["x_size"]), int(h["y_size"])
        off, size = page.objects[PAGE_DATA]
        if nx < 1 or ny < 1 or size < 4 * nx * ny or off + 4 * nx * ny > len(raw):
            raise InputError(f"{src}: page {page.label!r} is truncated ({size} data bytes for {nx} x {ny} pixels, "
                             f"file of {len(raw)} bytes)")
        rawv = np.frombuffer(raw, dtype="<i4", count=nx * ny, offset=off).reshape(ny, nx)
        with np.errstate(invalid="ignore", over="ignore"):
            values = rawv * float(h["z_scale"]) + float(h["z_offset"])
        values = require_finite(values, src, f"page {page.label!r}")
        if float(h["y_scale"]) < 0:
            values = values[::-1]
        if float(h["x_scale"]) < 0:
            values = values[:, ::-1]
        if pixel_size is None:
            units = {page.strings.get("x_units", "").strip(), page.strings.get("y_units", "").strip()} - {""}
            scales = {length_unit(u) for u in units}
            if len(units) != 1 or None in scales:
                raise InputError(f"{src}: page {page.label!r} gives its x/y scale in {sorted(units) or 'no unit'}, "
                                 "not one length unit (m, nm, Å …), so its pixel size is unknown; pass --pixel-size (Å)")
            f = scales.pop()
            pixel_size = check_pixel_size((abs(float(h["x_scale"])) * f, abs(float(h["y_scale"])) * f),
                                          f"{src} (page {page.label!r} x/y scale {h['x_scale']:g}, {h['y_scale']:g})")
        z_unit = page.strings.get("z_units", "").strip() or None
        kind = channel_kind(z_unit)
        if kind == "unknown" and h["page_type"] == PAGE_TOPOGRAPHIC:
            kind = "height"
        meta = {"source": src, "format": "sm4", "channel": page.label, "direction": direction,
                "scan_dir": SCAN_DIRECTIONS.get(h["scan_dir"], str(h["scan_dir"])), "value_unit": z_unit,
                "channel_kind": kind, "page_type": int(h["page_type"]), "sm4_bias": float(h["bias"]),
                "sm4_current": float(h["current"]), "scan_angle": float(h["angle"]),
                "channels": list(dict.fromkeys(p.label for p in images))}
        return MapData(values, pixel_size, meta)
