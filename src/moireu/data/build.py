"""Build a dataset on dask.distributed: HF solves in warm-start chains, images per solved point.

Flow of :func:`build_dataset` (under the store's build lock, :func:`moireu.data.schema.store_lock`):

1. validate the output path against the config (:func:`moireu.data.store.check_existing`);
2. plan the points, image specs and warm-start chains (:func:`moireu.data.plan.make_plan`) — from
   the configuration only, so the data never depend on the cluster's shape;
3. skip every point whose solve/images are already committed (in the work directory of an
   interrupted run, or in the existing store), connect to the cluster, wait for a worker, submit
   the rest: ``solve(U_k)`` depends on ``solve(U_{k-1})`` of its chain, ``render(U_k)`` on
   ``solve(U_k)``; every task (:mod:`moireu.data.jobs`) commits its output atomically to the work directory
   (:mod:`moireu.data.workdir`), stamped with the build token and data fingerprint, and never raises;
   with ``dataset.sweep`` the renders wait: once every point is solved, each filling's points are
   swept up and down in U (:func:`moireu.data.jobs.sweep_task`, the two sweeps run side by side) and
   each point keeps the lowest of its own state and the states the sweeps carried in
   (:func:`moireu.data.consolidate.settle`), then renders;
4. a failed or unconverged solve is retried once with another mixer
   (:func:`moireu.data.tasks.retry_overrides`) — an I/O error (``OSError``: disk full, lost file
   system) is not a convergence problem and is reported as it is, without a retry; what still
   fails is reported, flagged in the store (``hf_converged = False``, or listed in
   ``attrs["failures"]`` when no result exists) and makes the build's :attr:`BuildReport.ok` false;
5. consolidate everything into ONE Zarr store (:func:`moireu.data.consolidate.consolidate`), written to a temporary sibling, read back and
   verified, then renamed into place; the work directory is removed once the store holds every
   planned point. Losing the scheduler (or Ctrl-C) stops the build before step 5: nothing is
   published, the committed points stay for the rerun.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


from moireu.config import MoireuConfig
from moireu.data import schema as sc
from moireu.data import store as st
from moireu.data.cluster import BuildError, check_scheduler_address, dask_client, n_workers_of
from moireu.data.consolidate import consolidate, own_energy, settle
from moireu.data.jobs import point_info, render_task, solve_task, sweep_task
from moireu.data.plan import (REFINE_KEYS, Plan, SolvePoint, build_chains, heldout_values, make_plan,
                              refinement_values)
from moireu.data.tasks import Backend, PhysicsBackend
from moireu.data.workdir import StaleTask, WorkDir, new_token, read_manifest, work_dir_for
from moireu.errors import InputError
from moireu.progress import BuildProgress

log = logging.getLogger(__name__)



# ------------------------------------------------------------------------------------------------
# cluster


def states_digest(cfg: MoireuConfig) -> str:
    """What a store of ``cfg`` renders from, as one 16-hex-digit hash.

    The shipped states file of the preset, when it is this configuration's: its fingerprint and the id
    of the stored state at every point of the plan (a point not stored counts as solved at build time).
    Otherwise ``"solved:"`` + the config fingerprint: every point is solved by Hartree–Fock. A result
    made from a store (a trained network, an evaluation) is stale when this digest changes, e.g. after
    a sweep of the ladder lowered a rung the store holds.
    """
    from moireu.data.states import States, shipped_states_path

    path = shipped_states_path(cfg.preset)
    if not path.is_file():
        return "solved:" + cfg.fingerprint()
    states = States.load(path)
    if states.differences(cfg):
        return "solved:" + cfg.fingerprint()
    ids = []
    for p in make_plan(cfg).points:
        q = states.get(p.U, p.filling)
        ids.append([p.split, p.U, p.filling, None if q is None else q.state_id])
    return hashlib.sha256(json.dumps([states.fingerprint, ids]).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# the build


@dataclass
class BuildReport:
    """What a build did (also stored in the store's ``history`` attribute)."""

    out: Path
    solves_total: int = 0
    solves_skipped: int = 0
    solves_run: int = 0
    solves_retried: int = 0
    images_total: int = 0
    images_skipped: int = 0
    images_run: int = 0
    unconverged: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0
    store_samples: int = 0
    cpu_solve: float = 0.0
    cpu_render: float = 0.0
    sweep_steps: int = 0
    sweep_lowered: int = 0

    @property
    def ok(self) -> bool:
        """True when every point converged and has its images."""
        return not self.unconverged and not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "ok": self.ok, "solves_total": self.solves_total,
                "solves_skipped": self.solves_skipped, "solves_run": self.solves_run,
                "solves_retried": self.solves_retried, "images_total": self.images_total,
                "images_skipped": self.images_skipped, "images_run": self.images_run,
                "unconverged": self.unconverged, "failures": self.failures, "workers": self.workers,
                "seconds": round(self.seconds, 3), "store_samples": self.store_samples,
                "cpu_seconds_solves": round(self.cpu_solve, 3), "cpu_seconds_render": round(self.cpu_render, 3),
                "sweep_steps": self.sweep_steps, "sweep_lowered": self.sweep_lowered,
                "solves_per_minute": round(60 * self.solves_run / self.seconds, 3) if self.seconds else None}

    def summary_lines(self) -> list[str]:
        lines = [f"dataset: {self.out}",
                 f"  solves : {self.solves_total} planned, {self.solves_run} run "
                 f"({self.solves_retried} retried), {self.solves_skipped} already done",
                 *([f"  sweeps : {self.sweep_steps} steps run, {self.sweep_lowered} points took a lower state "
                    "from a neighbouring U"] if self.sweep_steps else []),
                 f"  images : {self.images_total} planned, {self.images_run} rendered, "
                 f"{self.images_skipped} already done; store holds {self.store_samples} samples",
                 f"  workers: {self.workers}, time {self.seconds:.1f} s (worker CPU: solves "
                 f"{self.cpu_solve:.1f} s, images {self.cpu_render:.1f} s)"]
        for u in self.unconverged:
            lines.append(f"  UNCONVERGED {u['key']} after {len(u.get('attempts', []))} attempt(s) "
                         "(kept, flagged hf_converged=False)")
        for f in self.failures:
            lines.append(f"  FAILED {f['key']} ({f['stage']}): {f.get('error')}")
        if not self.store_samples:
            lines.append("  store  : not written (no point has images)")
        lines.append("  status : " + ("ok" if self.ok else
                                      f"{len(self.unconverged)} unconverged, {len(self.failures)} failed"))
        return lines


def build_dataset(cfg: MoireuConfig, out: str | os.PathLike, *, scheduler: str | None = None,
                  workers: int | None = None, append: bool = False, backend: Backend | None = None,
                  processes: bool = True, progress: bool = True, worker_timeout: float = 300.0,
                  states: str | os.PathLike | None = None, recompute: bool = False) -> BuildReport:
    """Build (or resume, or extend) the dataset store ``out`` for ``cfg``.

    Parameters
    ----------
    cfg : MoireuConfig
        Resolved configuration; ``dataset`` sets the U grid, held-out count and variations.
    out : path
        The Zarr store to write. A store of the same config is resumed/completed (a no-op when
        complete); of another config it is refused unless ``append`` and compatible.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); default: a LocalCluster.
    workers : int, optional
        LocalCluster size (default ``dataset.workers``, 0 = one per core).
    append : bool
        Allow adding U values/fillings/held-out values to a store built with another U grid.
    backend : Backend, optional
        Compute backend (default :class:`~moireu.data.tasks.PhysicsBackend`).
    processes : bool
        LocalCluster workers as processes (default) or threads.
    progress : bool
        Show a progress bar with counts and ETA on stderr.
    worker_timeout : float
        With ``scheduler``: seconds to wait for a first worker.
    states : path, optional
        A states file (:mod:`moireu.data.states`) to render from; default: the preset's shipped file
        when its fingerprint equals the configuration's (:func:`choose_backend`).
    recompute : bool
        Solve every point with Hartree–Fock even where states exist.

    Returns
    -------
    BuildReport
        Counts, failures and timing; ``report.ok`` is False if any point failed or did not converge.

    Raises
    ------
    InputError
        Bad input (config, paths, scheduler address); nothing was written.
    BuildError
        The work could not be finished (no workers, lost scheduler, the final write failed); nothing
        partial was published.
    """
    out = Path(out)
    n_req = cfg.dataset.workers if workers is None else workers
    if n_req < 0:
        raise InputError(f"--workers must be ≥ 0 (0 = one per core), got {n_req}")
    if scheduler:
        check_scheduler_address(scheduler)
    make_plan(cfg)  # validate the plan before touching anything
    states_used: dict[str, Any] = {}
    if backend is None:
        backend, states_used = choose_backend(cfg, states, recompute, _say if progress else None)
    with exclusive(out):
        return _build(cfg, out, scheduler=scheduler, workers=workers, append=append, backend=backend,
                      processes=processes, progress=progress, worker_timeout=worker_timeout,
                      states_used=states_used)


def choose_backend(cfg: MoireuConfig, states: str | os.PathLike | None, recompute: bool,
                   say: Any = None) -> tuple[Backend, dict[str, Any]]:
    """The backend of a build: the states file when it is this configuration's, else Hartree–Fock.

    ``states`` given: it must be readable, intact and of this configuration (else InputError naming the
    keys that differ). Not given: the preset's shipped file is used when its fingerprint equals the
    configuration's; when it differs, every point is solved and ``say`` is told which keys differ. A
    shipped file that is damaged or edited is refused (InputError; ``recompute`` bypasses it).
    Returns the backend and what is recorded in the store's ``states`` attribute.
    """
    from moireu.data.states import States, shipped_states_path
    from moireu.data.tasks import StatesBackend

    say = say or (lambda m: None)
    if recompute:
        say("dataset: --recompute: every point is solved with Hartree–Fock")
        return PhysicsBackend(), {"source": "solved", "why": "--recompute"}
    path = Path(states) if states is not None else shipped_states_path(cfg.preset)
    if states is None and not path.is_file():
        say(f"dataset: no shipped states for preset {cfg.preset!r}: every point is solved with Hartree–Fock")
        return PhysicsBackend(), {"source": "solved", "why": f"no states file for preset {cfg.preset!r}"}
    st = States.load(path)  # damaged or edited: InputError with the reason
    diff = st.differences(cfg)
    if diff and states is not None:
        st.check(cfg)
    if diff:
        say(f"dataset: the shipped states {str(path)!r} are of another configuration ({'; '.join(diff)}): "
            "every point is solved with Hartree–Fock")
        return PhysicsBackend(), {"source": "solved", "why": "; ".join(diff)}
    wanted = {float(u) for u in cfg.dataset.U_values} | {float(u) for u in heldout_values(cfg)}
    missing = sorted(u for u in wanted for nu in cfg.dataset.fillings if st.get(u, nu) is None)
    say(f"dataset: rendering from the states {str(path)!r} (fingerprint {st.fingerprint})"
        + (f"; {len(missing)} U not stored are solved from their ladder neighbours and the cold starts: "
           f"{', '.join(f'{u:g}' for u in missing[:12])}" if missing else ""))
    prov = st.attrs.get("provenance") or {}
    return StatesBackend(path), {"source": "states", "file": str(path), "fingerprint": st.fingerprint,
                                 "git_commit": prov.get("git_commit"), "created": prov.get("created"),
                                 "solved_off_file": missing}


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold the build lock of the store path for the duration of a build (:func:`moireu.data.schema.store_lock`).

    Two builds into the same store refuse each other, and readers never repair or remove anything
    while it is held; the kernel drops the lock when the holder dies (even by SIGKILL).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = sc.lock_path(out)
        with open(lock, "a+"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write next to --out {str(out)!r}: {exc.strerror or exc} "
                         f"({str(out.parent)!r}); choose a writable location (nothing was written)") from None
    with sc.store_lock(out) as mine:
        if not mine:
            raise InputError(f"another `moireu dataset build` is writing {str(out)!r} right now "
                             f"(lock {str(sc.lock_path(out))!r}); wait for it to finish")
        yield


def _open_work_dir(out: Path, cfg: MoireuConfig, append: bool) -> WorkDir:
    """The work directory of this build: resumed when its data fingerprint matches, else a new generation.

    A work directory of another fingerprint that holds committed results is refused (rerun that
    build, or delete the folder); one without any results (a build that never got to compute) is
    simply replaced, so a corrected command always runs.
    """
    root = work_dir_for(out)
    fp = st.data_fingerprint(cfg)
    man = read_manifest(root)
    if man is not None and man.get("fingerprint") == fp and man.get("token"):
        return WorkDir(root, man["token"], fp)
    if man is not None and man.get("token") and WorkDir(root, man["token"], str(man.get("fingerprint"))).has_records():
        from moireu.config import config_from_json

        try:
            diff = st.config_differences(config_from_json(man["config"]), cfg)
        except (InputError, KeyError, TypeError, ValueError):
            diff = ["(unreadable manifest)"]
        raise InputError(f"{str(root)!r} holds an unfinished build of a different config (differs in "
                         f"{', '.join(diff) or 'its data fingerprint'}); rerun that build to finish it, or "
                         "delete the folder (nothing was written)")
    return WorkDir(root, new_token(), fp)


def _build(cfg: MoireuConfig, out: Path, *, scheduler: str | None, workers: int | None, append: bool,
           backend: Backend | None, processes: bool, progress: bool, worker_timeout: float,
           states_used: dict[str, Any] | None = None) -> BuildReport:
    """:func:`build_dataset` under the store lock."""
    t_start = time.perf_counter()
    backend = backend or PhysicsBackend()
    n_req = cfg.dataset.workers if workers is None else workers
    old = st.check_existing(out, cfg, append)
    wd = _open_work_dir(out, cfg, append)
    if wd.root.is_dir():
        wd.clean()  # temporaries, and every file of another build token

    # points already in the store (the work dir, if any, is newer)
    in_store: set[tuple[str, float, float]] = set()
    if old is not None:
        keys = zip(old["split"].values.tolist(), old["U"].values.tolist(), old["filling"].values.tolist())
        in_store = {sc.point_key(s, u, f) for s, u, f in keys}

    report = BuildReport(out=out)
    plan = make_plan(cfg)
    with contextlib.ExitStack() as stack:
        client = None

        def connect() -> Any:
            c = stack.enter_context(dask_client(scheduler, n_req, processes, worker_timeout,
                                                say=_say if progress else None))
            # the work dir is created (and its manifest written) only once the cluster is there
            wd.write_manifest({"config": cfg.to_json(), "store": out.name})
            report.workers = n_workers_of(c)
            return c

        todo_solve, todo_render = _todo(plan, wd, in_store)
        report.solves_total = len(plan.points)
        report.images_total = plan.n_images
        report.solves_skipped = len(plan.points) - len(todo_solve)
        report.images_skipped = (len(plan.points) - len(todo_render)) * len(plan.specs)
        # with the sweeps in U, every image waits for the final states: renders run once all is solved
        sweep = cfg.dataset.sweep
        if todo_solve or (todo_render and not sweep):
            client = connect()
            _run(client, cfg, plan, wd, backend, todo_solve, [] if sweep else todo_render, report, progress)
        # adaptive refinement: extra grid U where the solved grid's order parameters change most
        extra = _refinement_points(cfg, plan, wd, old)
        if extra:
            plan.points = plan.points + extra
            plan.chains = build_chains(cfg, plan.points)
            report.solves_total += len(extra)
            report.images_total += len(extra) * len(plan.specs)
            todo_solve, todo_render = _todo(Plan(extra, plan.specs), wd, in_store)
            report.solves_skipped += len(extra) - len(todo_solve)
            report.images_skipped += (len(extra) - len(todo_render)) * len(plan.specs)
            if todo_solve or (todo_render and not sweep):
                client = client or connect()
                _run(client, cfg, plan, wd, backend, todo_solve, [] if sweep else todo_render, report, progress)
        if sweep:
            _, todo_render = _todo(plan, wd, in_store)
            if todo_render:
                client = client or connect()
                _sweep(client, cfg, plan, wd, backend, set(todo_render), report, progress)
                _run(client, cfg, plan, wd, backend, [], todo_render, report, progress)

    # consolidate
    try:
        samples = consolidate(cfg, plan, wd, old, out, report, states_used or {})
    except OSError as exc:
        raise BuildError(f"writing the store {str(out)!r} failed: {exc}; the previous store (if any) is "
                         f"untouched and the finished points are kept in {str(wd.root)!r} — fix the cause "
                         "(free disk space, permissions) and rerun the same command") from None
    report.store_samples = samples
    report.seconds = time.perf_counter() - t_start
    if report.ok and samples and all(_point_in(p, wd, in_store) for p in plan.points):
        wd.remove()
    return report


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _refinement_points(cfg: MoireuConfig, plan: Plan, wd: WorkDir, old: Any) -> list[SolvePoint]:
    """The ``dataset.refine`` extra grid points per filling (:func:`moireu.data.plan.refinement_values`).

    Order parameters come from the solve records of this build or, for points finished in an earlier
    build, from the store. Without a converged solution at every grid U no refinement is made (the
    build reports the failure; a rerun that fixes it refines then).
    """
    n = cfg.dataset.refine
    if n <= 0:
        return []
    from_store: dict[tuple[float, float], dict[str, float]] = {}
    if old is not None:
        hf = {k: sc.values(old, f"hf_{k}") for k in REFINE_KEYS if f"hf_{k}" in old}  # loaded once
        conv = sc.values(old, "hf_converged")
        for i, (sp, u, f) in enumerate(zip(old["split"].values.tolist(), old["U"].values.tolist(),
                                           old["filling"].values.tolist())):
            if sp == "grid" and (sc.round_u(u), f) not in from_store:
                from_store[(sc.round_u(u), f)] = {k: float(v[i]) for k, v in hf.items()} | {
                    "status": "ok" if bool(conv[i]) else "unconverged"}
    out: list[SolvePoint] = []
    for nu in cfg.dataset.fillings:
        grid = [p for p in plan.points if p.split == "grid" and p.filling == float(nu)]
        recs = [wd.solve_record(p) or from_store.get((sc.round_u(p.U), p.filling)) for p in grid]
        if any(r is None or r.get("status") != "ok" for r in recs):
            continue
        taken = {sc.round_u(p.U) for p in plan.points if p.filling == float(nu)}
        out += [SolvePoint("grid", u, float(nu)) for u in refinement_values([p.U for p in grid], recs, n)
                if u not in taken]
    return out


def _point_in(p: SolvePoint, wd: WorkDir, in_store: set[tuple[str, float, float]]) -> bool:
    return wd.images_done(p) or sc.point_key(p.split, p.U, p.filling) in in_store


def _todo(plan: Plan, wd: WorkDir, in_store: set) -> tuple[list[SolvePoint], list[SolvePoint]]:
    solve, render = [], []
    for p in plan.points:
        if _point_in(p, wd, in_store):
            continue
        render.append(p)
        if wd.solve_record(p) is None:
            solve.append(p)
    return solve, render


def _lost_cluster(client: Any, exc: BaseException) -> bool:
    """Whether ``exc`` of a future means the scheduler is gone (not that one task/worker failed)."""
    from concurrent.futures import CancelledError

    if getattr(client, "status", "running") not in ("running", "connecting"):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return isinstance(exc, CancelledError) or bool(names & {"FutureCancelledError", "CommClosedError"})


def _run(client: Any, cfg: MoireuConfig, plan: Plan, wd: WorkDir, backend: Backend,
         todo_solve: list[SolvePoint], todo_render: list[SolvePoint], report: BuildReport,
         progress: bool) -> None:
    """Submit the chains' solves and the renders, collect their records into ``report``.

    The backend travels inside each task (no scattered data): a task can run on any worker,
    including workers that join after every original worker has left.
    """
    from dask.distributed import as_completed

    pred = plan.predecessor()
    todo_s, todo_r = set(todo_solve), set(todo_render)
    root, tok, fp = str(wd.root), wd.token, wd.fingerprint
    solve_f: dict[SolvePoint, Any] = {}
    kinds: dict[Any, tuple[str, SolvePoint]] = {}
    run_id = f"{time.time_ns():x}"
    for chain in plan.chains:
        prev = None
        for p in chain:
            if p in todo_s:
                w1 = pred[p]
                f = client.submit(solve_task, backend, cfg, p, root, tok, fp, w1, prev,
                                  pred.get(w1) if w1 is not None else None, pure=False,
                                  key=f"solve-{p.key}-{run_id}")
                solve_f[p], kinds[f] = f, ("solve", p)
                prev = f
            else:
                prev = None
            if p in todo_r:
                rec = solve_f.get(p) or wd.solve_record(p) or {"status": "failed"}  # no result: nothing to render
                g = client.submit(render_task, backend, cfg, p, root, tok, fp, plan.specs, rec, pure=False,
                                  priority=1, key=f"render-{p.key}-{run_id}")
                kinds[g] = ("render", p)
    bar = BuildProgress(len(todo_s), len(todo_r) * len(plan.specs), enabled=progress)
    with bar:
        for fut in as_completed(list(kinds)):
            kind, p = kinds[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory) or the scheduler
                if _lost_cluster(client, exc):
                    raise BuildError(f"lost the dask cluster ({type(exc).__name__}: {exc}); nothing was "
                                     f"published — the finished points are kept in {str(wd.root)!r}, rerun the "
                                     "same command to resume") from None
                res = point_info(p) | {"stage": kind, "status": "failed", "n": 0,
                                        "error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(StaleTask, OSError):
                    wd.record_failure(p, kind, res)
            if res.get("status") == "stale":
                raise BuildError(f"the work directory {str(wd.root)!r} was taken over by another build; "
                                 "nothing was published")
            if kind == "solve":
                if not res.get("skipped"):
                    report.cpu_solve += sum(a.get("cpu_seconds", 0.0) for a in res.get("attempts", []))
                report.solves_run += 1
                report.solves_retried += bool(res.get("retried") or len(res.get("attempts", [])) > 1)
                msg = (f"solve {p.key}: {res['status']}" +
                       (f", {res['iterations']} it, max moment {res['max_moment']:.3f}{_branch_text(res)}"
                        if res["status"] != "failed" else f" ({res.get('error')})"))
                bar.solve_done(msg, res["status"] != "ok", failed=res["status"] == "failed")
            else:
                report.cpu_render += res.get("cpu_seconds", 0.0)
                ok = res["status"] == "ok"
                report.images_run += res.get("n", 0) if ok else 0
                bar.images_done(len(plan.specs), f"render {p.key}: {res['status']}"
                                + ("" if ok else f" ({res.get('error', 'no solution')})"), not ok, failed=not ok)


def _sweep(client: Any, cfg: MoireuConfig, plan: Plan, wd: WorkDir, backend: Backend, todo_render: set[SolvePoint],
           report: BuildReport, progress: bool) -> None:
    """Sweep every filling's solved points up and down in U (:func:`sweep_task`), then settle each point
    to be rendered on the lowest of its own state and the two sweeps' (:func:`moireu.data.consolidate.settle`)."""
    from dask.distributed import as_completed

    root, tok, fp = str(wd.root), wd.token, wd.fingerprint
    run_id = f"{time.time_ns():x}"
    futs: dict[Any, tuple[str, SolvePoint]] = {}
    n_run = 0
    for nu in sorted({p.filling for p in plan.points}):
        pts = sorted((p for p in plan.points if p.filling == nu and (p in todo_render or wd.result_path(p).exists())),
                     key=lambda p: (p.U, p.split))
        for direction, seq in (("up", pts), ("down", pts[::-1])):
            prev, prev_f = None, None
            for p in seq:
                n_run += wd.sweep_record(p, direction) is None
                f = client.submit(sweep_task, backend, cfg, p, direction, root, tok, fp, prev, p not in todo_render,
                                  prev_f, pure=False, key=f"sweep-{direction}-{p.key}-{run_id}")
                futs[f] = (direction, p)
                prev, prev_f = p, f
    with BuildProgress(n_run, 0, enabled=progress, label="HF sweeps") as bar:
        for fut in as_completed(list(futs)):
            direction, p = futs[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: the point keeps its own state
                if _lost_cluster(client, exc):
                    raise BuildError(f"lost the dask cluster ({type(exc).__name__}: {exc}); nothing was "
                                     f"published — the finished points are kept in {str(wd.root)!r}, rerun the "
                                     "same command to resume") from None
                res = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            if res.get("status") == "stale":
                raise BuildError(f"the work directory {str(wd.root)!r} was taken over by another build; "
                                 "nothing was published")
            if res.get("skipped"):
                continue
            report.sweep_steps += 1
            if res.get("source") == "carried":
                msg = (f"lower state carried in from U = {res['from_U']:g} "
                       f"({1e3 * (res['total_energy'] - own_energy(wd, p)):+.1f} meV)")
            elif "carried_energy" in res:
                msg = "own state kept" + (f" (carried state {1e3 * (res['carried_energy'] - res['total_energy']):+.1f}"
                                          " meV)" if res.get("carried_converged") and res.get("converged")
                                          else "" if res.get("carried_converged")
                                          else f" (carried start unconverged after {res['carried_iterations']} it)")
            else:
                msg = f"own state passed on ({res.get('error') or res.get('source', 'failed')})"
            bar.solve_done(f"sweep {direction} {p.key}: {msg}", res.get("status") != "ok",
                           failed=res.get("status") == "failed")
    report.sweep_lowered += settle(wd, [p for p in plan.points if p in todo_render])



def _branch_text(rec: dict[str, Any]) -> str:
    """``, branch seed (next state +4.0 meV)`` of a record with a ground-state selection, else ``""``."""
    if "branch" not in rec:
        return ""
    name = {c: n for n, c in sc.BRANCH_CODES.items()}.get(rec["branch"], "?")
    m = rec.get("energy_margin", math.nan)
    return f", branch {name}" + (f" (next state +{1e3 * m:.1f} meV)" if math.isfinite(m) else "")

