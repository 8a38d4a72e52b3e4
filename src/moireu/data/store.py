"""The dataset store: one Zarr (v3) store written through xarray, per the contract in ARCHITECTURE.md.

Variables (dimension ``sample`` unless noted)::

    image (sample, ky, kx) float32   FT-LDOS image, transformed as attrs["image_transform"] says
    kx, ky                float64    coordinates, Å⁻¹
    U, filling, bias      float64    label (eV), ν, bias offset from E_F (eV)
    variation             int32      patch variation id; offset_x, offset_y (Å), rotation_deg
    split                 <U8        "grid" or "heldout"
    hf_converged (bool), hf_iterations (int32), hf_max_moment, hf_staggered_moment,
    hf_charge_spread, hf_total_energy, hf_gap (float64): the (U, ν) solution of the sample

Attributes: ``config`` (resolved config JSON), ``moireu_version``, ``git_commit``,
``image_transform`` (JSON), ``created``, ``failures`` (JSON list of points without images),
``history`` (JSON list of the builds that wrote the store: ``--append`` adds one entry).

The store is only ever replaced as a whole (written to a temporary sibling and renamed), so a
reader sees either the previous complete store or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from moireu.config import MoireuConfig, config_from_json
from moireu.errors import InputError

SAMPLE_VARS_FLOAT = ("U", "filling", "bias", "offset_x", "offset_y", "rotation_deg", "hf_max_moment",
                     "hf_staggered_moment", "hf_charge_spread", "hf_total_energy", "hf_gap")
#: record key of a solve → store variable
HF_FIELDS = {"converged": "hf_converged", "iterations": "hf_iterations", "max_moment": "hf_max_moment",
             "staggered_moment": "hf_staggered_moment", "charge_spread": "hf_charge_spread",
             "total_energy": "hf_total_energy", "gap": "hf_gap"}
SPLIT_ORDER = {"grid": 0, "heldout": 1}
_MAX_CHUNK_BYTES = 8 * 2**20


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr store written by :func:`write_store`."""
    p = Path(path)
    return p.is_dir() and (p / "zarr.json").is_file()


def open_store(path: str | os.PathLike) -> Any:
    """Open a dataset store lazily as an :class:`xarray.Dataset` (``split`` as ``<U8``).

    Raises
    ------
    InputError
        When ``path`` does not exist or is not a moireu dataset store.
    """
    import xarray as xr

    p = Path(path)
    recover(p)
    if not p.exists():
        raise InputError(f"dataset store {str(p)!r} does not exist")
    if not is_store(p):
        raise InputError(f"{str(p)!r} is not a Zarr store (no zarr.json); expected the output of "
                         "`moireu dataset build`")
    ds = xr.open_zarr(p, consolidated=False)
    if "image" not in ds or "config" not in ds.attrs:
        raise InputError(f"{str(p)!r} is a Zarr store but not a moireu dataset (no image/config)")
    if "split" in ds:
        ds["split"] = ds["split"].astype("<U8")
    return ds


def store_config(ds: Any) -> MoireuConfig:
    """The resolved configuration a store was built from."""
    return config_from_json(ds.attrs["config"])


def recover(path: Path) -> None:
    """Finish a store replacement that a kill interrupted between its two renames.

    :func:`moireu.provenance.atomic_path` moves the old store to ``.<name>.old`` before moving the
    new one in; if only the ``.old`` copy exists, put it back.
    """
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
        shutil.rmtree(tmp, ignore_errors=True)


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
    recover(out)
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


# ------------------------------------------------------------------------------------------------
# writing


def samples_from_parts(parts: list[tuple[Any, dict[str, Any], dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Per-sample columns from ``(point, solve record, image part)`` triples."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "U", "filling", "bias", "variation",
                                                         "offset_x", "offset_y", "rotation_deg", "split",
                                                         *HF_FIELDS.values())}
    for point, rec, part in parts:
        n = part["images"].shape[0]
        cols["image"].append(part["images"].astype(np.float32))
        cols["U"].append(np.full(n, point.U))
        cols["filling"].append(np.full(n, point.filling))
        cols["split"].append(np.full(n, point.split, dtype="<U8"))
        for k in ("bias", "variation", "offset_x", "offset_y", "rotation_deg"):
            cols[k].append(np.asarray(part[k]))
        for rk, sk in HF_FIELDS.items():
            cols[sk].append(np.full(n, rec[rk]))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def dataset_from_columns(cols: dict[str, np.ndarray], kx: np.ndarray, ky: np.ndarray,
                         attrs: dict[str, Any]) -> Any:
    """Assemble the contract :class:`xarray.Dataset` (sorted by split, U, ν, bias, variation)."""
    import xarray as xr

    order = np.lexsort((cols["variation"], cols["bias"], cols["filling"], cols["U"],
                        np.array([SPLIT_ORDER[s] for s in cols["split"]])))
    dtypes = {"variation": np.int32, "hf_iterations": np.int32, "hf_converged": bool, "image": np.float32}
    data = {}
    for k, v in cols.items():
        v = np.asarray(v)[order]
        if k == "image":
            data[k] = (("sample", "ky", "kx"), v.astype(np.float32))
        elif k == "split":
            data[k] = ("sample", v.astype(object))
        else:
            data[k] = ("sample", v.astype(dtypes.get(k, np.float64)))
    ds = xr.Dataset(data, coords={"kx": ("kx", np.asarray(kx, float)), "ky": ("ky", np.asarray(ky, float))},
                    attrs=attrs)
    ds["kx"].attrs.update(units="1/Å", long_name="k_x")
    ds["ky"].attrs.update(units="1/Å", long_name="k_y")
    ds["U"].attrs.update(units="eV", long_name="on-site Hubbard U")
    ds["bias"].attrs.update(units="eV", long_name="bias relative to E_F")
    for k in ("offset_x", "offset_y"):
        ds[k].attrs.update(units="Å")
    ds["rotation_deg"].attrs.update(units="deg")
    ds["hf_gap"].attrs.update(units="eV", long_name="mean-field gap at E_F on the HF k-mesh")
    ds["hf_total_energy"].attrs.update(units="eV")
    return ds


def write_store(ds: Any, out: Path) -> None:
    """Write ``ds`` to ``out`` atomically (temporary sibling + rename; the old store stays until then)."""
    from moireu.provenance import atomic_path

    ny, nx = ds.sizes.get("ky", 1), ds.sizes.get("kx", 1)
    per = max(1, min(max(ds.sizes.get("sample", 1), 1), _MAX_CHUNK_BYTES // max(1, 4 * nx * ny)))
    encoding = {"image": {"chunks": (per, ny, nx)}}
    with atomic_path(out) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=False, encoding=encoding)


def empty_columns() -> dict[str, np.ndarray]:
    return samples_from_parts([])


def columns_from_store(ds: Any, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample columns of the samples ``keep`` (bool mask) of an existing store (loaded)."""
    sub = ds.isel(sample=np.flatnonzero(keep)).load()
    cols = {k: np.asarray(sub[k].values) for k in ("image", "U", "filling", "bias", "variation", "offset_x",
                                                   "offset_y", "rotation_deg", "split", *HF_FIELDS.values())}
    cols["split"] = cols["split"].astype("<U8")
    return cols


def concat_columns(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k in a:
        if len(a[k]) == 0:
            out[k] = b[k]
        elif len(b[k]) == 0:
            out[k] = a[k]
        else:
            out[k] = np.concatenate([a[k], b[k]])
    return out


def json_attr(ds: Any, name: str, default: Any = None) -> Any:
    v = ds.attrs.get(name)
    return default if v is None else json.loads(v)
