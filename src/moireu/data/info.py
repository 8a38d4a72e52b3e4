"""Summaries of a dataset store and PNG export (for looking only: the store keeps float32 data)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from moireu.data import schema as sc
from moireu.data.store import json_attr, open_store
from moireu.errors import InputError
from moireu.provenance import write_bytes_atomic


def dataset_info(path: str | os.PathLike) -> dict[str, Any]:
    """Counts per U and split, image shape, config, provenance and failures of a store.

    Returns a JSON-serialisable dict with keys ``path``, ``samples``, ``image_shape``, ``kx_range``,
    ``ky_range``, ``splits`` ({split: n}), ``per_U`` (list of {split, U, filling, images,
    hf_converged, hf_iterations, hf_max_moment, hf_staggered_moment, hf_gap, and hf_branch,
    hf_energy_margin where the store records them}), ``fillings``,
    ``biases``, ``variations``, ``unconverged_samples``, ``failures``, ``config``,
    ``image_transform``, ``moireu_version``, ``git_commit``, ``created``, ``history``.
    """
    ds = open_store(path)
    meta = sc.load(ds.drop_vars("image"))
    split = meta["split"].values.astype(str)
    U, nu = meta["U"].values, meta["filling"].values
    per: dict[tuple[str, float, float], list[int]] = {}
    for i, key in enumerate(zip(split.tolist(), U.tolist(), nu.tolist())):
        per.setdefault(key, []).append(i)
    rows = []
    for (s, u, f), idx in sorted(per.items(), key=lambda kv: ({"grid": 0}.get(kv[0][0], 1), kv[0][1], kv[0][2])):
        i = idx[0]
        rows.append({"split": s, "U": float(u), "filling": float(f), "images": len(idx)}
                    | {v: meta[v].values[i].item() for v in (*sc.HF_FIELDS.values(), *sc.HF_GROUND_FIELDS.values())
                       if v in meta})
    kx, ky = ds["kx"].values, ds["ky"].values
    return {
        "path": str(path),
        "samples": int(ds.sizes["sample"]),
        "image_shape": [int(ds.sizes["ky"]), int(ds.sizes["kx"])],
        "kx_range": [float(kx.min()), float(kx.max())] if kx.size else [],
        "ky_range": [float(ky.min()), float(ky.max())] if ky.size else [],
        "splits": {s: int((split == s).sum()) for s in sorted(set(split.tolist()))},
        "per_U": rows,
        "fillings": sorted(set(nu.tolist())),
        "biases": sorted(set(meta["bias"].values.tolist())),
        "variations": int(len(set(meta["variation"].values.tolist()))),
        "unconverged_samples": int((~meta["hf_converged"].values.astype(bool)).sum()),
        "failures": json_attr(ds, "failures", []),
        "config": json.loads(ds.attrs["config"]),
        "image_transform": json_attr(ds, "image_transform", {}),
        "moireu_version": ds.attrs.get("moireu_version"),
        "git_commit": ds.attrs.get("git_commit"),
        "created": ds.attrs.get("created"),
        "history": json_attr(ds, "history", []),
        "schema_version": ds.attrs.get("schema_version"),
        "per_image_columns": [c for c in (*sc.SCAN_COLUMNS, *sc.LEGACY_COLUMNS) if c in ds.variables],
        "ldos": (dict(zip(ds["ldos"].dims, map(int, ds["ldos"].shape))) if "ldos" in ds.variables else None),
    }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`dataset_info`."""
    cfg = info["config"]
    lat = cfg.get("lattice", {})
    lines = [f"dataset {info['path']}",
             f"  samples {info['samples']} ({', '.join(f'{k}: {v}' for k, v in info['splits'].items())}), "
             f"image {info['image_shape'][0]}×{info['image_shape'][1]} float32",
             f"  kx ∈ {info['kx_range']} Å⁻¹, ky ∈ {info['ky_range']} Å⁻¹",
             f"  preset {cfg.get('preset')}, TBG i = {lat.get('index')}, d = {lat.get('interlayer_distance')} Å, "
             f"fillings {info['fillings']}, biases {info['biases']} eV, {info['variations']} patch variations",
             f"  moireu {info['moireu_version']}, commit {info['git_commit']}, created {info['created']}",
             f"  unconverged samples {info['unconverged_samples']}, failed points {len(info['failures'])}",
             f"  schema {info['schema_version']}; per-image columns: {', '.join(info['per_image_columns']) or 'none'}; "
             f"per-atom LDOS: {info['ldos'] or 'not stored'}",
             "",
             f"  {'split':<8} {'U (eV)':>9} {'ν':>6} {'images':>6} {'conv':>5} {'iter':>5} "
             f"{'max m':>7} {'stag m':>7} {'gap (eV)':>9} {'branch':>11} {'next (meV)':>10}"]
    names = {c: n for n, c in sc.BRANCH_CODES.items()}
    for r in info["per_U"]:
        margin = r.get("hf_energy_margin", float("nan"))
        lines.append(f"  {r['split']:<8} {r['U']:9.4f} {r['filling']:6.2f} {r['images']:6d} "
                     f"{'yes' if r['hf_converged'] else 'NO':>5} {r['hf_iterations']:5d} "
                     f"{r['hf_max_moment']:7.4f} {r['hf_staggered_moment']:7.4f} {r['hf_gap']:9.5f} "
                     f"{names.get(r.get('hf_branch', -1), '-'):>11} "
                     f"{(f'{1e3 * margin:.1f}' if margin == margin else '-'):>10}")
    for f in info["failures"]:
        lines.append(f"  FAILED {f.get('key')} ({f.get('stage')}): {f.get('error')}")
    return "\n".join(lines)


def export_png(path: str | os.PathLike, out_dir: str | os.PathLike, *, limit: int | None = None,
               cmap: str = "magma", progress: bool = True) -> list[Path]:
    """Write each image as ``<split>_U<U>_nu<ν>_b<bias>_v<variation>.png`` plus ``overview.png``.

    PNGs are colour-mapped for looking only (the store holds the float32 data). ``limit`` caps the
    number of per-sample files (``None``: all). ``overview.png`` shows one image per (split, U, ν)
    (bias closest to 0, variation 0).
    """
    from moireu.plot.data import image_png, overview_figure

    if limit is not None and limit < 0:
        raise InputError(f"--limit must be ≥ 0, got {limit}")
    ds = open_store(path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    meta = sc.load(ds.drop_vars("image"))
    n = int(ds.sizes["sample"])
    idx = range(n if limit is None else min(n, limit))
    written: list[Path] = []
    it: Any = idx
    if progress and len(idx) > 20:
        from moireu.progress import track

        it = track(idx, "PNG", "images")
    block: tuple[int, np.ndarray] = (-1, np.zeros(0))
    bs = int(ds["image"].encoding.get("chunks", (64,))[0] or 64)
    for i in it:
        name = (f"{meta['split'].values[i]}_U{meta['U'].values[i]:.4f}_nu{meta['filling'].values[i]:+.2f}_"
                f"b{meta['bias'].values[i]:+.4f}_v{int(meta['variation'].values[i]):03d}.png")
        name = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
        if i // bs != block[0]:  # read whole chunks, not one chunk per image
            block = (i // bs, sc.values(ds, "image", slice((i // bs) * bs, (i // bs + 1) * bs)))
        img = block[1][i - block[0] * bs]
        written.append(write_bytes_atomic(out / name, image_png(img, cmap)))
    # overview: one per point
    pick: dict[tuple[str, float, float], int] = {}
    for i in range(n):
        key = (str(meta["split"].values[i]), float(meta["U"].values[i]), float(meta["filling"].values[i]))
        j = pick.get(key)
        score = (abs(meta["bias"].values[i]), int(meta["variation"].values[i]))
        if j is None or score < (abs(meta["bias"].values[j]), int(meta["variation"].values[j])):
            pick[key] = i
    if pick:
        keys = sorted(pick, key=lambda k: ({"grid": 0}.get(k[0], 1), k[1], k[2]))
        ext = [float(ds["kx"].min()), float(ds["kx"].max()), float(ds["ky"].min()), float(ds["ky"].max())]
        written.append(overview_figure((sc.values(ds, "image", pick[k]) for k in keys),
                                       [f"{k[0]} U={k[1]:.2f} eV ν={k[2]:+g}" for k in keys], ext, cmap,
                                       "FT-LDOS (kx, ky in Å⁻¹), bias ≈ 0, variation 0; colours clipped to the "
                                       "1st–99.5th percentile", out / "overview.png"))
    return written
