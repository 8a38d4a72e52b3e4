"""The dataset store: one Zarr (v3) store written through xarray, per the contract in ARCHITECTURE.md.

Variables (dimension ``sample`` unless noted)::

    image (sample, ky, kx) float32   FT-LDOS image, transformed as attrs["image_transform"] says
    kx, ky                float64    coordinates, Å⁻¹
    U, filling, bias      float64    label (eV), ν, bias offset from E_F (eV)
    variation             int32      acquisition index v (the ML split groups by it)
    scan_* , measured_twist_deg, align_quality   float64   the image's simulated acquisition
                                     (:data:`SCAN_COLUMNS`, moireu.stm.measure / moireu.stm.align)
    split                 <U8        "grid" or "heldout"
    hf_converged (bool), hf_iterations (int32), hf_max_moment, hf_staggered_moment,
    hf_charge_spread, hf_total_energy, hf_gap (float64): the (U, ν) solution of the sample

Per point (dimension ``point``) and geometry, so that new acquisitions can be rendered from a store
without any HF solve (contract D)::

    ldos (point, bias_level, atom) float64   per-atom LDOS (spin sum, states/eV/atom)
    point_U, point_filling (point) float64; point_split (point) <U8; bias_level (bias_level) eV
    atom_xyz (atom, xyz) Å; atom_layer, atom_sublattice (atom) int8; cell (vec, xy) Å
    sample_point (sample) int32     index of the sample's point

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

#: per-image acquisition columns (moireu.stm.measure.ScanParams.columns + alignment), float64
SCAN_COLUMNS = ("scan_origin_x", "scan_origin_y", "scan_rotation_deg", "scan_pixel_size", "scan_tip_height",
                "scan_scale_x", "scan_scale_y", "scan_heterostrain", "scan_twist_delta_deg", "scan_noise_white",
                "measured_twist_deg", "align_quality")
SAMPLE_VARS_FLOAT = ("U", "filling", "bias", *SCAN_COLUMNS, "hf_max_moment",
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
            ("hf", "U"), ("hf", "filling"), ("stm", "biases")}  # map_pixels, tip_height shape every image
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
                                                         *SCAN_COLUMNS, "split", *HF_FIELDS.values())}
    for point, rec, part in parts:
        n = part["images"].shape[0]
        cols["image"].append(part["images"].astype(np.float32))
        cols["U"].append(np.full(n, point.U))
        cols["filling"].append(np.full(n, point.filling))
        cols["split"].append(np.full(n, point.split, dtype="<U8"))
        for k in ("bias", "variation"):
            cols[k].append(np.asarray(part[k]))
        params = part.get("params") or {}
        for k in SCAN_COLUMNS:
            cols[k].append(np.asarray(params.get(k, np.full(n, np.nan)), float))
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
    for k in ("scan_origin_x", "scan_origin_y", "scan_pixel_size", "scan_tip_height"):
        ds[k].attrs.update(units="Å")
    for k in ("scan_rotation_deg", "scan_twist_delta_deg", "measured_twist_deg"):
        ds[k].attrs.update(units="deg")
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
    n = int(sub.sizes["sample"])
    cols = {k: np.asarray(sub[k].values) if k in sub else np.full(n, np.nan)
            for k in ("image", "U", "filling", "bias", "variation", *SCAN_COLUMNS, "split", *HF_FIELDS.values())}
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


# ------------------------------------------------------------------------------------------------
# per-point LDOS and geometry (contract D)


def point_key(split: str, U: float, filling: float) -> tuple[str, float, float]:
    return (str(split), round(float(U), 6), float(filling))


def points_from_store(ds: Any, drop: set[tuple[str, float, float]]) -> list[tuple[tuple[str, float, float], np.ndarray]]:
    """``(point key, ldos (bias_level, atom))`` of an existing store's points not in ``drop``."""
    if "ldos" not in ds:
        return []
    keys = [point_key(s, u, f) for s, u, f in zip(ds["point_split"].values.tolist(), ds["point_U"].values.tolist(),
                                                   ds["point_filling"].values.tolist())]
    L = np.asarray(ds["ldos"].values)
    return [(k, L[i]) for i, k in enumerate(keys) if k not in drop]


def attach_points(ds: Any, points: list[tuple[tuple[str, float, float], np.ndarray]], bias_level: np.ndarray,
                  geometry: dict[str, np.ndarray]) -> Any:
    """Add ``ldos (point, bias_level, atom)``, the point coordinates, the cell geometry and ``sample_point``."""
    if not points or not geometry:
        return ds
    points = sorted(points, key=lambda t: (SPLIT_ORDER[t[0][0]], t[0][1], t[0][2]))
    index = {k: i for i, (k, _) in enumerate(points)}
    sample_keys = [point_key(s, u, f) for s, u, f in zip(np.asarray(ds["split"].values).tolist(),
                                                          ds["U"].values.tolist(), ds["filling"].values.tolist())]
    sp = np.array([index.get(k, -1) for k in sample_keys], np.int32)
    pos = np.asarray(geometry["positions"], float)
    if pos.shape[1] == 2:
        pos = np.column_stack([pos, np.zeros(len(pos))])
    ds = ds.assign(
        ldos=(("point", "bias_level", "atom"), np.stack([L for _, L in points]).astype(np.float64),
              {"units": "states/eV/atom", "long_name": "per-atom LDOS (spin sum)"}),
        point_U=("point", np.array([k[1] for k, _ in points]), {"units": "eV"}),
        point_filling=("point", np.array([k[2] for k, _ in points])),
        point_split=("point", np.array([k[0] for k, _ in points], dtype=object)),
        bias_level=("bias_level", np.asarray(bias_level, float), {"units": "eV", "long_name": "bias relative to E_F"}),
        atom_xyz=(("atom", "xyz"), pos, {"units": "Å"}),
        atom_layer=("atom", np.asarray(geometry["layer"], np.int8)),
        atom_sublattice=("atom", np.asarray(geometry["sublattice"], np.int8)),
        cell=(("vec", "xy"), np.asarray(geometry["cell"], float), {"units": "Å", "long_name": "moiré vectors t1, t2"}),
        sample_point=("sample", sp, {"long_name": "index of the sample's point (-1: none)"}),
    )
    return ds


def geometry_from_store(ds: Any) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """``(bias_level, geometry)`` of a store written with per-point LDOS (None otherwise)."""
    if "ldos" not in ds:
        return None
    return np.asarray(ds["bias_level"].values), {"positions": np.asarray(ds["atom_xyz"].values),
                                                 "cell": np.asarray(ds["cell"].values),
                                                 "layer": np.asarray(ds["atom_layer"].values),
                                                 "sublattice": np.asarray(ds["atom_sublattice"].values)}
