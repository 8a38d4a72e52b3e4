"""The states file: one compact NetCDF-4 (HDF5) file of Hartree–Fock states along a ``point`` axis.

Layout (format ``moireu.states/1``)
-----------------------------------
dimensions ``point`` (one per solved (U, ν)), ``site``, ``spin`` (↑, ↓), ``pair`` (the HF system's Fock
pair list), ``bias``, ``candidate``, ``xyz``, ``vec``;

* per point: every variable whose first dimension is ``point`` — scalars (``U``, ``filling``,
  ``total_energy`` …, float64), ``occupations (point, site, spin)`` float64, ``pair_density (point,
  spin, pair)`` float32 (restart data), ``ldos (point, bias, spin, site)`` float32 (per-atom LDOS per
  spin at E_F + bias), and ``checksum (point)``: the SHA-256 of that point's values of every such
  variable, in name order, as stored;
* shared: the geometry (``atom_xyz``, ``atom_layer``, ``atom_sublattice``, ``cell``), ``bias`` (eV);
* attributes: JSON strings (``fingerprint``, ``fingerprint_keys``, ``ladder``, ``provenance`` …) and
  ``attrs_checksum``, the SHA-256 of all other attributes.

:func:`read_states` recomputes every checksum and refuses a file that is truncated, not of this
format, or whose values or attributes were changed after writing (naming what differs).
:func:`write_states` writes to a temporary sibling and renames it, so a file on disk is always whole.
This module knows the layout only; what a state *means* is :mod:`moireu.data.states`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError

__all__ = ["FORMAT", "point_checksum", "read_states", "write_states"]

FORMAT = "moireu.states/1"


def _canon(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "U":
        return "\x1f".join(a.ravel().tolist()).encode()
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def point_checksum(per_point: dict[str, np.ndarray], i: int) -> str:
    """SHA-256 of point ``i``'s values of every per-point variable (name order, little-endian bytes)."""
    h = hashlib.sha256()
    for name in sorted(per_point):
        if name == "checksum":
            continue
        h.update(name.encode())
        h.update(_canon(np.asarray(per_point[name])[i]))
    return h.hexdigest()


def _attrs_checksum(attrs: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps({k: v for k, v in attrs.items() if k != "attrs_checksum"},
                                     sort_keys=True).encode()).hexdigest()


def write_states(path: str | Path, per_point: dict[str, tuple[tuple[str, ...], np.ndarray]],
                 shared: dict[str, tuple[tuple[str, ...], np.ndarray]], attrs: dict[str, Any]) -> Path:
    """Write a states file atomically.

    Parameters
    ----------
    per_point : name → (dims, array); dims[0] must be ``"point"``
    shared : name → (dims, array) of the variables without a point axis
    attrs : JSON-able values (stored as JSON strings)
    """
    import xarray as xr

    from moireu.provenance import atomic_path

    path = Path(path)
    arrays = {k: np.asarray(v) for k, (_, v) in per_point.items()}
    for k, (dims, _) in per_point.items():
        if dims[0] != "point":
            raise ValueError(f"per-point variable {k!r} must start with the point dimension, got {dims}")
    n = len(arrays["U"]) if "U" in arrays else 0
    sums = np.array([point_checksum(arrays, i) for i in range(n)], dtype=object)
    dv = {k: (dims, np.asarray(v)) for k, (dims, v) in (per_point | shared).items()}
    dv["checksum"] = (("point",), sums.astype(str) if n else np.zeros(0, dtype="<U64"))
    sattrs = {k: json.dumps(v, sort_keys=True, default=str) for k, v in attrs.items()}
    sattrs["format"] = FORMAT
    sattrs["attrs_checksum"] = _attrs_checksum(sattrs)
    ds = xr.Dataset(dv, attrs=sattrs)
    enc = {k: {"zlib": True, "complevel": 4} for k, (_, v) in dv.items()
           if np.asarray(v).dtype.kind in "fiub" and np.asarray(v).size > 64}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=enc)
    return path


def read_states(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a states file → ``(per_point, shared, attrs)`` (attributes decoded from JSON).

    Raises
    ------
    InputError
        Missing, unreadable or truncated file, another format, or a checksum that does not match
        (the file was changed after it was written: which points or attributes).
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise InputError(f"states file {str(path)!r} does not exist")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as exc:  # noqa: BLE001 - HDF5 raises several kinds for a truncated/garbled file
        raise InputError(f"{str(path)!r} is not a readable states file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from None
    raw = dict(ds.attrs)
    if raw.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is not a moireu states file (format {raw.get('format')!r}, "
                         f"expected {FORMAT!r})")
    if raw.get("attrs_checksum") != _attrs_checksum(raw):
        raise InputError(f"{str(path)!r}: its attributes were changed after it was written (attribute "
                         "checksum mismatch); rebuild it with `moireu states build` instead of editing it")
    names = [str(k) for k in ds.variables]
    per_point = {k: ds[k].values for k in names if ds[k].dims[:1] == ("point",)}
    shared = {k: ds[k].values for k in names if ds[k].dims[:1] != ("point",)}
    stored = per_point.get("checksum", np.zeros(0, dtype=str))
    n = len(per_point.get("U", ()))
    if len(stored) != n:
        raise InputError(f"{str(path)!r}: {len(stored)} checksums for {n} points")
    bad = [i for i in range(n) if point_checksum(per_point, i) != str(stored[i])]
    if bad:
        us = ", ".join(f"U = {float(per_point['U'][i]):g}" for i in bad[:6])
        raise InputError(f"{str(path)!r}: the values of {len(bad)} point(s) ({us}) do not match their checksum "
                         "(the file was changed after it was written); rebuild them with `moireu states build`")
    attrs = {}
    for k, v in raw.items():
        if k in ("format", "attrs_checksum"):
            continue
        try:
            attrs[k] = json.loads(v)
        except (TypeError, ValueError):
            raise InputError(f"{str(path)!r}: attribute {k!r} is not JSON") from None
    return per_point, shared, attrs
