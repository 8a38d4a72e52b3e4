"""Never trust stored states blindly: recompute a stored point from scratch and compare.

A ladder rung kept from a cold candidate is re-solved from the cold candidates; one carried in by a
sweep is re-solved from the stored state of the rung it came from (``from_U``); a point off the ladder
from its two ladder neighbours and the cold candidates. The recomputed state must have the same
branch, its energy must agree to :data:`ENERGY_TOL` and its per-atom LDOS (per spin) to
:data:`LDOS_RTOL` relative to the largest stored value. The recomputation runs with the BLAS thread count
the state was found with (recorded per point): near a crossing of mean-field states the summation order
decides whether a carried start converges.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from moireu.config import MoireuConfig
from moireu.data.ladder import solve_point
from moireu.data.schema import NEIGHBOURS, SWEEPS
from moireu.data.states import States
from moireu.errors import InputError

__all__ = ["ENERGY_TOL", "LDOS_RTOL", "recompute_point"]

#: agreement of a recomputed state with the stored one: total energy (eV per cell) ...
ENERGY_TOL = 1e-6
#: ... and per-atom LDOS, max ``|Δ|`` / max ``|LDOS|``
LDOS_RTOL = 1e-6


def recompute_point(cfg: MoireuConfig, st: States, U: float, filling: float = 0.0) -> dict[str, Any]:
    """Recompute the stored point at (U, ν) (module docstring) and return the comparison."""
    p = st.get(U, filling)
    if p is None:
        raise InputError(f"no stored state at U = {U:g} eV, ν = {filling:g} (stored: "
                         f"{[q.U for q in st.points()]})")
    # the BLAS thread count the state was found with (every stored state before this field: one thread per worker)
    with threadpool_limits(limits=int(p.record.get("blas_threads", 1)), user_api="blas"):
        return _recompute(cfg, st, p, filling)


def _recompute(cfg: MoireuConfig, st: States, p: Any, filling: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    if p.branch in SWEEPS.values():
        src = float(p.scalars["from_U"])
        how = f"from the stored state at U = {src:g} ({p.branch})"
        out = solve_point(cfg, p.U, filling, starts=((p.branch, st.result(src, filling)),))
    elif p.kind == "extra":
        below, above = st.neighbours(p.U, filling)
        starts = tuple((NEIGHBOURS[s], st.result(q.U, filling)) for s, q in (("below", below), ("above", above)) if q)
        how = "from its ladder neighbours and the cold candidates"
        out = solve_point(cfg, p.U, filling, candidates=cfg.states.candidates, starts=starts)
    else:
        how = f"cold candidates {', '.join(cfg.states.candidates)}"
        out = solve_point(cfg, p.U, filling, candidates=cfg.states.candidates)
    new = out["point"]
    rep: dict[str, Any] = {"U": p.U, "filling": filling, "how": how, "stored_branch": p.branch,
                           "seconds": time.perf_counter() - t0}
    if new is None:
        return rep | {"ok": False, "why": "no start converged", "branch": None, "energy_diff_eV": math.inf,
                      "ldos_rel_diff": math.inf}
    de = abs(new.total_energy - p.total_energy)
    scale = float(np.abs(p.ldos).max()) or 1.0
    dl = float(np.abs(new.ldos.astype(np.float64) - p.ldos.astype(np.float64)).max()) / scale
    why = [w for w, bad in ((f"branch {new.branch} ≠ stored {p.branch}", new.branch != p.branch),
                            (f"|ΔE| = {de:.2e} eV > {ENERGY_TOL:g}", de > ENERGY_TOL),
                            (f"LDOS relative difference {dl:.2e} > {LDOS_RTOL:g}", dl > LDOS_RTOL)) if bad]
    return rep | {"ok": not why, "why": "; ".join(why), "branch": new.branch, "energy_diff_eV": de,
                  "ldos_rel_diff": dl, "energy_eV": new.total_energy, "stored_energy_eV": p.total_energy}
