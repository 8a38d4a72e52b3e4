"""Writing the dataset store, and checking a store against the configuration of a build.

What a store holds is defined once, in :mod:`moireu.data.schema` (variables, point key, U rounding,
split code) — see the generated table in docs/ARCHITECTURE.md. This module assembles that
:class:`xarray.Dataset` from per-point parts and writes it.

The store is only ever replaced as a whole: written to a temporary sibling, read back and compared
with what was meant to be written (:func:`verify_store`), then renamed into place, all under the
build lock — so a reader sees either the previous complete store or the new complete one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from moireu.config import MoireuConfig, config_from_json
from moireu.data import schema as sc
from moireu.data.schema import HF_FIELDS, is_store, open_store, recover  # noqa: F401 - re-exported
from moireu.errors import InputError

_MAX_CHUNK_BYTES = 8 * 2**20


def store_config(ds: Any) -> MoireuConfig:
    """The resolved configuration a store was built from."""
    return config_from_json(ds.attrs["config"])


# ------------------------------------------------------------------------------------------------
# configuration compatibility

_IGNORED = {("preset",), ("train",), ("analysis",), ("dataset", "workers"), ("dataset", "retry"),
            ("hf", "U"), ("hf", "filling"), ("stm", "biases"), ("stm", "map_pixels"), ("stm", "tip_height")}
#: may differ between the builds of one store (``--append``): they only add points
_APPENDABLE = {("dataset", "U_values"), ("dataset", "heldout"), ("dataset", "fillings")}


def _flatten(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for k, v in d.items():
        key = prefix + (k,)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(a: MoireuConfig, b: MoireuConfig) -> list[str]:
    """Keys (``section.key``) that change what a build computes, and differ between ``a`` and ``b``.

    Sections ``train``/``analysis``, the worker count and the single-solve ``hf.U``/``hf.filling``
    do not affect the dataset and are ignored.
    """
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    diff = []
    for k in sorted(set(fa) | set(fb)):
        if any(k[:len(i)] == i for i in _IGNORED):
            continue
        va, vb = fa.get(k), fb.get(k)
        if k == ("dataset", "seed"):
            va = a.seed if va is None else va
            vb = b.seed if vb is None else vb
        if va != vb:
            diff.append(".".join(k))
    return diff


def check_existing(out: Path, cfg: MoireuConfig, append: bool) -> Any:
    """Validate an existing ``out`` against ``cfg``; return the existing dataset (or ``None``).

    Same configuration → the store is reused (resume / no-op). Different configuration → refused,
    unless ``append`` and the differences only add points (``dataset.U_values``, ``dataset.heldout``,
    ``dataset.fillings``).
    """
    recover(out)  # the caller holds the build lock
    if not out.exists():
        return None
    if not is_store(out):
        raise InputError(f"--out {str(out)!r} exists and is not a dataset store; choose another path "
                         "(nothing was written)")
    ds = open_store(out)
    old = store_config(ds)
    diff = config_differences(old, cfg)
    if not diff:
        return ds
    if not append:
        raise InputError(f"--out {str(out)!r} holds a dataset built from a different config (differs in "
                         f"{', '.join(diff)}); use another --out, or --append to add U values/fillings "
                         "to it (nothing was written)")
    bad = [d for d in diff if tuple(d.split(".")) not in _APPENDABLE]
    if bad:
        raise InputError(f"cannot --append to {str(out)!r}: its config differs in {', '.join(bad)}, which "
                         "must match (only dataset.U_values, dataset.heldout, dataset.fillings may change); "
                         "nothing was written")
    return ds


def data_fingerprint(cfg: MoireuConfig) -> str:
    """Hash of every config key that changes what one solve point's data are.

    The keys :func:`config_differences` ignores and those that only add points (``--append``:
    ``dataset.U_values``, ``dataset.heldout``, ``dataset.fillings``) are left out; everything else —
    the whole ``lattice``, ``hf`` (``hf.kT`` included), ``stm`` and image settings, the seeds — is in.
    Every work record of a build carries it, and records of another fingerprint are never used.
    """
    import hashlib

    flat = _flatten(cfg.to_dict())
    keep = {".".join(k): v for k, v in sorted(flat.items())
            if not any(k[:len(i)] == i for i in _IGNORED) and k not in _APPENDABLE}
    keep["dataset.seed"] = cfg.seed if keep.get("dataset.seed") is None else keep["dataset.seed"]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# writing


def samples_from_parts(parts: list[tuple[Any, dict[str, Any], dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Per-sample columns from ``(point, solve record, image part)`` triples.

    ``part`` (:meth:`moireu.data.workdir.WorkDir.load_images`) holds ``images``, ``bias``,
    ``variation`` and the per-image columns of the schema's ``scan``/``legacy`` groups it has.
    """
    cols: dict[str, list[np.ndarray]] = {}
    for point, rec, part in parts:
        n = part["images"].shape[0]
        row = {"image": part["images"].astype(np.float32), "U": np.full(n, point.U),
               "filling": np.full(n, point.filling), "split": sc.encode_split(np.full(n, point.split))}
        row |= {k: np.asarray(part[k]) for k in ("bias", "variation")}
        row |= {k: np.asarray(part[k], float) for k in (*sc.SCAN_COLUMNS, *sc.LEGACY_COLUMNS) if k in part}
        row |= {sk: np.full(n, rec[rk]) for rk, sk in HF_FIELDS.items()}
        row |= {sk: np.full(n, rec[rk]) for rk, sk in sc.HF_GROUND_FIELDS.items() if rk in rec}
        _append_row(cols, row, n)
    return {k: np.concatenate(v) for k, v in cols.items()}


def _append_row(cols: dict[str, list[np.ndarray]], row: dict[str, np.ndarray], n: int) -> None:
    """Append one block of columns; columns missing on either side are NaN-filled (float groups only)."""
    n_before = sum(len(x) for x in next(iter(cols.values()))) if cols else 0
    for k in set(cols) | set(row):
        if k not in row:
            row[k] = np.full(n, _missing(k))
        if k not in cols:
            if sc.VARIABLES[k].group == "core" and n_before:
                raise ValueError(f"store column {k!r} is missing in part of the samples")
            cols[k] = [np.full(n_before, _missing(k))] if n_before else []
        cols[k].append(row[k])


def _missing(name: str) -> float:
    """Value of a non-core column for samples that lack it: NaN, or −1 for an integer code."""
    return -1 if sc.VARIABLES[name].np_dtype.kind == "i" else np.nan


def concat_columns(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate two column sets (columns of only one side NaN-filled: scan/legacy groups)."""
    cols: dict[str, list[np.ndarray]] = {}
    for c in (a, b):
        if c and len(c["U"]):
            _append_row(cols, dict(c), len(c["U"]))
    return {k: np.concatenate(v) for k, v in cols.items()}


def dataset_from_columns(cols: dict[str, np.ndarray], kx: np.ndarray, ky: np.ndarray, attrs: dict[str, Any],
                         ldos: dict[tuple[str, float, float], np.ndarray] | None = None,
                         bias_level: np.ndarray | None = None, geometry: dict[str, np.ndarray] | None = None) -> Any:
    """Assemble the schema's :class:`xarray.Dataset`, sorted by (split, U, ν, bias, variation).

    ``ldos`` maps point keys to ``(n_bias, n_atom)`` arrays (rows: ``bias_level``); it is written
    with ``geometry`` only when every point of the store has one.
    """
    import xarray as xr

    split = sc.encode_split(cols["split"])
    order = np.lexsort((cols["variation"], cols["bias"], cols["filling"], cols["U"], split))
    cols = {k: np.asarray(v)[order] for k, v in cols.items()} | {"split": split[order]}
    keys = [(int(s), sc.round_u(u), float(f)) for s, u, f in zip(cols["split"], cols["U"], cols["filling"])]
    points = sorted(set(keys))
    index = {k: i for i, k in enumerate(points)}
    data: dict[str, Any] = {}
    for k, v in cols.items():
        var = sc.VARIABLES[k]
        data[k] = (var.dims, v.astype(var.np_dtype))
    data["sample_point"] = (("sample",), np.array([index[k] for k in keys], np.int32))
    data["point_split"] = (("point",), np.array([p[0] for p in points], np.int8))
    data["point_U"] = (("point",), np.array([p[1] for p in points], float))
    data["point_filling"] = (("point",), np.array([p[2] for p in points], float))
    names = {v: k for k, v in sc.SPLIT_CODES.items()}
    if ldos and geometry and all((names[p[0]], p[1], p[2]) in ldos for p in points):
        data["ldos"] = (sc.VARIABLES["ldos"].dims,
                        np.stack([ldos[(names[p[0]], p[1], p[2])] for p in points]).astype(float))
        data["bias_level"] = (("bias_level",), np.asarray(bias_level, float))
        for g in sc.LDOS_GEOMETRY:
            data[g] = (sc.VARIABLES[g].dims, np.asarray(geometry[g]).astype(sc.VARIABLES[g].np_dtype))
    ds = xr.Dataset(data, coords={"kx": ("kx", np.asarray(kx, float)), "ky": ("ky", np.asarray(ky, float))},
                    attrs=attrs | {"schema_version": sc.SCHEMA_VERSION, "n_points": len(points)})
    for name in ds.variables:
        ds[name].attrs.update(sc.var_attrs(str(name)))
    return ds


def write_store(ds: Any, out: Path) -> None:
    """Write ``ds`` to ``out`` atomically and verified (caller holds the build lock).

    Core Zarr v3: ``bytes`` + ``blosc`` (zstd inside, byte shuffle) on every array, plus zarr-python's
    consolidated metadata in the root ``zarr.json`` (``must_understand: false``). The store is
    written to a temporary sibling, read back and compared with ``ds`` (:func:`verify_store`), and
    only then renamed onto ``out`` (the old store stays until that rename).
    """
    from zarr.codecs import BloscCodec

    from moireu.provenance import atomic_path

    for name in ("split", "point_split"):  # a dataset read with decoded split names is stored as codes
        if name in ds.variables and ds[name].dtype.kind in "OUS":
            ds = ds.assign({name: (ds[name].dims, sc.encode_split(ds[name].values), sc.var_attrs(name))})
    ny, nx = ds.sizes.get("ky", 1), ds.sizes.get("kx", 1)
    per = max(1, min(max(ds.sizes.get("sample", 1), 1), _MAX_CHUNK_BYTES // max(1, 4 * nx * ny)))
    blosc = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    encoding: dict[str, Any] = {str(v): {"compressors": (blosc,)} for v in ds.variables}
    encoding["image"]["chunks"] = (per, ny, nx)
    if "ldos" in ds:
        encoding["ldos"]["chunks"] = (1,) + tuple(ds["ldos"].shape[1:])
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            # zarr notes that consolidated metadata is not in the v3 spec: it is an extra field of the root
            # zarr.json marked must_understand = false (other implementations may ignore it); with it plain
            # xr.open_zarr(path) opens the store without a "no consolidated metadata" RuntimeWarning
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=3, encoding=encoding)
        verify_store(tmp, ds)


def verify_store(path: Path, expected: Any) -> None:
    """Read the store at ``path`` back and compare it with ``expected``; raise if anything differs.

    Every variable (shape, dtype, values — NaN equal to NaN) and every attribute must be there.
    """
    import xarray as xr

    got = xr.open_zarr(path, consolidated=False)
    try:
        for name, var in expected.variables.items():
            if name not in got.variables:
                raise OSError(f"the written store lacks variable {name!r}")
            g = got[name]
            if g.shape != var.shape or g.dtype != var.dtype:
                raise OSError(f"the written store's {name!r} is {g.dtype}{g.shape}, expected {var.dtype}{var.shape}")
            a, b = np.asarray(g.values), np.asarray(var.values)
            if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                raise OSError(f"the written store's {name!r} differs from the data it was given")
        lost = [k for k in expected.attrs if k not in got.attrs]
        if lost:
            raise OSError(f"the written store lacks attributes {lost}")
    finally:
        got.close()


def columns_from_store(ds: Any, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample columns of the samples ``keep`` (bool mask) of an existing store (loaded)."""
    sub = sc.load(ds.isel(sample=np.flatnonzero(keep)))
    cols = {k: np.asarray(sub[k].values) for k in sc.SAMPLE_COLUMNS if k in sub.variables}
    cols["split"] = sc.encode_split(cols["split"])
    return cols


def ldos_from_store(ds: Any) -> tuple[dict[tuple[str, float, float], np.ndarray], Any, dict[str, np.ndarray]]:
    """Per-point LDOS (by point key), the bias levels and the geometry of a store ({} when it has none)."""
    if "ldos" not in ds.variables:
        return {}, None, {}
    split = sc.decode_split(sc.values(ds, "point_split"))
    U, nu = sc.values(ds, "point_U"), sc.values(ds, "point_filling")
    ld = sc.values(ds, "ldos")
    out = {sc.point_key(s, u, f): ld[i] for i, (s, u, f) in enumerate(zip(split, U, nu))}
    return out, sc.values(ds, "bias_level"), {g: sc.values(ds, g) for g in sc.LDOS_GEOMETRY}


def json_attr(ds: Any, name: str, default: Any = None) -> Any:
    v = ds.attrs.get(name)
    return default if v is None else json.loads(v)
