"""The end of a dataset build: the sweeps' states settled point by point, then everything committed to the
work directory consolidated into ONE Zarr store (written to a temporary sibling, read back, verified,
renamed into place)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.config import MoireuConfig
from moireu.data import schema as sc
from moireu.data import store as st
from moireu.data.jobs import point_info
from moireu.data.plan import Plan, SolvePoint
from moireu.data.tasks import SUMMARY_KEYS, replace_path
from moireu.data.workdir import WorkDir
from moireu.hf.ground import is_lower
from moireu.provenance import provenance

__all__ = ["settle", "consolidate", "own_energy"]


def own_energy(wd: WorkDir, p: SolvePoint) -> float:
    """The total energy (eV per cell) of the state ``p``'s own solve committed; NaN when it did not converge."""
    rec = wd.solve_record(p)
    return float(rec["total_energy"]) if rec and rec.get("converged") else math.nan


def settle(wd: WorkDir, points: Sequence[SolvePoint]) -> int:
    """Give each point the lowest converged state among its own and the two sweeps' (ties: its own);
    its record gets ``swept`` (the states' energies) and, when a sweep's state won, that state's
    summary, ``branch`` = the sweep and ``energy_margin`` to the next distinct state. Returns how many
    points took a sweep's state. States within :data:`moireu.hf.ground.SAME_STATE_E` of each other are
    one state (:func:`moireu.hf.ground.is_lower`). Idempotent: a settled record is left alone."""
    lowered = 0
    for p in points:
        rec = wd.solve_record(p)
        if rec is not None and "swept" in rec:
            continue
        own_ok = bool(rec and rec.get("converged") and wd.result_path(p).exists())
        states = {"own": float(rec["total_energy"]) if own_ok else math.inf}
        steps = {d: r for d in sc.SWEEPS if (r := wd.sweep_record(p, d)) is not None}  # read once
        tried = [float(r["carried_energy"]) for r in steps.values() if r.get("carried_converged")]
        states |= {d: float(r["total_energy"]) for d, r in steps.items()
                   if r.get("source") == "carried" and wd.sweep_result_path(p, d).exists()}
        if rec is None and len(states) == 1:
            continue  # failed solve, nothing carried in: stays a failure
        best = min(states, key=lambda k: (states[k], k != "own"))
        if not is_lower(states[best], states["own"]):
            best = "own"  # the same state (or a round-off tie)
        e_best = states[best]
        swept = {k: v for k, v in states.items() if math.isfinite(v)}
        if best == "own":
            new = dict(rec) | {"swept": swept}
        else:
            sr = steps[best]
            tmp = wd.result_path(p).with_name(f".{wd.result_path(p).name}.settle")
            shutil.copyfile(wd.sweep_result_path(p, best), tmp)
            replace_path(tmp, wd.result_path(p))
            others = [e - e_best for e in [*tried, *states.values()]
                      if math.isfinite(e) and is_lower(e_best, e)]
            new = (dict(rec or point_info(p)) | {k: sr[k] for k in SUMMARY_KEYS if k in sr}
                   | {"status": "ok", "branch": sc.BRANCH_CODES[sc.SWEEPS[best]],
                      "energy_margin": min(others, default=math.nan), "swept": swept, "from_U": sr["from_U"]})
            lowered += 1
        wd.commit_solve(p, new)
    return lowered


def consolidate(cfg: MoireuConfig, plan: Plan, wd: WorkDir, old: Any, out: Path,
                 report: Any, states_used: dict[str, Any] | None = None) -> int:
    """Write the store from the existing store + the work dir parts; fill failures into ``report``
    (a :class:`moireu.data.build.BuildReport`).

    Returns the number of samples in the store (0, and nothing written, when no point has images).
    """
    parts = []
    transform: dict[str, Any] | None = None
    rendering: dict[str, Any] = {}
    kx = ky = None
    ldos: dict[tuple[str, float, float], np.ndarray] = {}
    levels: np.ndarray | None = None
    geometry: dict[str, np.ndarray] = {}
    points = set(plan.points)
    for p in wd.committed_points() if wd.root.is_dir() else []:
        part = wd.load_images(p)
        rec = wd.solve_record(p)
        if part is None or rec is None:
            continue
        if kx is None:
            kx, ky, transform, rendering = part["kx"], part["ky"], part["transform"], part["rendering"]
        elif part["kx"].shape != kx.shape or not np.allclose(part["kx"], kx) or not np.allclose(part["ky"], ky):
            raise RuntimeError(f"images of {p.key} are on another k grid than the others")
        if "ldos" in part:
            ldos[sc.point_key(p.split, p.U, p.filling)] = part["ldos"]
            levels, geometry = part["bias_level"], part["geometry"]
        parts.append((p, rec, part))
        points.add(p)
    new_keys = {sc.point_key(p.split, p.U, p.filling) for p, _, _ in parts}
    cols = st.samples_from_parts(parts)
    history: list[dict[str, Any]] = []
    if old is not None:
        keys = zip(old["split"].values.tolist(), old["U"].values.tolist(), old["filling"].values.tolist())
        keep = np.array([sc.point_key(s, u, f) not in new_keys for s, u, f in keys], bool)
        if keep.any():
            cols = st.concat_columns(st.columns_from_store(old, keep), cols)
        old_kx, old_ky = sc.values(old, "kx"), sc.values(old, "ky")
        if kx is not None and (old_kx.shape != kx.shape or not np.allclose(old_kx, kx)
                               or not np.allclose(old_ky, ky)):
            raise RuntimeError("new images are on another k grid than the existing store's")
        kx, ky = old_kx, old_ky
        if transform is not None and transform != st.json_attr(old, "image_transform", transform):
            raise RuntimeError("new images were made with another image transform than the existing store's")
        transform = st.json_attr(old, "image_transform", transform)
        rendering = st.json_attr(old, "rendering", rendering)
        history = st.json_attr(old, "history", [])
        old_ldos, old_levels, old_geom = st.ldos_from_store(old)
        ldos = old_ldos | ldos
        levels = levels if levels is not None else old_levels
        geometry = geometry or old_geom
    # failures and unconverged points (from the work dir records)
    failures = wd.failures() if wd.root.is_dir() else []
    report.failures = failures
    records = [wd.solve_record(p) for p in sorted(points)] if wd.root.is_dir() else []
    report.unconverged = [r for r in records if r is not None and r["status"] == "unconverged"]
    if not parts and old is not None and not failures:
        return int(old.sizes["sample"])  # nothing new: the store is already complete and current
    if kx is None or not len(cols.get("U", ())):
        return 0  # no point has images: nothing to publish (the report lists the failures)
    prov = provenance()
    history = history + [{"created": prov["created"], "git_commit": prov["git_commit"],
                          "fingerprint": cfg.fingerprint(), "new_points": len(parts),
                          "failures": len(failures)}]
    attrs = {"config": cfg.to_json(), "moireu_version": prov["moireu_version"], "git_commit": prov["git_commit"],
             "created": prov["created"], "image_transform": json.dumps(transform or {}, sort_keys=True),
             "rendering": json.dumps(rendering, sort_keys=True),
             "failures": json.dumps(failures), "history": json.dumps(history),
             "states": json.dumps(states_used or {}, sort_keys=True)}
    ds = st.dataset_from_columns(cols, kx, ky, attrs, ldos, levels, geometry)
    st.write_store(ds, out)
    return int(ds.sizes["sample"])
