"""A paper-pipeline copy of a dataset store: the same HF states and U labels, the reference images.

:func:`paper_store` reads a store that keeps the per-atom LDOS of every solve point (contract D:
``ldos (point, bias_level, atom)``, ``atom_xyz``, ``cell``, ``sample_point``, ``bias_level``) and
writes a store with the same variables whose ``image`` is the reference image of each sample
(:func:`moireu.stm.paper.paper_image`: ``|F|`` without mean subtraction on the 1003² window, turbo
PNG, grayscale, 256²). The sample's patch is placed at its stored crop origin and rotation
(``scan_origin_x/y``, ``scan_rotation_deg``, or the older ``offset_x/y``, ``rotation_deg``), so
both pipelines see the same atoms of the same HF states with the same labels: "same data".
The config's ``dataset.paper_U_values`` and ``dataset.paper_n_offsets`` select the reference's grid
(every held-out sample stays) and its acquisitions per (U, bias) (the draws ``v < n``, which do not
depend on how many our networks get).

Resumable: finished blocks of images are committed atomically to ``.<out name>.work/`` and
skipped by a rerun; the store is written atomically at the end and the work folder removed.
"""

from __future__ import annotations

import json
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from moireu.errors import InputError
from moireu.stm.paper import PaperTransform

__all__ = ["paper_store", "sample_geometry", "REQUIRED"]

#: variables a store must hold to be re-imaged (contract D)
REQUIRED = ("ldos", "atom_xyz", "cell", "sample_point", "bias_level", "bias")
_BLOCK = 32


def _first(ds: Any, names: tuple[str, ...], n: int) -> np.ndarray:
    for name in names:
        if name in ds.variables:
            return np.asarray(ds[name].values, dtype=float)
    return np.zeros(n)


def sample_geometry(ds: Any) -> dict[str, np.ndarray]:
    """Per-sample point index, bias row, patch origin (Å) and rotation (deg) of a contract-D store.

    Raises
    ------
    InputError
        A variable of :data:`REQUIRED` is missing, or a sample's bias is not one of ``bias_level``.
    """
    missing = [v for v in REQUIRED if v not in ds.variables]
    if missing:
        raise InputError(f"the store lacks {missing}: paper images are rendered from the per-atom LDOS a store "
                         "keeps (contract D: ldos (point, bias_level, atom), atom_xyz, cell, sample_point); "
                         "rebuild it with a moireu that writes them")
    n = int(ds.sizes["sample"])
    levels = np.asarray(ds["bias_level"].values, dtype=float)
    bias = np.asarray(ds["bias"].values, dtype=float)
    d = np.abs(bias[:, None] - levels[None, :])
    row = d.argmin(axis=1)
    if (d[np.arange(n), row] > 1e-9).any():
        bad = int(np.flatnonzero(d[np.arange(n), row] > 1e-9)[0])
        raise InputError(f"sample {bad} has bias {bias[bad]} eV, not one of the stored bias_level {levels.tolist()}")
    return {"point": np.asarray(ds["sample_point"].values, dtype=np.int64), "row": row,
            "ox": _first(ds, ("scan_origin_x", "offset_x"), n), "oy": _first(ds, ("scan_origin_y", "offset_y"), n),
            "rot": _first(ds, ("scan_rotation_deg", "rotation_deg"), n)}


def _render_block(args: tuple) -> np.ndarray:
    from moireu.stm.paper import paper_image

    xyz, cell, ldos_rows, ox, oy, rot, tdict = args
    t = PaperTransform(**tdict)
    return np.stack([paper_image(xyz, cell, w, t, offset=(float(x), float(y)), rotation_deg=float(r))
                     for w, x, y, r in zip(ldos_rows, ox, oy, rot)]).astype(np.float32)


def paper_store(src: str | Path, out: str | Path, transform: PaperTransform | None = None, *, workers: int = 1,
                force: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the paper-pipeline copy of the store ``src`` to ``out`` (see the module docstring).

    Parameters
    ----------
    src, out : path
        Source store (contract D) and the store to write.
    transform : PaperTransform, optional
        Default: the reference settings with ``patch_cells`` from the source store's config.
    workers : int
        Processes rendering blocks of images in parallel.
    force : bool
        Overwrite a finished ``out``.
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``out``, ``n_samples``, ``image_shape``, ``transform``, ``blocks_reused``.
    """
    import xarray as xr

    from moireu.config import MoireuConfig
    from moireu.data.store import store_config, write_store
    from moireu.provenance import write_bytes_atomic

    src, out = Path(src), Path(out)
    if out.exists() and not force:
        raise InputError(f"{str(out)!r} already exists; use --force to overwrite it")
    if not src.exists():
        raise InputError(f"dataset store {str(src)!r} does not exist")
    if workers < 1:
        raise InputError(f"workers must be ≥ 1, got {workers}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # stores are written without consolidated metadata
        ds = xr.open_zarr(src, consolidated=None)
    cfg = store_config(ds) if "config" in ds.attrs else MoireuConfig()
    grid_U = cfg.dataset.paper_U_values
    if grid_U is not None:  # the reference's grid: its U values and every held-out sample
        from moireu.data import schema as sc

        split = sc.decode_split(np.asarray(ds["split"].values))
        u = np.round(np.asarray(ds["U"].values, float), sc.U_DECIMALS)
        keep = np.flatnonzero((split != "grid") | np.isin(u, np.round(np.asarray(grid_U, float), sc.U_DECIMALS)))
        ds = ds.isel(sample=keep)
    n_ref = cfg.dataset.paper_n_offsets
    if n_ref is not None:  # the reference's acquisitions per (U, bias): the first n_ref draws
        ds = ds.isel(sample=np.flatnonzero(np.asarray(ds["variation"].values) < int(n_ref)))
    geo = sample_geometry(ds)
    if transform is None:
        transform = PaperTransform(patch_cells=cfg.stm.patch_cells)
    tdict = {k: v for k, v in transform.to_dict().items() if k in PaperTransform.__dataclass_fields__}
    xyz = np.asarray(ds["atom_xyz"].values, float)
    cell = np.asarray(ds["cell"].values, float)
    ldos = np.asarray(ds["ldos"].values, float)
    n = int(ds.sizes["sample"])
    work = out.with_name(f".{out.name}.work")
    manifest = {"src": str(src.resolve()), "n": n, "transform": tdict,
                "grid_U": None if grid_U is None else list(grid_U), "n_offsets": n_ref}
    mpath = work / "manifest.json"
    if work.exists() and (not mpath.exists() or json.loads(mpath.read_text()) != manifest):
        shutil.rmtree(work)  # another source or transform: nothing to reuse
    work.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(mpath, json.dumps(manifest).encode())
    starts = list(range(0, n, _BLOCK))
    todo = [s for s in starts if not (work / f"block_{s:07d}.npy").exists()]
    reused = len(starts) - len(todo)

    def job(s: int) -> tuple:
        sl = slice(s, min(s + _BLOCK, n))
        rows = ldos[geo["point"][sl], geo["row"][sl]]
        return (xyz, cell, rows, geo["ox"][sl], geo["oy"][sl], geo["rot"][sl], tdict)

    def commit(s: int, imgs: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, imgs)
        write_bytes_atomic(work / f"block_{s:07d}.npy", buf.getvalue())

    if workers == 1:
        for s in todo:
            commit(s, _render_block(job(s)))
            if progress:
                progress(min(n, (starts.index(s) + 1) * _BLOCK), n)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for s, imgs in zip(todo, pool.map(_render_block, [job(s) for s in todo])):
                commit(s, imgs)
                if progress:
                    progress(min(n, (starts.index(s) + 1) * _BLOCK), n)
    images = np.concatenate([np.load(work / f"block_{s:07d}.npy") for s in starts])
    size = transform.size
    kx = np.linspace(-transform.window.kx_max, transform.window.kx_max, size)
    ky = np.linspace(-transform.window.ky_max, transform.window.ky_max, size)
    new = ds.drop_vars([v for v in ("image", "kx", "ky") if v in ds.variables]).load()
    new = new.assign_coords(kx=("kx", kx), ky=("ky", ky))
    new["image"] = (("sample", "ky", "kx"), images)
    new["image"].attrs.update(long_name="reference FT-LDOS image (turbo PNG → grayscale, arXiv:2602.18890)",
                              units="1")
    new.attrs = dict(ds.attrs) | {"image_transform": json.dumps(transform.to_dict()),
                                  "paper_images_from": str(src.resolve())}
    for v in new.variables.values():
        v.encoding = {}
    write_store(new, out)
    shutil.rmtree(work, ignore_errors=True)
    return {"out": str(out), "n_samples": n, "image_shape": [size, size], "transform": transform.to_dict(),
            "blocks_reused": reused}
