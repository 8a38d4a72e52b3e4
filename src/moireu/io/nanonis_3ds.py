"""Nanonis grid spectroscopy (``.3ds``): a dI/dV map at one bias out of a bias sweep at every grid point.

Parsed here from the documented layout (``nanonispy`` 1.1 needs the ``np.float`` alias removed in
NumPy 1.24): a text header of ``key=value`` lines (values often in double quotes, lists separated by
``;``) ending with the line ``:HEADER_END:``, then big-endian ``float32`` data, point after point.
The header keys used:

* ``Grid dim="nx x ny"`` — points per line × lines; ``Grid settings=cx;cy;width;height;angle`` — the
  frame's centre and size (m) and its rotation (degrees);
* ``Sweep Signal="Bias (V)"``; ``Fixed parameters="Sweep Start;Sweep End"``;
  ``Experiment parameters="X (m);Y (m);Z (m);…"``; ``# Parameters (4 byte)`` — how many of them there are;
* ``Points`` — sweep points; ``Channels="Current (A);LI Demod 1 X (A);…"``; ``Experiment size (bytes)`` —
  ``4 × Points × channels``; ``Filetype`` — ``Linear`` (the sweep runs linearly from Sweep Start to
  Sweep End) or ``MLS`` (multi-segment: the sweep values are those of the sweep signal's own channel).

Each point holds its parameters, then each channel's ``Points`` sweep values. Points run along x, lines
along y; the grid is measured upwards, so line 0 is the bottom of the frame (y grows with the row
index, as moireu wants). The pixel size is ``width / nx``, ``height / ny`` (the points sit at the
centres of the frame's pixels, as in a scan).

Channel: ``channel=`` a name with or without its unit (``LI Demod 1 X`` or ``LI Demod 1 X (A)``);
default the first lock-in (dI/dV) channel, else the first channel. ``direction="backward"`` takes the
backward sweep's ``[bwd]`` channel. The map is taken at the sweep point nearest to ``bias=`` (V;
default 0 V, the Fermi level), at every grid point.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.base import MapData, check_pixel_size
from moireu.io.channels import channel_kind, is_didv, require_finite, split_unit
from moireu.io.registry import register_reader

_END = b":HEADER_END:"
_REQUIRED = ("Grid dim", "Grid settings", "Sweep Signal", "# Parameters (4 byte)", "Points", "Channels")


def parse_3ds_header(text: str) -> dict[str, str]:
    """``key=value`` lines of a .3ds header → dict (values stripped of their double quotes)."""
    out: dict[str, str] = {}
    for line in text.replace("\r", "").split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), v.strip().strip('"'))
    return out


def _items(text: str) -> list[str]:
    return [s.strip() for s in text.split(";") if s.strip()]


def _bwd(name: str) -> bool:
    return "[bwd]" in name.lower()


@register_reader(".3ds")
class Nanonis3dsReader:
    """Nanonis ``.3ds`` grid spectroscopy (see the module docstring)."""

    def read(self, path: Path, pixel_size: Any = None, channel: str | None = None,
             direction: str = "forward", bias: float | None = None, **_: Any) -> MapData:
        src = str(path)
        if direction not in ("forward", "backward"):
            raise InputError(f"direction must be 'forward' or 'backward', got {direction!r}")
        raw = path.read_bytes()
        end = raw.find(_END)
        if end < 0:
            raise InputError(f"{src}: not a Nanonis .3ds file (no :HEADER_END: line)")
        start = end + len(_END)
        for eol in (b"\r\n", b"\n"):
            if raw.startswith(eol, start):
                start += len(eol)
                break
        try:
            text = raw[:end].decode("utf-8")
        except UnicodeDecodeError:  # older Nanonis versions write the header in the Windows code page
            text = raw[:end].decode("cp1252", errors="replace")
        h = parse_3ds_header(text)
        missing = [k for k in _REQUIRED if k not in h]
        if missing:
            raise InputError(f"{src}: the .3ds header lacks {', '.join(missing)}")
        try:
            m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", h["Grid dim"])
            if m is None:
                raise ValueError(f"Grid dim {h['Grid dim']!r}")
            nx, ny = int(m.group(1)), int(m.group(2))
            npar, npts = int(h["# Parameters (4 byte)"]), int(h["Points"])
        except ValueError as exc:
            raise InputError(f"{src}: malformed .3ds header ({exc}); expected 'Grid dim=\"nx x ny\"' and integer "
                             "'# Parameters (4 byte)' and 'Points'") from None
        channels = _items(h["Channels"])
        params = _items(h.get("Fixed parameters", "")) + _items(h.get("Experiment parameters", ""))
        if not channels or nx < 1 or ny < 1 or npts < 1 or npar < 0:
            raise InputError(f"{src}: the .3ds header declares an empty grid ({nx} x {ny} points, {npts} sweep "
                             f"points, {len(channels)} channels)")
        if "Experiment size (bytes)" in h and h["Experiment size (bytes)"].strip() != str(4 * npts * len(channels)):
            raise InputError(f"{src}: inconsistent .3ds header: 'Experiment size (bytes)={h['Experiment size (bytes)']}' "
                             f"but {npts} points × {len(channels)} channels × 4 bytes = {4 * npts * len(channels)}")
        per = npar + npts * len(channels)
        data = np.frombuffer(raw, dtype=">f4", offset=min(start, len(raw)), count=(len(raw) - min(start, len(raw))) // 4)
        if data.size < nx * ny * per:
            raise InputError(f"{src}: truncated .3ds file: it holds {data.size // per} of the {nx} x {ny} = {nx * ny} "
                             "grid points the header declares (an aborted grid?); moireu needs the complete map")
        grid = data[:nx * ny * per].reshape(ny, nx, per)

        # channel
        names = [split_unit(c)[0] for c in channels]
        if channel is None:
            fwd = [i for i, n in enumerate(names) if not _bwd(n)] or list(range(len(names)))
            ci = next((i for i in fwd if is_didv(names[i])), fwd[0])
        else:
            want = str(channel).strip()
            hits = [i for i, (c, n) in enumerate(zip(channels, names)) if want in (c, n)] \
                or [i for i, (c, n) in enumerate(zip(channels, names)) if want.lower() in (c.lower(), n.lower())]
            if not hits:
                raise InputError(f"{src}: channel {channel!r} not in the file; available: {', '.join(channels)}")
            ci = hits[0]
        if direction == "backward" and not _bwd(names[ci]):
            bname = f"{names[ci]} [bwd]".lower()
            b = [i for i, n in enumerate(names) if n.lower() == bname]
            if not b:
                raise InputError(f"{src}: channel {channels[ci]!r} has no backward sweep (no "
                                 f"'{names[ci]} [bwd]' channel); allowed: direction forward")
            ci = b[0]
        unit = split_unit(channels[ci])[1]
        backward = _bwd(names[ci])

        # sweep values at every point
        sweep_name, sweep_unit = split_unit(h["Sweep Signal"])
        if sweep_unit != "V" and not sweep_name.lower().startswith("bias"):
            raise InputError(f"{src}: the grid sweeps {h['Sweep Signal']!r}, not the bias; moireu reads "
                             "bias-spectroscopy grids (dI/dV maps)")
        sweep_label = f"{sweep_name} [bwd]" if backward else sweep_name
        sweep_ch = [i for i, n in enumerate(names) if n.lower() == sweep_label.lower()]
        linear = h.get("Filetype", "Linear").strip().lower() != "mls"
        if linear and not backward and {"Sweep Start", "Sweep End"} <= set(params[:npar]):
            s0 = grid[:, :, params.index("Sweep Start")].astype(float)[..., None]
            s1 = grid[:, :, params.index("Sweep End")].astype(float)[..., None]
            sweep = s0 + (s1 - s0) * np.linspace(0.0, 1.0, npts)
        elif sweep_ch:  # the sweep signal recorded as a channel (multi-segment sweeps, backward sweeps)
            k = npar + sweep_ch[0] * npts
            sweep = grid[:, :, k:k + npts].astype(float)
        else:
            how = "" if backward or not linear else "no 'Sweep Start;Sweep End' parameters, and "
            raise InputError(f"{src}: cannot tell the bias of each sweep point of channel {channels[ci]!r}: {how}"
                             f"no {sweep_label!r} channel recorded{' (a multi-segment sweep)' if not linear else ''}")
        try:
            target = 0.0 if bias is None else float(bias)
        except (TypeError, ValueError):
            target = float("nan")
        if not np.isfinite(target):
            raise InputError(f"{src}: bias must be a finite number (V), got {bias!r}")
        if not np.any(np.isfinite(sweep)):
            raise InputError(f"{src}: the sweep's bias values are all NaN")
        lo, hi = float(np.nanmin(sweep)), float(np.nanmax(sweep))
        step = (hi - lo) / max(npts - 1, 1)
        if bias is not None and not (lo - 0.5 * step - 1e-12 <= target <= hi + 0.5 * step + 1e-12):
            raise InputError(f"{src}: bias {target:g} V is outside the grid's sweep [{lo:g}, {hi:g}] V")
        dist = np.abs(sweep - target)
        dist[~np.isfinite(dist)] = np.inf
        k = np.argmin(dist, axis=2)  # (ny, nx) sweep index at each point
        k0 = npar + ci * npts
        values = np.take_along_axis(grid[:, :, k0:k0 + npts], k[..., None], axis=2)[..., 0]
        values = require_finite(values, src, f"channel {channels[ci]!r} at {target:g} V")
        chosen = np.take_along_axis(sweep, k[..., None], axis=2)[..., 0]

        try:
            cx, cy, w, hgt, angle = (float(v) for v in _items(h["Grid settings"]))
        except ValueError:
            if pixel_size is None:
                raise InputError(f"{src}: 'Grid settings={h['Grid settings']}' is not 'cx;cy;width;height;angle' "
                                 "(m, m, m, m, deg), so the pixel size is unknown; pass --pixel-size (Å)") from None
            cx = cy = angle = float("nan")
        if pixel_size is None:
            pixel_size = check_pixel_size((w * 1e10 / nx, hgt * 1e10 / ny),
                                          f"{src} (Grid settings width {w:g} m, height {hgt:g} m)")
        meta = {"source": src, "format": "3ds", "channel": channels[ci], "value_unit": unit,
                "channel_kind": channel_kind(unit), "direction": direction,
                "bias_V": float(np.mean(chosen)), "sweep_V": [lo, hi], "sweep_points": npts, "scan_angle": angle,
                "grid_centre_A": [cx * 1e10, cy * 1e10], "channels": channels}
        if bias is not None:
            meta["bias_requested_V"] = target
        return MapData(values, pixel_size, meta)
