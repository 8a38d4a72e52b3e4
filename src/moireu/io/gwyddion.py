"""Gwyddion native files (``.gwy``), read with the ``gwyfile`` package.

A ``.gwy`` file is a serialised ``GwyContainer`` (after the magic ``GWYP``) whose channels are
``GwyDataField`` objects under the keys ``/N/data`` (N = 0, 1, …), titled by ``/N/data/title``. A
data field holds ``xres × yres`` values (row 0 is the **top** of the image, as Gwyddion shows it),
its physical size ``xreal × yreal`` in the lateral unit ``si_unit_xy`` (metres in every file Gwyddion
writes) and the value unit ``si_unit_z``.

* channel: ``channel=`` a title (exact, else case-insensitive) or the channel number ``N``;
  default the first channel (lowest N);
* pixel size: ``xreal / xres``, ``yreal / yres`` in the lateral unit, converted to Å (refused
  when the file names no length unit, unless ``pixel_size=`` is given);
* values: rows flipped to moireu's convention (y growing with the row index);
* metadata: ``channel`` (title), ``value_unit`` (``si_unit_z``) and ``channel_kind``
  (:func:`moireu.io.channels.channel_kind`: ``"height"`` for a length unit — a topograph, which
  ``moireu predict`` warns about).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.base import MapData, check_pixel_size
from moireu.io.channels import channel_kind, require_finite
from moireu.io.registry import register_reader
from moireu.io.textgrid import length_unit

_DATA_KEY = re.compile(r"^/(\d+)/data$")


def _check_envelope(path: Path, raw: bytes) -> None:
    """The magic and the top-level object's declared size (gwyfile itself reads past a truncation)."""
    if raw[:4] != b"GWYP":
        what = "an old Gwyddion 1 file (GWYO)" if raw[:4] == b"GWYO" else "no GWYP magic"
        raise InputError(f"{path}: not a Gwyddion 2 .gwy file ({what}); save it again from Gwyddion 2")
    nul = raw.find(b"\0", 4, 64)
    if nul < 0 or len(raw) < nul + 5:
        raise InputError(f"{path}: truncated .gwy file (the top-level object header is cut off)")
    name = raw[4:nul].decode("utf-8", errors="replace")
    (size,) = struct.unpack_from("<I", raw, nul + 1)
    if name != "GwyContainer":
        raise InputError(f"{path}: the .gwy file holds a {name!r}, not a GwyContainer of channels")
    if len(raw) < nul + 5 + size:
        raise InputError(f"{path}: truncated .gwy file ({len(raw)} bytes, the container declares "
                         f"{nul + 5 + size})")


def _unit(obj: Any) -> str | None:
    """The unit string of a GwySIUnit component (None when absent)."""
    if obj is None:
        return None
    u = obj.get("unitstr") if hasattr(obj, "get") else None
    return None if u is None else str(u).strip()


@register_reader(".gwy")
class GwyReader:
    """Gwyddion ``.gwy`` (see the module docstring)."""

    def read(self, path: Path, pixel_size: Any = None, channel: str | None = None, **_: Any) -> MapData:
        try:
            import gwyfile
        except ImportError:
            raise InputError(f"{path}: reading .gwy files needs the 'gwyfile' package (pip install gwyfile)"
                             ) from None
        raw = path.read_bytes()
        _check_envelope(path, raw)
        try:
            obj = gwyfile.objects.GwyObject.frombuffer(raw[4:])
        except Exception as exc:  # noqa: BLE001 - gwyfile raises struct/Unicode/Index/NotImplemented errors
            raise InputError(f"{path}: corrupt .gwy file ({type(exc).__name__}: {exc})") from None
        fields = sorted((int(m.group(1)), k) for k in obj if (m := _DATA_KEY.match(str(k))))
        fields = [(n, k) for n, k in fields if getattr(obj[k], "name", None) == "GwyDataField"]
        if not fields:
            raise InputError(f"{path}: the .gwy file holds no image channel (no /N/data data field)")
        titles = [str(obj.get(f"{k}/title", f"channel {n}")) for n, k in fields]
        if channel is None:
            i = 0
        elif channel in titles:
            i = titles.index(channel)
        elif (low := [t.lower() for t in titles]).count(str(channel).lower()) == 1:
            i = low.index(str(channel).lower())
        elif str(channel).isdigit() and int(channel) in (nums := [n for n, _ in fields]):
            i = nums.index(int(channel))
        else:
            raise InputError(f"{path}: channel {channel!r} not in the file; available: "
                             + ", ".join(f"{t!r} (#{n})" for t, (n, _) in zip(titles, fields)))
        num, key = fields[i]
        df = obj[key]
        try:
            xres, yres = int(df["xres"]), int(df["yres"])
            data = np.asarray(df["data"], dtype=float)
            if data.size != xres * yres:
                raise ValueError(f"{data.size} values for {xres} x {yres} pixels")
            values = data.reshape(yres, xres)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: channel {titles[i]!r} is a malformed data field ({exc})") from None
        src = str(path)
        values = require_finite(values, src, f"channel {titles[i]!r}")
        if pixel_size is None:
            xy_unit = _unit(df.get("si_unit_xy"))
            scale = length_unit(xy_unit) if xy_unit else None
            if scale is None:
                raise InputError(f"{src}: channel {titles[i]!r} has no lateral length unit (si_unit_xy "
                                 f"{xy_unit!r}), so its pixel size is unknown; allowed units: m, nm, µm, Å, pm — "
                                 "or pass --pixel-size (Å)")
            try:
                xreal, yreal = float(df["xreal"]), float(df["yreal"])
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{src}: channel {titles[i]!r} lacks its physical size (xreal/yreal); "
                                 "pass --pixel-size (Å)") from None
            pixel_size = check_pixel_size((xreal * scale / xres, yreal * scale / yres),
                                          f"{src} (xreal {xreal:g}, yreal {yreal:g} {xy_unit})")
        z_unit = _unit(df.get("si_unit_z"))
        meta = {"source": src, "format": "gwy", "channel": titles[i], "channel_number": num,
                "value_unit": z_unit, "channel_kind": channel_kind(z_unit),
                "channels": titles}
        return MapData(values[::-1], pixel_size, meta)  # row 0 of a data field is the top of the image
