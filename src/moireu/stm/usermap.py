"""User-supplied STM maps → FT-LDOS images with exactly the training transform (``moireu predict``).

Accepted inputs (:func:`read_user_map`)
---------------------------------------
* **Per-atom table** (``.csv``, ``.txt``, ``.dat``, ``.xyz``): columns ``x y ldos`` (Å, Å, any unit),
  comma- or whitespace-separated, ``#`` comments allowed, an optional header line naming the
  columns (``x``, ``y`` and one of ``ldos``/``value``/``w``; other columns are ignored).
* **2-D real-space array** (``.npy``): ``array[iy, ix]`` with y increasing with the row index; the
  pixel size (Å, one number or ``(px, py)``) comes from ``pixel_size=`` (``--pixel-size``) or a
  sidecar JSON ``<file>.json`` / ``<stem>.json`` with key ``pixel_size``. An (M, 3) array is read as
  a per-atom table.
* **``.npz``**: keys ``ldos`` (or ``data``/``image``) + ``pixel_size``; or ``x``, ``y``, ``ldos``.
* **Image file** (``.png``, ``.tif``, ``.tiff``) through Pillow: grey-scale (8/16-bit integer or float
  TIFF); the top row is the largest y (display convention); ``pixel_size=`` is required. Colour
  images are refused: a colour map cannot be inverted into LDOS values.
* **Nanonis ``.sxm``**: scan range (m) and pixels from the header; channel chosen by ``channel=``
  (default: the first lock-in / dI/dV channel, else ``Current``, else ``Z``), ``direction=``
  ``forward`` or ``backward`` (the backward image is mirrored back to increasing x). The header is
  parsed here following the documented layout (``:KEY:`` lines, ``:DATA_INFO:`` table,
  ``:SCANIT_END:``, ``\\x1a\\x04``, big-endian float32 data), because ``nanonispy`` 1.1 uses the
  ``np.float`` alias removed in NumPy 1.24; the test suite checks this parser against nanonispy.

Geometry checks (:class:`moireu.errors.InputError`, saying why)
---------------------------------------------------------------
* NaN/inf values, fewer than 8 × 8 pixels, or a constant map;
* pixel size too coarse for the training window: the sampled map only holds
  :math:`|k_x| \\le \\pi/p_x`, :math:`|k_y| \\le \\pi/p_y` (Nyquist), which must reach the window's
  :math:`k_{x,\\max}, k_{y,\\max}` (≈ 2.81 and 3.24 Å⁻¹: p ≲ 0.97 Å for square pixels);
* field of view too small to resolve moiré satellites: a frame of width L gives peaks of width
  ≈ 2π/L, and the satellites sit :math:`|\\mathbf G_m| = 4\\pi/(\\sqrt3 L_m)` from the Bragg peaks,
  so L ≥ √3 L_m is the bare minimum; we require L ≥ 2 L_m (L_m = ``image_transform.moire_period``;
  10 a = 24.6 Å when unknown).

The points (atoms or pixel centres) weighted by the values go through the same
:func:`moireu.stm.ftldos.ftldos` call, hence the same window, mean subtraction, log scaling and
normalisation as the training images. A pixel map carries the tip's spot form factor, which
damps large k relative to the per-atom training images; the normalisation removes only the overall
scale.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moireu.constants import A_LAT
from moireu.errors import InputError
from moireu.stm.ftldos import ImageTransform, ftldos

TABLE_EXT = {".csv", ".txt", ".dat", ".xyz"}
IMAGE_EXT = {".png", ".tif", ".tiff"}
MIN_FOV_MOIRE = 2.0  # field of view ≥ 2 moiré periods
MIN_FOV_NO_MOIRE = 10.0 * A_LAT  # Å, when the moiré period is unknown


@dataclass
class UserMap:
    """A user map as weighted points.

    Attributes
    ----------
    kind : "atoms" or "grid"
    xy : ndarray (M, 2), Å
    values : ndarray (M,)
    pixel_size : (px, py) Å or None (atoms)
    shape : (ny, nx) or None (atoms)
    source : str
    meta : dict
    """

    kind: str
    xy: np.ndarray
    values: np.ndarray
    pixel_size: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    source: str = "array"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def field_of_view(self) -> tuple[float, float]:
        """(Lx, Ly) in Å: pixels × pixel size for a grid, the bounding box for atoms."""
        if self.kind == "grid" and self.shape is not None and self.pixel_size is not None:
            return self.shape[1] * self.pixel_size[0], self.shape[0] * self.pixel_size[1]
        span = self.xy.max(axis=0) - self.xy.min(axis=0)
        return float(span[0]), float(span[1])


# ------------------------------------------------------------------------------------------------
# readers


def _pixel_size(value: Any, source: str) -> tuple[float, float]:
    if value is None:
        raise InputError(f"{source}: a 2-D map needs its pixel size in Å (--pixel-size, a sidecar JSON "
                         "with 'pixel_size', or an .npz key 'pixel_size')")
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{source}: pixel size must be one or two positive numbers (Å), got {value!r}")
    return float(arr[0]), float(arr[1])


def grid_map(data: np.ndarray, pixel_size: Any, source: str = "array", top_row_max_y: bool = False,
             meta: dict[str, Any] | None = None) -> UserMap:
    """A 2-D array ``data[iy, ix]`` as pixel-centre points (y grows with the row index unless
    ``top_row_max_y``)."""
    a = np.asarray(data, dtype=float)
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-D real-space map, got shape {a.shape}")
    px, py = _pixel_size(pixel_size, source)
    ny, nx = a.shape
    if top_row_max_y:
        a = a[::-1]
    X, Y = np.meshgrid((np.arange(nx) + 0.5) * px, (np.arange(ny) + 0.5) * py)
    return UserMap("grid", np.stack([X.ravel(), Y.ravel()], axis=1), a.ravel(), (px, py), (ny, nx),
                   source, dict(meta or {}))


def atoms_map(table: np.ndarray, source: str = "array") -> UserMap:
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[1] < 3 or t.shape[0] == 0:
        raise InputError(f"{source}: a per-atom table needs rows of (x, y, ldos), got shape {t.shape}")
    return UserMap("atoms", t[:, :2].copy(), t[:, 2].copy(), None, None, source)


def _read_table(path: Path) -> UserMap:
    text = path.read_text(errors="replace").splitlines()
    rows: list[list[float]] = []
    header: list[str] | None = None
    for ln, line in enumerate(text, 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = [p for p in re.split(r"[,\s;]+", s) if p]
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            if rows or header is not None:
                raise InputError(f"{path}: line {ln} is not numeric: {line.strip()!r}") from None
            header = [p.lower() for p in parts]
    if not rows:
        raise InputError(f"{path}: no numeric rows (expected columns x y ldos)")
    ncol = {len(r) for r in rows}
    if len(ncol) != 1:
        raise InputError(f"{path}: rows have different numbers of columns {sorted(ncol)}")
    t = np.array(rows)
    cols = [0, 1, 2]
    if header is not None:
        try:
            vcol = next(header.index(n) for n in ("ldos", "value", "w", "weight", "dos") if n in header)
            cols = [header.index("x"), header.index("y"), vcol]
        except (StopIteration, ValueError):
            raise InputError(f"{path}: header {header} must name columns x, y and ldos") from None
    if t.shape[1] < 3:
        raise InputError(f"{path}: need 3 columns (x, y, ldos), found {t.shape[1]}")
    return atoms_map(t[:, cols], str(path))


def _sidecar_pixel_size(path: Path) -> Any:
    for side in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if side.is_file():
            try:
                d = json.loads(side.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"sidecar {side}: not valid JSON ({exc})") from None
            if "pixel_size" not in d:
                raise InputError(f"sidecar {side}: has no 'pixel_size' key")
            return d["pixel_size"]
    return None


def _read_image(path: Path, pixel_size: Any) -> UserMap:
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()
    except Exception as exc:  # Pillow raises many types
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
    return grid_map(a, pixel_size, str(path), top_row_max_y=True, meta={"image_mode": mode})


def parse_sxm_header(raw: str) -> dict[str, Any]:
    """Parse the text header of a Nanonis .sxm file into a dict (keys lower-case, without colons).

    ``scan_range`` (m), ``scan_offset`` (m) → float arrays; ``scan_pixels`` → int array (nx, ny);
    ``data_info`` → list of dicts (one per channel, columns of the DATA_INFO table).
    """
    lines = raw.replace("\r", "").split("\n")
    out: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(":") and line.endswith(":") and len(line) > 2:
            key = line.strip(":").lower()
            body = []
            i += 1
            while i < len(lines) and not (lines[i].startswith(":") and lines[i].endswith(":") and len(lines[i]) > 2):
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
    for k in ("scan_range", "scan_offset"):
        if k in out:
            out[k] = np.array(out[k].split(), dtype=float)
    if "scan_pixels" in out:
        out["scan_pixels"] = np.array(out["scan_pixels"].split(), dtype=int)
    for k in ("scan_angle", "bias"):
        if k in out:
            try:
                out[k] = float(out[k])
            except ValueError:
                pass
    return out


def _read_sxm(path: Path, channel: str | None, direction: str) -> UserMap:
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
        pick = next((n for n in names if re.search(r"LI|lock|dI.?dV", n, re.I)), None) \
            or next((n for n in names if n.lower().startswith("current")), None) \
            or next((n for n in names if n.upper() == "Z"), names[0] if names else None)
        channel = pick
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
    # row 0 is the first scanned line: the bottom for an 'up' scan, the top for 'down'
    return grid_map(np.array(img, dtype=float), (rng_m[0] * 1e10 / nx, rng_m[1] * 1e10 / ny), str(path),
                    top_row_max_y=(scan_dir == "down"),
                    meta={"channel": channel, "direction": direction, "scan_dir": scan_dir,
                          "scan_angle": hdr.get("scan_angle", 0.0), "sxm_bias": hdr.get("bias", float("nan"))})


def read_user_map(path: str | Path, pixel_size: Any = None, channel: str | None = None,
                  direction: str = "forward") -> UserMap:
    """Read a user STM map (formats in the module docstring) as weighted points.

    Parameters
    ----------
    path : str or Path
    pixel_size : float or (float, float), optional
        Å; required for .npy grids without sidecar and for image files; overrides file metadata.
    channel, direction : Nanonis .sxm channel name and scan direction.

    Raises
    ------
    InputError
        Unknown format, missing pixel size, unreadable file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"map file {str(p)!r} does not exist")
    ext = p.suffix.lower()
    if ext in TABLE_EXT:
        return _read_table(p)
    if ext == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{p}: cannot read .npy ({exc})") from None
        if a.ndim == 2 and a.shape[1] == 3 and pixel_size is None and _sidecar_pixel_size(p) is None:
            return atoms_map(a, str(p))
        return grid_map(a, pixel_size if pixel_size is not None else _sidecar_pixel_size(p), str(p))
    if ext == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if {"x", "y", "ldos"} <= keys:
                return atoms_map(np.stack([z["x"], z["y"], z["ldos"]], axis=1), str(p))
            key = next((k for k in ("ldos", "data", "image") if k in keys), None)
            if key is None:
                raise InputError(f"{p}: .npz needs 'ldos' (or 'data'/'image') + 'pixel_size', or x/y/ldos; "
                                 f"found {sorted(keys)}")
            ps = pixel_size if pixel_size is not None else (z["pixel_size"] if "pixel_size" in keys else None)
            return grid_map(z[key], ps, str(p))
    if ext in IMAGE_EXT:
        return _read_image(p, pixel_size)
    if ext == ".sxm":
        um = _read_sxm(p, channel, direction)
        if pixel_size is not None:  # override the header's scan range (values are already y-ascending)
            um = grid_map(um.values.reshape(um.shape), pixel_size, um.source, meta=um.meta)  # type: ignore[arg-type]
        return um
    raise InputError(f"{p}: unsupported map format {ext!r}; accepted: table (.csv .txt .dat .xyz), .npy, .npz, "
                     ".png .tif .tiff, Nanonis .sxm")


# ------------------------------------------------------------------------------------------------
# checks + transform


def check_map_geometry(um: UserMap, transform: ImageTransform) -> None:
    """Refuse (InputError, saying why) a map whose geometry cannot match the training window."""
    src = um.source
    if not (np.all(np.isfinite(um.values)) and np.all(np.isfinite(um.xy))):
        bad = int((~np.isfinite(um.values)).sum())
        raise InputError(f"{src}: the map contains {bad} NaN/inf value(s); fill or crop them first")
    if um.kind == "grid":
        ny, nx = um.shape  # type: ignore[misc]
        if min(nx, ny) < 8:
            raise InputError(f"{src}: map of {nx}×{ny} pixels is too small (at least 8×8)")
        px, py = um.pixel_size  # type: ignore[misc]
        kx_ny, ky_ny = math.pi / px, math.pi / py
        win = transform.window
        if kx_ny < win.kx_max * (1 - 1e-9) or ky_ny < win.ky_max * (1 - 1e-9):
            pmax_x, pmax_y = math.pi / win.kx_max, math.pi / win.ky_max
            raise InputError(f"{src}: pixel size ({px:.4g}, {py:.4g}) Å is too coarse: its Nyquist limit "
                             f"π/p = ({kx_ny:.3g}, {ky_ny:.3g}) Å⁻¹ does not reach the training window "
                             f"k_max = ({win.kx_max:.3g}, {win.ky_max:.3g}) Å⁻¹; need p_x ≤ {pmax_x:.3f} Å, "
                             f"p_y ≤ {pmax_y:.3f} Å")
    if um.values.size < 2 or float(np.ptp(um.values)) == 0.0:
        raise InputError(f"{src}: the map is constant; it carries no LDOS modulation to transform")
    Lx, Ly = um.field_of_view
    if transform.moire_period:
        need = MIN_FOV_MOIRE * transform.moire_period
        why = f"{MIN_FOV_MOIRE:g} moiré periods of the training lattice (L_m = {transform.moire_period:.4g} Å)"
    else:
        need, why = MIN_FOV_NO_MOIRE, "10 graphene lattice constants (moiré period unknown)"
    if min(Lx, Ly) < need * (1 - 1e-9):
        raise InputError(f"{src}: field of view {Lx:.4g} × {Ly:.4g} Å is too small to resolve moiré satellites: "
                         f"need at least {need:.4g} Å ({why})")


def user_map_to_image(src: str | Path | np.ndarray | UserMap, image_transform: ImageTransform | dict | str,
                      pixel_size: Any = None, channel: str | None = None, direction: str = "forward",
                      attrs: dict[str, Any] | None = None) -> Any:
    """A user map → FT-LDOS image (float32 DataArray (ky, kx)) with the training ``image_transform``.

    Parameters
    ----------
    src : path, ndarray or UserMap
        A file (formats in the module docstring), a 2-D array ``[iy, ix]`` (needs ``pixel_size``),
        or an (M, 3) per-atom array (x, y, ldos).
    image_transform : ImageTransform, dict or JSON str
        As stored in the dataset's ``image_transform`` attribute.
    pixel_size, channel, direction : see :func:`read_user_map`.
    attrs : dict, optional
        Extra metadata for the image.

    Raises
    ------
    InputError
        When the map cannot match the training window (see :func:`check_map_geometry`).
    """
    t = image_transform if isinstance(image_transform, ImageTransform) else ImageTransform.from_dict(image_transform)
    if isinstance(src, UserMap):
        um = src
    elif isinstance(src, np.ndarray):
        if src.ndim == 2 and src.shape[1] == 3 and pixel_size is None:
            um = atoms_map(src)
        else:
            um = grid_map(src, pixel_size)
    else:
        um = read_user_map(src, pixel_size=pixel_size, channel=channel, direction=direction)
    check_map_geometry(um, t)
    meta = {"source": um.source, "map_kind": um.kind, "fov_x": um.field_of_view[0], "fov_y": um.field_of_view[1]}
    if um.pixel_size is not None:
        meta |= {"pixel_size_x": um.pixel_size[0], "pixel_size_y": um.pixel_size[1]}
    meta |= {k: v for k, v in um.meta.items()}
    return ftldos(um.xy, um.values, transform=t, attrs=meta | dict(attrs or {}))
