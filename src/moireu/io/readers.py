"""The map readers, one per format (registered by suffix in :mod:`moireu.io.registry`).

* ``.npy`` — a 2-D real-space map ``array[iy, ix]`` (y grows with the row index); pixel size from
  ``pixel_size=`` or a sidecar JSON ``<file>.npy.json`` / ``<stem>.json`` (key ``pixel_size``, Å,
  one number or ``[px, py]``; other keys are kept as metadata). An (M, 3) array without pixel size
  is a per-atom table (x, y, ldos). Object (pickled) arrays are refused.
* ``.npz`` — keys ``ldos`` (or ``data``/``image``) + ``pixel_size``; or ``x``, ``y``, ``ldos``.
* text ``.csv .txt .dat .xyz .asc`` — a pixel grid with a header giving the scan size and its units, as STM
  software exports it (:mod:`moireu.io.textgrid`), or a per-atom table: columns ``x y ldos`` (Å, Å, any
  unit), comma/whitespace separated, ``#`` comments, an optional header naming ``x``, ``y`` and
  ``ldos``/``value``/``w``.
* images ``.png .tif .tiff`` (Pillow) — grey-scale 8/16-bit or float; the top row of the file is
  the largest y (display convention); ``pixel_size=`` is required. Colour images are refused.
* Nanonis ``.sxm`` — parsed here following the documented layout (``:KEY:`` header lines,
  ``:DATA_INFO:`` channel table, ``:SCANIT_END:``, ``\\x1a\\x04``, big-endian float32 planes), because
  ``nanonispy`` 1.1 uses the ``np.float`` alias removed in NumPy 1.24 (the tests check this parser
  against nanonispy). Channel ``channel=`` (default: the first lock-in/dI/dV channel, else
  ``Current``, else ``Z``), ``direction=`` forward/backward (backward mirrored to increasing x);
  pixel size from the scan range.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.base import AtomTable, MapData, check_pixel_size
from moireu.io.registry import register_reader
from moireu.io.textgrid import parse_text, read_text_grid


def sidecar(path: Path) -> dict[str, Any]:
    """The sidecar JSON of ``path`` (``<file>.json`` or ``<stem>.json``), or {} when there is none."""
    for side in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if side.is_file() and side != path:
            try:
                d = json.loads(side.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"sidecar {side}: not valid JSON ({exc})") from None
            if not isinstance(d, dict):
                raise InputError(f"sidecar {side}: expected a JSON object with 'pixel_size', got {type(d).__name__}")
            return d | {"sidecar": str(side)}
    return {}


def _grid(values: Any, pixel_size: Any, source: str, meta: dict[str, Any] | None = None,
          top_row_max_y: bool = False) -> MapData:
    a = np.asarray(values)
    if top_row_max_y and a.ndim == 2:
        a = a[::-1]
    return MapData(a, check_pixel_size(pixel_size, source), {"source": source} | dict(meta or {}))


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """``numpy.load`` of a numeric .npy, every failure an InputError saying what is wrong (never pickles)."""
    try:
        a = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path}: the .npy holds Python objects (a pickled array), which moireu never "
                             "loads; save the map as a numeric array (numpy.save of a float array)") from None
        raise InputError(f"{path}: not a valid .npy file (unreadable header or data)") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({type(exc).__name__})") from None
    if not isinstance(a, np.ndarray):
        raise InputError(f"{path}: not a .npy array")
    if a.dtype.kind not in "biuf":
        raise InputError(f"{path}: the .npy holds {a.dtype} values; a map must be real numbers "
                         f"({'take |.| or the real part first' if a.dtype.kind == 'c' else 'save a float array'})")
    return a


@register_reader(".npy")
class NpyReader:
    """``.npy`` real-space map (+ sidecar JSON) or (M, 3) atom table."""

    def read(self, path: Path, pixel_size: Any = None, **_: Any) -> MapData | AtomTable:
        a = load_npy(path)
        meta = sidecar(path)
        ps = pixel_size if pixel_size is not None else meta.get("pixel_size")
        if a.ndim == 2 and a.shape[1] == 3 and ps is None:
            return AtomTable(a[:, :2], a[:, 2], {"source": str(path)})
        return _grid(a, ps, str(path), {k: v for k, v in meta.items() if k != "pixel_size"})


@register_reader(".npz")
class NpzReader:
    """``.npz`` with ``ldos``/``data``/``image`` + ``pixel_size``, or ``x``, ``y``, ``ldos``."""

    def read(self, path: Path, pixel_size: Any = None, **_: Any) -> MapData | AtomTable:
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many types
            raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
        try:
            with z:
                keys = set(z.files)
                if {"x", "y", "ldos"} <= keys:
                    return AtomTable(np.stack([z["x"], z["y"]], axis=1), z["ldos"], {"source": str(path)})
                key = next((k for k in ("ldos", "data", "image") if k in keys), None)
                if key is None:
                    raise InputError(f"{path}: .npz needs 'ldos' (or 'data'/'image') + 'pixel_size', or x/y/ldos; "
                                     f"found {sorted(keys)}")
                ps = pixel_size if pixel_size is not None else (z["pixel_size"] if "pixel_size" in keys else None)
                return _grid(z[key], ps, str(path))
        except ValueError as exc:
            if "pickle" in str(exc):
                raise InputError(f"{path}: the .npz holds Python objects, which moireu never loads; "
                                 "save numeric arrays") from None
            raise


@register_reader(".csv", ".txt", ".dat", ".xyz", ".asc")
class TextReader:
    """Text: a pixel grid with a header (:mod:`moireu.io.textgrid`), or a per-atom table ``x y ldos``."""

    def read(self, path: Path, pixel_size: Any = None, **_: Any) -> MapData | AtomTable:
        header, rows, bad, names = parse_text(path)
        if bad is not None:
            raise InputError(f"{path}: {bad}")
        if not rows:
            raise InputError(f"{path}: no numeric rows (expected a grid with a header, or columns x y ldos)")
        grid = read_text_grid(path, header, rows, pixel_size, str(path))
        if grid is not None:
            values, ps, meta = grid
            return _grid(values, ps, str(path), meta)
        ncol = {len(r) for r in rows}
        if len(ncol) != 1:
            raise InputError(f"{path}: rows have different numbers of columns {sorted(ncol)}")
        t = np.array(rows)
        cols = [0, 1, 2]
        if names is not None:
            try:
                vcol = next(names.index(n) for n in ("ldos", "value", "w", "weight", "dos") if n in names)
                cols = [names.index("x"), names.index("y"), vcol]
            except (StopIteration, ValueError):
                raise InputError(f"{path}: header {names} must name columns x, y and ldos (a per-atom table), or "
                                 "give the scan size (a grid: Surface Size / Width / X Amplitude with units)") from None
        if t.shape[1] < 3:
            raise InputError(f"{path}: need 3 columns (x, y, ldos), found {t.shape[1]}")
        if not np.all(np.isfinite(t[:, cols])):
            raise InputError(f"{path}: the table contains NaN/inf")
        return AtomTable(t[:, cols[:2]], t[:, cols[2]], {"source": str(path)})


@register_reader(".png", ".tif", ".tiff")
class ImageReader:
    """Grey-scale image file (Pillow); the top row is the largest y."""

    def read(self, path: Path, pixel_size: Any = None, **_: Any) -> MapData:
        from PIL import Image

        try:
            im = Image.open(path)
            im.load()
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types
            raise InputError(f"{path}: cannot read image ({exc})") from None
        mode = im.mode
        if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
            rgb = np.asarray(im.convert("RGB"), dtype=float)
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise InputError(f"{path}: colour image (mode {mode}); a colour map cannot be inverted into LDOS "
                                 "values — export the raw map as grey-scale PNG/TIFF or .npy")
            a = rgb[..., 0]
        else:
            a = np.asarray(im, dtype=float)
        if a.ndim != 2:
            raise InputError(f"{path}: expected one image plane, got shape {a.shape}")
        meta = sidecar(path)
        ps = pixel_size if pixel_size is not None else meta.get("pixel_size")
        return _grid(a, ps, str(path), {"image_mode": mode}, top_row_max_y=True)


def parse_sxm_header(raw: str) -> dict[str, Any]:
    """Parse the text header of a Nanonis .sxm file into a dict (keys lower-case, without colons).

    ``scan_range`` (m), ``scan_offset`` (m) → float arrays; ``scan_pixels`` → int array (nx, ny);
    ``data_info`` → list of dicts (one per channel, columns of the DATA_INFO table).
    """
    lines = raw.replace("\r", "").split("\n")
    out: dict[str, Any] = {}
    i = 0
    is_key = (lambda s: s.startswith(":") and s.endswith(":") and len(s) > 2)
    while i < len(lines):
        line = lines[i]
        if is_key(line):
            key = line.strip(":").lower()
            body = []
            i += 1
            while i < len(lines) and not is_key(lines[i]):
                body.append(lines[i])
                i += 1
            if key == "data_info":
                rows = [r.strip("\t ").split("\t") for r in body if r.strip()]
                if rows:
                    names = [c.strip() for c in rows[0]]
                    out[key] = [dict(zip(names, (c.strip() for c in r))) for r in rows[1:]]
            else:
                out[key] = "\n".join(b.strip() for b in body).strip()
            continue
        i += 1
    try:
        for k in ("scan_range", "scan_offset"):
            if k in out:
                out[k] = np.array(out[k].split(), dtype=float)
        if "scan_pixels" in out:
            out["scan_pixels"] = np.array(out["scan_pixels"].split(), dtype=int)
    except ValueError as exc:
        raise InputError(f".sxm header has a malformed number ({exc})") from None
    for k in ("scan_angle", "bias"):
        if k in out:
            try:
                out[k] = float(out[k])
            except ValueError:
                pass
    return out


@register_reader(".sxm")
class SxmReader:
    """Nanonis .sxm scan (see the module docstring)."""

    def read(self, path: Path, pixel_size: Any = None, channel: str | None = None,
             direction: str = "forward", **_: Any) -> MapData:
        data = path.read_bytes()
        tag = data.find(b":SCANIT_END:")
        if tag < 0:
            raise InputError(f"{path}: not a Nanonis .sxm file (no :SCANIT_END: tag)")
        start = data.find(b"\x1a\x04", tag)
        if start < 0:
            raise InputError(f"{path}: corrupt .sxm (no \\x1a\\x04 data marker)")
        hdr = parse_sxm_header(data[:tag].decode("utf-8", errors="replace"))
        for key in ("scan_range", "scan_pixels", "data_info"):
            if key not in hdr:
                raise InputError(f"{path}: .sxm header lacks {key.upper()}")
        nx, ny = (int(v) for v in hdr["scan_pixels"][:2])
        rng_m = hdr["scan_range"][:2]
        chans = hdr["data_info"]
        names = [c.get("Name", "") for c in chans]
        ndirs = [2 if c.get("Direction", "both").lower() == "both" else 1 for c in chans]
        if channel is None:
            channel = next((n for n in names if re.search(r"LI|lock|dI.?dV", n, re.I)), None) \
                or next((n for n in names if n.lower().startswith("current")), None) \
                or next((n for n in names if n.upper() == "Z"), names[0] if names else None)
        if channel not in names:
            raise InputError(f"{path}: channel {channel!r} not in the file; available: {', '.join(names)}")
        if direction not in ("forward", "backward"):
            raise InputError(f"direction must be 'forward' or 'backward', got {direction!r}")
        fmt = hdr.get("scan_file_format", "")
        dtype = ">f4" if "little" not in str(fmt).lower() else "<f4"
        arr = np.frombuffer(data[start + 2:], dtype=dtype)
        need = sum(ndirs) * nx * ny
        if arr.size < need:
            raise InputError(f"{path}: incomplete .sxm data ({arr.size} values, header promises {need})")
        ci = names.index(channel)
        planes = arr[:need].reshape(sum(ndirs), ny, nx)
        first = sum(ndirs[:ci])
        if direction == "backward":
            if ndirs[ci] < 2:
                raise InputError(f"{path}: channel {channel!r} has no backward scan")
            img = planes[first + 1][:, ::-1]
        else:
            img = planes[first]
        scan_dir = str(hdr.get("scan_dir", "up")).strip().lower()
        ps = pixel_size if pixel_size is not None else (rng_m[0] * 1e10 / nx, rng_m[1] * 1e10 / ny)
        # row 0 is the first scanned line: the bottom for an 'up' scan, the top for 'down'
        return _grid(np.array(img, dtype=float), ps, str(path),
                     {"channel": channel, "direction": direction, "scan_dir": scan_dir,
                      "scan_angle": hdr.get("scan_angle", 0.0), "sxm_bias": hdr.get("bias", float("nan"))},
                     top_row_max_y=(scan_dir == "down"))
