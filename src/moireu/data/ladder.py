"""The ground state on a canonical U ladder, built on dask and kept in a states file.

Self-consistent Hartree–Fock finds the stationary point in whose basin its start lies; where mean-field
states coexist, which state a solve ends in depends on the start. The rule here makes the state at a
U a function of U alone, and the lowest any start reached:

1. **Cold rungs.** Every rung of ``states.ladder`` is solved from the cold candidates
   (``states.candidates``, :func:`moireu.hf.ground.ground_state`); the lowest converged solution is kept.
   The rungs are independent: on a cluster they all run at once (coarse rungs first — the 0.5 eV grid
   before the 0.25 eV midpoints — so a partial file holds the coarse grid).
2. **Sweeps.** The rungs are swept up and down the ladder: rung k is re-solved from the current state of
   rung k − 1 (up) or k + 1 (down) and keeps the carried state when it is lower by more than
   :data:`moireu.hf.ground.SAME_STATE_E`. A step is skipped when its rung was already tried from that
   very neighbour state (each point records the state ids it was tried from), so a pass repeats no solve
   and the search ends when a pass has no step left: then every rung is stable against its neighbours'
   states — a second full sweep changes nothing (a solve from the same start is deterministic).
3. **Off the ladder** (a held-out, blind or requested U): solved from the states of its two ladder
   neighbours and from the cold candidates, lowest kept (:func:`solve_point`). Such ``extra`` points
   record the neighbour state ids they used and are re-solved when those change.
4. **Back onto the ladder.** Every rung is re-solved from the states of the nearest off-ladder points
   beside it: an SCF that stalls across a full ladder step can converge across a shorter one (measured on
   the demo ladder: the ferromagnetic state of U = 1.75 eV does not converge at U = 2.0 eV, that of the
   off-ladder U = 1.875 eV does, 3.6 meV per cell below the stored rung). A lowered rung makes the sweeps and
   the off-ladder points run again, until nothing changes. The states file is the preset's, so the ladder's
   states depend on the preset's off-ladder points, never on a store's.

Every finished solve is written to the states file at once (atomically, the whole file), so an
interrupted build resumes rung by rung and sweep step by sweep step. Progress: one line per finished
solve, and from inside each solve a line with the iteration and residual at least every
``progress_every`` seconds (worker output reaches the terminal and the log alike).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.config import MoireuConfig
from moireu.data.schema import NEIGHBOURS, SWEEPS, U_DECIMALS
from moireu.data.states import Point, States, geometry_of, needed_biases
from moireu.errors import InputError
from moireu.hf.ground import is_lower, lower_bound, select

__all__ = ["LadderReport", "blas_threads", "build_states", "solve_point"]

#: seconds between in-solve progress lines
PROGRESS_EVERY = 30.0


# ------------------------------------------------------------------------------------------------
# the solve of one point (runs on a worker)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _SolveProgress:
    """An ``HFSystem.solve`` progress callback that prints iteration and residual every ``every`` seconds."""

    def __init__(self, label: str, every: float) -> None:
        self.label, self.every = label, every
        self.t0 = self.last = time.perf_counter()

    def __call__(self, d: dict) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            _say(f"  [{self.label}] iteration {d['iteration']}, residual {d['residual']:.2e}, "
                 f"max moment {d['max_moment']:.3f}, {now - self.t0:.0f} s")


_SYSTEMS: dict[str, Any] = {}


def _system(cfg: MoireuConfig) -> Any:
    """The HF system of ``cfg``, built once per process."""
    from moireu.hf.driver import system_from_config

    key = cfg.fingerprint("lattice", "hf")
    if key not in _SYSTEMS:
        _SYSTEMS[key] = system_from_config(cfg)
    return _SYSTEMS[key]


def _anchor(cfg: MoireuConfig, filling: float, every: float) -> Any:
    """The spin-averaged U = 0 solution (start of the ``nonmagnetic`` candidate), once per process."""
    from moireu.hf.driver import solve_kwargs
    from moireu.hf.ground import nonmagnetic_anchor

    key = f"{cfg.fingerprint('lattice', 'hf')}/{filling}/anchor"
    if key not in _SYSTEMS:
        kw = solve_kwargs(cfg, filling=filling, progress=_SolveProgress(f"ν = {filling:g}, U = 0 anchor", every))
        _SYSTEMS[key] = nonmagnetic_anchor(_system(cfg).solve, **kw)
    return _SYSTEMS[key]


def _label(kw: dict[str, Any], init: str) -> str:
    if kw.get("warm_start") is not None:
        return "nonmagnetic" if kw.get("init") == "paramagnetic" else "warm"
    return {init: "seed", "paramagnetic": "reference", "ferro": "ferro"}.get(kw.get("init", init), "seed")


def solve_point(cfg: MoireuConfig, U: float, filling: float, *, candidates: Sequence[str] = (),
                starts: Sequence[tuple[str, Any]] = (), ldos_below: float = math.inf,
                progress_every: float = PROGRESS_EVERY) -> dict[str, Any]:
    """Solve (U, ν) from the cold ``candidates`` and from each ``(branch, HFResult)`` of ``starts``; keep the lowest.

    The LDOS per spin at :func:`moireu.data.states.needed_biases` is computed for the kept state when its
    energy is below ``ldos_below`` (a sweep step passes the target rung's own energy: a carried state that
    is not lower is not stored, so its LDOS is not needed).

    Returns
    -------
    dict
        ``point`` (:class:`moireu.data.states.Point`, or None when nothing converged or ``ldos_below``
        was not beaten), ``energy`` (eV per cell of the best converged solution, +inf when none),
        ``candidates`` (per start: converged, iterations, total_energy, max_moment, seconds) and ``seconds``.
    """
    from moireu.hf.driver import solve_kwargs
    from moireu.hf.ground import ground_state
    from moireu.stm import ldos_at

    t0 = time.perf_counter()
    system = _system(cfg)
    where = f"ν = {filling:g}, U = {U:g}"
    found: dict[str, Any] = {}
    base = solve_kwargs(cfg, U=U, filling=filling)
    init = base["init"]
    if candidates:
        anchor = _anchor(cfg, filling, progress_every) if "nonmagnetic" in candidates else None

        def solve(**kw: Any) -> Any:
            lab = _label(kw, init)
            r = system.solve(**(kw | {"progress": _SolveProgress(f"{where} {lab}", progress_every)}))
            found[lab] = r
            return r

        ground_state(solve, candidates=list(candidates), nonmagnetic_start=anchor, **base)
    for branch, start in starts:
        found[branch] = system.solve(**(base | {"progress": _SolveProgress(f"{where} {branch}", progress_every)}),
                                     warm_start=start)
    cands = {k: {"converged": bool(r.converged), "iterations": int(r.iterations), "total_energy": float(r.total_energy),
                 "max_moment": float(r.max_moment), "seconds": float(r.seconds)} for k, r in found.items()}
    out: dict[str, Any] = {"point": None, "energy": math.inf, "candidates": cands}
    branch, margin = select(found)  # the rule of moireu.hf.ground
    if branch is not None:
        best = found[branch]
        out["energy"] = float(best.total_energy)
        if best.total_energy < ldos_below:
            st = cfg.stm
            ldos = np.asarray(ldos_at(system, best, biases=needed_biases(cfg), eta=st.eta, kind=st.broadening,
                                      kmesh=st.kmesh, per_spin=True))
            out["point"] = point_of(best, branch, ldos, margin)
    out["seconds"] = time.perf_counter() - t0
    return out


def point_of(res: Any, branch: str, ldos: np.ndarray, margin: float, kind: str = "ladder") -> Point:
    """A :class:`~moireu.data.states.Point` of an HFResult (restart data float32, LDOS per spin)."""
    from moireu.provenance import provenance

    s = res.summary()
    scalars = {"U": float(res.U), "filling": float(res.filling), "kT": float(res.kT),
               "total_energy": float(res.total_energy), "energy_margin": float(margin),
               "fermi_level": float(res.fermi_level), "homo": float(s["homo_eV"]), "lumo": float(s["lumo_eV"]),
               "gap": float(res.gap), "max_moment": float(res.max_moment), "staggered_moment": float(res.staggered_moment),
               "total_moment": float(res.total_moment), "charge_spread": float(res.charge_spread),
               "residual": float(s["residual"]), "from_U": math.nan, "seconds": float(res.seconds),
               "iterations": float(res.iterations)}
    prov = provenance()
    return Point(kind=kind, U=res.U, filling=res.filling, branch=branch, occupations=res.occupations,
                 pair_density=res.pair_density, ldos=ldos, scalars=scalars,
                 record={"converged": bool(res.converged), "git_commit": prov["git_commit"],
                         "created": prov["created"], "host": prov["host"], "blas_threads": blas_threads()})


def blas_threads() -> int:
    """BLAS threads of this process: the floating-point summation order of the eigensolves depends on it, and
    near a crossing of mean-field states it decides whether an SCF converges (:mod:`moireu.data.verify`
    recomputes a state with the count it was found with)."""
    from threadpoolctl import threadpool_info

    n = [int(i.get("num_threads", 1)) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(n) if n else 1


def _task(cfg: MoireuConfig, U: float, filling: float, candidates: Sequence[str], starts: Sequence[tuple[str, Any]],
          ldos_below: float, progress_every: float) -> dict[str, Any]:
    """:func:`solve_point` on a worker, under a local dask scheduler for its file I/O; never raises."""
    import dask

    c0 = time.process_time()
    try:
        with dask.config.set(scheduler="synchronous"):
            out = solve_point(cfg, U, filling, candidates=candidates, starts=starts, ldos_below=ldos_below,
                              progress_every=progress_every)
    except Exception as exc:  # noqa: BLE001 - reported by the client, the point stays unsolved
        return {"point": None, "energy": math.inf, "candidates": {}, "error": f"{type(exc).__name__}: {exc}",
                "seconds": 0.0, "cpu_seconds": time.process_time() - c0}
    return out | {"cpu_seconds": time.process_time() - c0}


# ------------------------------------------------------------------------------------------------
# the build (client side)


class LadderReport:
    """Counts and costs of a ladder build (``to_dict`` for ``--json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cold_run = self.sweep_steps = self.sweep_lowered = self.extras_run = 0
        self.failed: list[str] = []
        self.passes = 0
        self.converged = False
        self.seconds = 0.0
        self.cpu: dict[str, float] = {"cold": 0.0, "sweep": 0.0, "extra": 0.0}

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "cold_solved": self.cold_run, "sweep_steps": self.sweep_steps,
                "sweep_lowered": self.sweep_lowered, "extras_solved": self.extras_run, "sweep_passes": self.passes,
                "sweeps_converged": self.converged, "failed": self.failed, "seconds": round(self.seconds, 1),
                "cpu_seconds": {k: round(v, 1) for k, v in self.cpu.items()}}


def _order(ladder: Sequence[float]) -> list[float]:
    """Rungs coarse first: multiples of 1 eV, then of 0.5 eV, then the rest (each by U)."""
    def level(u: float) -> int:
        return 0 if abs(u - round(u)) < 1e-9 else 1 if abs(2 * u - round(2 * u)) < 1e-9 else 2
    return sorted(ladder, key=lambda u: (level(u), u))


def open_states(cfg: MoireuConfig, path: Path, recompute: bool = False) -> States:
    """The states file at ``path`` to continue (verified, same fingerprint), or new empty states.

    A file of another configuration is refused with the keys that differ, unless ``recompute`` (then it
    is replaced once the first new point is written).
    """
    if path.exists() and not recompute:
        st = States.load(path)
        diff = st.differences(cfg)
        if diff:
            raise InputError(f"{str(path)!r} holds the states of another configuration ({'; '.join(diff)}); "
                             "choose another --out, or pass --recompute to replace it")
        return st
    system = _system(cfg)
    st = States.new(cfg, geometry_of(system.model), system.fingerprint)
    st.path = path
    return st


def build_states(cfg: MoireuConfig, out: str | Path, *, scheduler: str | None = None, workers: int = 0,
                 extras: Sequence[float] = (), recompute: bool = False, sweeps: bool = True,
                 max_points: int | None = None, progress: bool = True,
                 progress_every: float = PROGRESS_EVERY, processes: bool = True, resweep: bool = False) -> LadderReport:
    """Find (or continue finding) the ground states of ``cfg`` on its ladder and at ``extras``; write ``out``.

    Parameters
    ----------
    cfg : resolved configuration (``states`` section: ladder, candidates, passes)
    out : the states file (created, or continued when it holds the states of ``cfg``)
    scheduler, workers : a dask scheduler address, else a LocalCluster of ``workers`` (0: one per core)
    extras : U values off the ladder (eV) to solve from their ladder neighbours and the cold candidates
    recompute : replace a file of ``cfg`` (or of another configuration) instead of continuing it
    sweeps : run the sweeps (off: cold rungs only, e.g. to get a coarse grid first)
    max_points : stop after this many new cold rungs (a partial file; a rerun continues)
    processes : LocalCluster workers as processes (default) or threads of this process
    resweep : forget which neighbour states every rung was tried from, so that a full pass re-solves each rung
        from its neighbours' *stored* states (a check of the stopping rule: an SCF that stalls near a
        crossing of states can converge from the stored start where it did not from the one in memory);
        the passes then go on until no step is left, as always
    """
    from moireu.data.cluster import dask_client

    path = Path(out)
    t0 = time.perf_counter()
    st = open_states(cfg, path, recompute)
    rep = LadderReport(path)
    say = _say if progress else (lambda m: None)
    ladder = list(cfg.states.ladder)
    off = sorted({round(float(u), U_DECIMALS) for u in extras} - {round(u, U_DECIMALS) for u in ladder})
    if any(u < 0 for u in off):
        raise InputError(f"extra U must be ≥ 0 eV, got {min(off)}")
    with dask_client(scheduler, workers, processes, say=say) as client:
        for nu in cfg.states.fillings:
            _cold(client, cfg, st, float(nu), ladder, rep, say, max_points, progress_every)
            if resweep and sweeps and not st.rungs_missing(nu):
                _forget_tried(st, float(nu))
            while True:
                if sweeps and not st.rungs_missing(nu):
                    rep.converged = False
                    _sweeps(client, cfg, st, float(nu), rep, say, progress_every)
                if off and not st.rungs_missing(nu) and (rep.converged or not sweeps):
                    _extras(client, cfg, st, float(nu), off, rep, say, progress_every)
                # step 4: a lower state found from an off-ladder point's start goes back onto the ladder
                if not (sweeps and rep.converged) or not _off_ladder_starts(client, cfg, st, float(nu), rep, say,
                                                                            progress_every):
                    break
    rep.seconds = time.perf_counter() - t0
    return rep


def _save(st: States, what: str) -> None:
    from moireu.provenance import provenance

    prov = provenance()
    hist = list(st.attrs.get("history", []))
    if not hist or hist[-1].get("git_commit") != prov["git_commit"]:
        hist.append({"git_commit": prov["git_commit"], "created": prov["created"], "host": prov["host"], "events": 0})
    hist[-1] = hist[-1] | {"events": int(hist[-1].get("events", 0)) + 1, "last": what, "updated": prov["created"]}
    st.attrs["history"] = hist
    st.save()


def _cost(rec: dict[str, Any], kind: str, seconds: float, cpu: float) -> dict[str, Any]:
    cost = dict(rec.get("cost") or {})
    cost[f"{kind}_seconds"] = round(float(cost.get(f"{kind}_seconds", 0.0)) + seconds, 2)
    cost[f"{kind}_cpu_seconds"] = round(float(cost.get(f"{kind}_cpu_seconds", 0.0)) + cpu, 2)
    return cost


def _cold(client: Any, cfg: MoireuConfig, st: States, nu: float, ladder: list[float], rep: LadderReport,
          say: Any, max_points: int | None, every: float) -> None:
    from dask.distributed import as_completed

    todo = [u for u in _order(ladder) if st.get(u, nu) is None]
    if max_points is not None:
        todo = todo[:max(0, max_points)]
    if not todo:
        return
    say(f"states: {len(todo)} cold rung(s) at ν = {nu:g} from {', '.join(cfg.states.candidates)} "
        f"({len(ladder) - len(st.rungs_missing(nu))} of {len(ladder)} done) → {st.path}")
    futs = {client.submit(_task, cfg, u, nu, cfg.states.candidates, (), math.inf, every, pure=False,
                          priority=-i, key=f"states-cold-{u}-{nu}-{time.time_ns():x}"): u for i, u in enumerate(todo)}
    for f in as_completed(list(futs)):
        u = futs[f]
        r = f.result()
        rep.cpu["cold"] += r.get("cpu_seconds", 0.0)
        p: Point | None = r["point"]
        if p is None:
            rep.failed.append(f"cold U = {u:g}: {r.get('error') or 'no candidate converged'}")
            say(f"states: cold U = {u:g} FAILED ({r.get('error') or 'no candidate converged'})")
            continue
        p.record |= {"candidates": r["candidates"], "cost": _cost({}, "cold", r["seconds"], r.get("cpu_seconds", 0.0))}
        st.put(p)
        st.attrs["sweeps"] = {"converged": False, "passes": int(st.attrs.get("sweeps", {}).get("passes", 0))}
        _save(st, f"cold U = {u:g}")
        rep.cold_run += 1
        m = p.scalars["energy_margin"]
        say(f"states: rung U = {u:g} done — {p.branch}, max moment {p.scalars['max_moment']:.3f}"
            + (f", next state +{1e3 * m:.1f} meV" if math.isfinite(m) else "")
            + f" ({r['seconds']:.0f} s; {len(ladder) - len(st.rungs_missing(nu))}/{len(ladder)} rungs)")


def _forget_tried(st: States, nu: float) -> None:
    """Mark every rung of ``nu`` as tried from no neighbour or off-ladder state (the next pass runs every step)."""
    for p in st.points("ladder"):
        if p.filling == nu:
            p.tried_below = p.tried_above = ""
            p.record = {k: v for k, v in p.record.items() if k != "tried_off_ladder"}
            st.put(p)
    st.attrs["sweeps"] = dict(st.attrs.get("sweeps") or {}) | {"converged": False}


def _sweeps(client: Any, cfg: MoireuConfig, st: States, nu: float, rep: LadderReport, say: Any, every: float) -> None:
    """Sweep passes (up and down side by side) until no step is left (module docstring, step 2)."""
    passes = int(st.attrs.get("sweeps", {}).get("passes", 0))
    for _ in range(cfg.states.max_passes):
        rungs = [p.U for p in st.points("ladder") if p.filling == nu]
        n = len(rungs)
        up, down = 1, n - 2
        steps = lowered = 0
        while up < n or down >= 0:
            jobs = []
            for direction in ("up", "down"):
                k = up if direction == "up" else down
                if not 0 <= k < n or (direction == "up" and up >= n) or (direction == "down" and down < 0):
                    continue
                src = st.get(rungs[k - 1 if direction == "up" else k + 1], nu)
                tgt = st.get(rungs[k], nu)
                tried = tgt.tried_below if direction == "up" else tgt.tried_above
                if tried != src.state_id:
                    jobs.append((direction, src, tgt, client.submit(
                        _task, cfg, tgt.U, nu, (), ((SWEEPS[direction], st.result(src.U, nu)),),
                        lower_bound(tgt.total_energy), every, pure=False,
                        key=f"states-sweep-{direction}-{tgt.U}-{time.time_ns():x}")))
            up, down = up + 1, down - 1
            for direction, src, tgt, fut in jobs:
                r = fut.result()
                steps += 1
                cur, msg, low = _settle(st, tgt.U, nu, src, r, rep)
                lowered += low
                if direction == "up":
                    cur.tried_below = src.state_id
                else:
                    cur.tried_above = src.state_id
                st.put(cur)
                _save(st, f"sweep {direction} U = {tgt.U:g}")
                say(f"states: sweep {direction} pass {passes + 1}, U = {tgt.U:g}: {msg} ({r['seconds']:.0f} s)")
        passes += 1
        rep.passes += 1
        done = steps == 0
        st.attrs["sweeps"] = {"converged": done, "passes": passes}
        _save(st, f"sweep pass {passes}")
        say(f"states: sweep pass {passes}: {steps} step(s), {lowered} rung(s) lowered"
            + (" — converged: no rung changes under a further sweep" if done else ""))
        if done:
            rep.converged = True
            return


def _settle(st: States, U: float, nu: float, src: Point, r: dict[str, Any], rep: LadderReport) -> tuple[Point, str, int]:
    """The point at ``U`` after a solve from ``src``'s state (result ``r`` of :func:`solve_point`).

    The carried state replaces the stored one when it is lower (:func:`moireu.hf.ground.is_lower`); else the
    stored one stays, its energy margin tightened when the carried solve converged to another, higher state.
    Returns the point (not yet put), a log message and 1 if the point was lowered, else 0.
    """
    rep.sweep_steps += 1
    rep.cpu["sweep"] += r.get("cpu_seconds", 0.0)
    cur = st.get(U, nu)  # another step may have replaced it meanwhile
    new: Point | None = r["point"]
    carried = r["energy"]
    if new is not None and is_lower(new.total_energy, cur.total_energy):
        new.kind = cur.kind
        new.scalars["from_U"] = src.U
        new.scalars["energy_margin"] = cur.total_energy - new.total_energy
        new.record |= {"candidates": cur.record.get("candidates", {}) | r["candidates"],
                       "cost": _cost(cur.record, "sweep", r["seconds"], r.get("cpu_seconds", 0.0)),
                       "replaced": cur.branch}
        new.record |= {k: cur.record[k] for k in ("tried_off_ladder",) if k in cur.record}
        new.tried_below, new.tried_above = cur.tried_below, cur.tried_above
        rep.sweep_lowered += 1
        return new, f"lower state carried in from U = {src.U:g} ({1e3 * -new.scalars['energy_margin']:+.2f} meV)", 1
    cur.record = cur.record | {"cost": _cost(cur.record, "sweep", r["seconds"], r.get("cpu_seconds", 0.0))}
    if math.isfinite(carried) and is_lower(cur.total_energy, carried):  # another, higher state
        m = cur.scalars["energy_margin"]
        cur.scalars["energy_margin"] = min(m, carried - cur.total_energy) if math.isfinite(m) else carried - cur.total_energy
    return cur, ("own state kept" + (f" (carried {1e3 * (carried - cur.total_energy):+.2f} meV)"
                                     if math.isfinite(carried) else " (carried start did not converge)")), 0


def _off_ladder_starts(client: Any, cfg: MoireuConfig, st: States, nu: float, rep: LadderReport, say: Any,
                       every: float) -> int:
    """Re-solve every rung from the states of the nearest off-ladder points beside it (module docstring, step 4).

    Such a point lies closer to the rung than its ladder neighbours, and an SCF that stalls across a full
    ladder step can converge across the shorter one. A rung records the state ids it was tried from
    (``record["tried_off_ladder"]``), so a rerun repeats no solve. Returns the number of rungs lowered (the
    caller then sweeps again and re-solves the off-ladder points whose neighbours changed).
    """
    rungs = sorted((p for p in st.points("ladder") if p.filling == nu), key=lambda p: p.U)
    off = sorted((p for p in st.points("extra") if p.filling == nu), key=lambda p: p.U)
    jobs = []
    for k, rung in enumerate(rungs):
        lo = rungs[k - 1].U if k else -math.inf
        hi = rungs[k + 1].U if k + 1 < len(rungs) else math.inf
        below = [p for p in off if lo < p.U < rung.U]
        above = [p for p in off if rung.U < p.U < hi]
        tried = set(rung.record.get("tried_off_ladder", []))
        for direction, src in (("up", below[-1] if below else None), ("down", above[0] if above else None)):
            if src is not None and src.state_id not in tried:
                jobs.append((direction, src, rung, client.submit(
                    _task, cfg, rung.U, nu, (), ((SWEEPS[direction], st.result(src.U, nu)),),
                    lower_bound(rung.total_energy), every, pure=False,
                    key=f"states-offladder-{direction}-{rung.U}-{time.time_ns():x}")))
    if jobs:
        say(f"states: {len(jobs)} rung solve(s) from the off-ladder points beside them at ν = {nu:g}")
    lowered = 0
    for _direction, src, rung, fut in jobs:
        r = fut.result()
        cur, msg, low = _settle(st, rung.U, nu, src, r, rep)
        lowered += low
        cur.record = cur.record | {"tried_off_ladder": sorted(set(cur.record.get("tried_off_ladder", [])) | {src.state_id})}
        st.put(cur)
        if low:
            st.attrs["sweeps"] = dict(st.attrs.get("sweeps") or {}) | {"converged": False}
        _save(st, f"rung U = {rung.U:g} from off-ladder U = {src.U:g}")
        say(f"states: rung U = {rung.U:g} from off-ladder U = {src.U:g}: {msg} ({r['seconds']:.0f} s)")
    return lowered


def _extras(client: Any, cfg: MoireuConfig, st: States, nu: float, off: list[float], rep: LadderReport,
            say: Any, every: float) -> None:
    """Solve the off-ladder points whose neighbours' states changed (or that are new)."""
    from dask.distributed import as_completed

    futs = {}
    for u in off:
        below, above = st.neighbours(u, nu)
        ids = (below.state_id if below else "", above.state_id if above else "")
        have = st.get(u, nu)
        if have is not None and have.kind == "extra" and (have.tried_below, have.tried_above) == ids:
            continue
        starts = tuple((NEIGHBOURS[side], st.result(p.U, nu)) for side, p in (("below", below), ("above", above))
                       if p is not None)
        f = client.submit(_task, cfg, u, nu, cfg.states.candidates, starts, math.inf, every, pure=False,
                          key=f"states-extra-{u}-{nu}-{time.time_ns():x}")
        futs[f] = (u, ids)
    if futs:
        say(f"states: {len(futs)} point(s) off the ladder at ν = {nu:g}")
    for f in as_completed(list(futs)):
        u, ids = futs[f]
        r = f.result()
        rep.cpu["extra"] += r.get("cpu_seconds", 0.0)
        p = r["point"]
        if p is None:
            rep.failed.append(f"extra U = {u:g}: {r.get('error') or 'no start converged'}")
            continue
        p.kind = "extra"
        p.tried_below, p.tried_above = ids
        p.record |= {"candidates": r["candidates"], "cost": _cost({}, "extra", r["seconds"], r.get("cpu_seconds", 0.0))}
        st.put(p)
        _save(st, f"extra U = {u:g}")
        rep.extras_run += 1
        say(f"states: U = {u:g} (off the ladder) — {p.branch}, max moment {p.scalars['max_moment']:.3f} "
            f"({r['seconds']:.0f} s)")

