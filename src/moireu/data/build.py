"""Build a dataset on dask.distributed: HF solves in warm-start chains, images per solved point.

Flow of :func:`build_dataset`:

1. validate the output path against the config (:func:`moireu.data.store.check_existing`);
2. plan the points and image specs (:func:`moireu.data.plan.make_plan`) with one warm-start chain
   per worker and filling;
3. skip every point whose solve/images are already committed (in the work directory of an
   interrupted run, or in the existing store), submit the rest: ``solve(U_k)`` depends on
   ``solve(U_{k-1})`` of its chain, ``render(U_k)`` on ``solve(U_k)``; every task commits its
   output atomically to the work directory (:mod:`moireu.data.workdir`) and never raises;
4. a failed or unconverged solve is retried once with another mixer
   (:func:`moireu.data.tasks.retry_overrides`); what still fails is reported, flagged in the store
   (``hf_converged = False``, or listed in ``attrs["failures"]`` when no result exists) and makes
   the build's :attr:`BuildReport.ok` false;
5. consolidate everything into ONE Zarr store, replaced atomically; the work directory is removed
   once the store holds every planned point.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from moireu.config import MoireuConfig
from moireu.data import store as st
from moireu.data.plan import REFINE_KEYS, ImageSpec, Plan, SolvePoint, make_chains, make_plan, refinement_values
from moireu.data.tasks import Backend, PhysicsBackend, replace_path, retry_overrides
from moireu.data.workdir import WorkDir, work_dir_for
from moireu.errors import InputError
from moireu.provenance import provenance

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# tasks (run on dask workers; they never raise: a failure is a returned status)


def solve_task(backend: Backend, cfg: MoireuConfig, point: SolvePoint, root: str,
               warm_point: SolvePoint | None, _after: Any = None) -> dict[str, Any]:
    """Solve ``point`` (warm-starting from ``warm_point`` when it converged), commit, return the record.

    ``_after`` is the predecessor's future: it only orders the chain. Returns a record with
    ``status`` ∈ {ok, unconverged, failed} (failed: no result at all).
    """
    wd = WorkDir(root)
    done = wd.solve_record(point)
    if done is not None:
        return done | {"skipped": True}
    warm = None
    if warm_point is not None:
        prev = wd.solve_record(warm_point)
        if prev is not None and prev.get("converged") and wd.result_path(warm_point).exists():
            warm = wd.result_path(warm_point)
    tries: list[tuple[dict[str, Any], Path | None]] = [({}, warm)]
    if cfg.dataset.retry:
        tries.append((retry_overrides(cfg), None))
    attempts: list[dict[str, Any]] = []
    best: tuple[int, dict[str, Any]] | None = None
    for i, (over, w) in enumerate(tries):
        info: dict[str, Any] = {"attempt": i, "hf_overrides": over,
                                "warm_start": None if w is None else w.name}
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            summ = backend.solve(cfg, point, w, over, wd.result_path(point, i))
            info |= {"converged": bool(summ["converged"]), "iterations": int(summ["iterations"])}
            best = (i, summ)
        except Exception as exc:  # noqa: BLE001 - reported, retried, never silent
            info |= {"error": f"{type(exc).__name__}: {exc}"}
        info["seconds"] = time.perf_counter() - t0
        info["cpu_seconds"] = time.process_time() - c0  # of this worker process (all its threads)
        attempts.append(info)
        if best is not None and best[0] == i and best[1]["converged"]:
            break
    if best is None:
        fail = {"key": point.key, "split": point.split, "U": point.U, "filling": point.filling,
                "stage": "solve", "status": "failed", "attempts": attempts,
                "error": attempts[-1].get("error")}
        wd.record_failure(point, "solve", fail)
        return fail
    i, summ = best
    replace_path(wd.result_path(point, i), wd.result_path(point))
    for j in range(len(tries)):
        _remove(wd.result_path(point, j))
    record = {k: _plain(v) for k, v in summ.items()} | {
        "key": point.key, "split": point.split, "U": point.U, "filling": point.filling,
        "status": "ok" if summ["converged"] else "unconverged", "attempts": attempts,
        "retried": len(attempts) > 1}
    wd.commit_solve(point, record)
    return record


def render_task(backend: Backend, cfg: MoireuConfig, point: SolvePoint, root: str,
                specs: Sequence[ImageSpec], solve_record: dict[str, Any]) -> dict[str, Any]:
    """Render and commit every image of ``point``; returns ``{"status", "n", ...}``."""
    wd = WorkDir(root)
    if wd.images_done(point):
        return {"key": point.key, "status": "ok", "n": len(specs), "skipped": True}
    if solve_record.get("status") == "failed":
        return {"key": point.key, "status": "no-solve", "n": 0}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        rendered = backend.render(cfg, point, wd.result_path(point), specs)
        wd.commit_images(point, specs, rendered)
    except Exception as exc:  # noqa: BLE001
        fail = {"key": point.key, "split": point.split, "U": point.U, "filling": point.filling,
                "stage": "render", "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        wd.record_failure(point, "render", fail)
        return fail
    return {"key": point.key, "status": "ok", "n": len(specs), "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


# ------------------------------------------------------------------------------------------------
# cluster


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 0, processes: bool = True) -> Iterator[Any]:
    """A :class:`distributed.Client`: to ``scheduler`` if given, else on a machine-sized LocalCluster.

    The local cluster has ``n_workers`` (0: one per core) single-threaded workers; BLAS/OpenMP in
    each worker get ``max(1, cores // n_workers)`` threads (OMP/MKL/OPENBLAS_NUM_THREADS), so the
    eigensolvers never oversubscribe the machine. ``processes=False`` runs the workers as threads of
    this process (cheap; for tests and tiny builds).
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot connect to the dask scheduler {scheduler!r}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    cores = available_cores()
    n = n_workers or cores
    kw: dict[str, Any] = dict(n_workers=n, threads_per_worker=1, processes=processes,
                              dashboard_address=":0", silence_logs=logging.ERROR)
    if not processes:
        kw["n_workers"], kw["threads_per_worker"] = 1, n
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(cores, n)}):
        cluster = LocalCluster(**kw)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


#: glibc malloc: keep freed blocks below 256 MiB in the heap. dask's default
#: ``MALLOC_TRIM_THRESHOLD_=65536`` disables glibc's dynamic mmap threshold, so every array
#: above 128 kiB (each 676×676 complex matrix of an HF iteration) is a fresh mmap whose pages fault in
#: again: measured +75 % CPU per HF solve at TBG i = 7 (benchmarks/dataset_throughput.py notes).
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(256 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(256 * 2**20)}


def worker_environ(cores: int, n_workers: int) -> dict[str, str]:
    """Environment set before a LocalCluster spawns each worker process.

    BLAS/OpenMP pools get ``max(1, cores // n_workers)`` threads each (OMP/MKL/OPENBLAS_NUM_THREADS),
    and :data:`MALLOC_ENV` replaces dask's malloc settings (see there).
    """
    blas = str(max(1, cores // max(1, n_workers)))
    return {"OMP_NUM_THREADS": blas, "MKL_NUM_THREADS": blas, "OPENBLAS_NUM_THREADS": blas} | MALLOC_ENV


def n_workers_of(client: Any) -> int:
    """Total worker threads of a client's cluster (≥ 1)."""
    info = client.scheduler_info()
    return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))


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
                "solves_per_minute": round(60 * self.solves_run / self.seconds, 3) if self.seconds else None}

    def summary_lines(self) -> list[str]:
        lines = [f"dataset: {self.out}",
                 f"  solves : {self.solves_total} planned, {self.solves_run} run "
                 f"({self.solves_retried} retried), {self.solves_skipped} already done",
                 f"  images : {self.images_total} planned, {self.images_run} rendered, "
                 f"{self.images_skipped} already done; store holds {self.store_samples} samples",
                 f"  workers: {self.workers}, time {self.seconds:.1f} s (worker CPU: solves "
                 f"{self.cpu_solve:.1f} s, images {self.cpu_render:.1f} s)"]
        for u in self.unconverged:
            lines.append(f"  UNCONVERGED {u['key']} after {len(u.get('attempts', []))} attempt(s) "
                         "(kept, flagged hf_converged=False)")
        for f in self.failures:
            lines.append(f"  FAILED {f['key']} ({f['stage']}): {f.get('error')}")
        lines.append("  status : " + ("ok" if self.ok else
                                      f"{len(self.unconverged)} unconverged, {len(self.failures)} failed"))
        return lines


def build_dataset(cfg: MoireuConfig, out: str | os.PathLike, *, scheduler: str | None = None,
                  workers: int | None = None, append: bool = False, backend: Backend | None = None,
                  processes: bool = True, progress: bool = True) -> BuildReport:
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

    Returns
    -------
    BuildReport
        Counts, failures and timing; ``report.ok`` is False if any point failed or did not converge.
    """
    out = Path(out)
    n_req = cfg.dataset.workers if workers is None else workers
    if n_req < 0:
        raise InputError(f"--workers must be ≥ 0 (0 = one per core), got {n_req}")
    make_plan(cfg, 1)  # validate the plan before touching anything
    with exclusive(out):
        return _build(cfg, out, scheduler=scheduler, workers=workers, append=append, backend=backend,
                      processes=processes, progress=progress)


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store path for the duration of a build.

    ``fcntl.flock`` on ``.<name>.lock`` next to the store: two builds into the same store refuse
    each other; the kernel drops the lock when the holder dies (even by SIGKILL), so a crash never
    leaves a stale lock behind.
    """
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lock")
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another `moireu dataset build` is writing {str(out)!r} right now "
                             f"(lock {str(lock)!r}); wait for it to finish") from None
        yield
    finally:
        fh.close()


def _build(cfg: MoireuConfig, out: Path, *, scheduler: str | None, workers: int | None, append: bool,
           backend: Backend | None, processes: bool, progress: bool) -> BuildReport:
    """:func:`build_dataset` under the store lock."""
    t_start = time.perf_counter()
    out = Path(out)
    backend = backend or PhysicsBackend()
    n_req = cfg.dataset.workers if workers is None else workers
    old = st.check_existing(out, cfg, append)
    wd = WorkDir(work_dir_for(out))
    man = wd.manifest()
    if man is not None:
        from moireu.config import config_from_json

        diff = st.config_differences(config_from_json(man["config"]), cfg)
        bad = [d for d in diff if tuple(d.split(".")) not in st._APPENDABLE] if append else diff
        if bad:
            raise InputError(f"{str(wd.root)!r} holds an unfinished build of a different config (differs in "
                             f"{', '.join(bad)}); rerun that build to finish it, or delete the folder "
                             "(nothing was written)")
    wd.write_manifest({"config": cfg.to_json(), "fingerprint": cfg.fingerprint(), "store": out.name})
    wd.clean_temporaries()

    # points already in the store (the work dir, if any, is newer)
    in_store: set[tuple[str, float, float]] = set()
    if old is not None:
        keys = zip(old["split"].values.tolist(), old["U"].values.tolist(), old["filling"].values.tolist())
        in_store = {(s, round(u, 6), f) for s, u, f in keys}

    report = BuildReport(out=out)
    with contextlib.ExitStack() as stack:
        client = None
        plan = make_plan(cfg, 1)
        todo_solve, todo_render = _todo(plan, wd, in_store)
        if todo_solve or todo_render:
            client = stack.enter_context(dask_client(scheduler, n_req, processes))
            report.workers = n_workers_of(client)
            plan = make_plan(cfg, report.workers)
            todo_solve, todo_render = _todo(plan, wd, in_store)
        report.solves_total = len(plan.points)
        report.images_total = plan.n_images
        report.solves_skipped = len(plan.points) - len(todo_solve)
        report.images_skipped = (len(plan.points) - len(todo_render)) * len(plan.specs)
        if client is not None:
            _run(client, cfg, plan, wd, backend, todo_solve, todo_render, report, progress)
        # adaptive refinement: extra grid U where the solved grid's order parameters change most
        extra = _refinement_points(cfg, plan, wd, old)
        if extra:
            plan.points = plan.points + extra
            report.solves_total += len(extra)
            report.images_total += len(extra) * len(plan.specs)
            todo_solve, todo_render = _todo(Plan(extra, plan.specs), wd, in_store)
            report.solves_skipped += len(extra) - len(todo_solve)
            report.images_skipped += (len(extra) - len(todo_render)) * len(plan.specs)
            if todo_solve or todo_render:
                if client is None:
                    client = stack.enter_context(dask_client(scheduler, n_req, processes))
                    report.workers = n_workers_of(client)
                plan.chains = make_chains(plan.points, report.workers)
                _run(client, cfg, plan, wd, backend, todo_solve, todo_render, report, progress)

    # consolidate
    samples = _consolidate(cfg, plan, wd, old, out, report)
    report.store_samples = samples
    report.seconds = time.perf_counter() - t_start
    if report.ok and all(_point_in(p, wd, in_store) for p in plan.points):
        wd.remove()
    return report


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
        hf = {k: old[f"hf_{k}"].values for k in REFINE_KEYS if f"hf_{k}" in old}  # loaded once
        conv = old["hf_converged"].values
        for i, (sp, u, f) in enumerate(zip(old["split"].values.tolist(), old["U"].values.tolist(),
                                           old["filling"].values.tolist())):
            if sp == "grid" and (round(u, 6), f) not in from_store:
                from_store[(round(u, 6), f)] = {k: float(v[i]) for k, v in hf.items()} | {
                    "status": "ok" if bool(conv[i]) else "unconverged"}
    out: list[SolvePoint] = []
    for nu in cfg.dataset.fillings:
        grid = [p for p in plan.points if p.split == "grid" and p.filling == float(nu)]
        recs = [wd.solve_record(p) or from_store.get((round(p.U, 6), p.filling)) for p in grid]
        if any(r is None or r.get("status") != "ok" for r in recs):
            continue
        taken = {round(p.U, 6) for p in plan.points if p.filling == float(nu)}
        out += [SolvePoint("grid", u, float(nu)) for u in refinement_values([p.U for p in grid], recs, n)
                if u not in taken]
    return out


def _point_in(p: SolvePoint, wd: WorkDir, in_store: set[tuple[str, float, float]]) -> bool:
    return wd.images_done(p) or (p.split, round(p.U, 6), p.filling) in in_store


def _todo(plan: Plan, wd: WorkDir, in_store: set) -> tuple[list[SolvePoint], list[SolvePoint]]:
    solve, render = [], []
    for p in plan.points:
        if _point_in(p, wd, in_store):
            continue
        render.append(p)
        if wd.solve_record(p) is None:
            solve.append(p)
    return solve, render


def _run(client: Any, cfg: MoireuConfig, plan: Plan, wd: WorkDir, backend: Backend,
         todo_solve: list[SolvePoint], todo_render: list[SolvePoint], report: BuildReport,
         progress: bool) -> None:
    from dask.distributed import as_completed

    pred = plan.predecessor()
    todo_s, todo_r = set(todo_solve), set(todo_render)
    root = str(wd.root)
    [backend_f] = client.scatter([backend], broadcast=True, hash=False)
    solve_f: dict[SolvePoint, Any] = {}
    kinds: dict[Any, tuple[str, SolvePoint]] = {}
    token = f"{time.time_ns():x}"
    for chain in plan.chains:
        prev = None
        for p in chain:
            if p in todo_s:
                f = client.submit(solve_task, backend_f, cfg, p, root, pred[p], prev, pure=False,
                                  key=f"solve-{p.key}-{token}")
                solve_f[p], kinds[f] = f, ("solve", p)
                prev = f
            else:
                prev = None
            if p in todo_r:
                rec = solve_f.get(p) or wd.solve_record(p)
                g = client.submit(render_task, backend_f, cfg, p, root, plan.specs, rec, pure=False,
                                  priority=1, key=f"render-{p.key}-{token}")
                kinds[g] = ("render", p)
    bar = _Progress(len(todo_s), len(todo_r) * len(plan.specs), enabled=progress)
    with bar:
        for fut in as_completed(list(kinds)):
            kind, p = kinds[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                res = {"key": p.key, "split": p.split, "U": p.U, "filling": p.filling, "stage": kind,
                       "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                wd.record_failure(p, kind, res)
            if kind == "solve":
                if not res.get("skipped"):
                    report.cpu_solve += sum(a.get("cpu_seconds", 0.0) for a in res.get("attempts", []))
                report.solves_run += 1
                report.solves_retried += bool(res.get("retried") or len(res.get("attempts", [])) > 1)
                msg = (f"solve {p.key}: {res['status']}" +
                       (f", {res['iterations']} it, max moment {res['max_moment']:.3f}"
                        if res["status"] != "failed" else f" ({res.get('error')})"))
                bar.solve_done(msg, res["status"] != "ok")
            else:
                report.cpu_render += res.get("cpu_seconds", 0.0)
                n = res.get("n", 0) if res["status"] == "ok" else 0
                report.images_run += n
                bar.images_done(len(plan.specs), f"render {p.key}: {res['status']}", res["status"] != "ok")


def _consolidate(cfg: MoireuConfig, plan: Plan, wd: WorkDir, old: Any, out: Path,
                 report: BuildReport) -> int:
    """Write the store from the existing store + the work dir parts; fill failures into ``report``."""
    parts = []
    transform: dict[str, Any] | None = None
    rendering: dict[str, Any] = {}
    kx = ky = None
    points = set(plan.points)
    if wd.root.is_dir():
        for f in sorted((wd.root / "images").glob("*.npz")):
            rec_path = wd.root / "solves" / f"{f.stem}.json"
            if not rec_path.is_file():
                continue
            rec = json.loads(rec_path.read_text())
            p = SolvePoint(rec["split"], float(rec["U"]), float(rec["filling"]))
            part = wd.load_images(p)
            if kx is None:
                kx, ky, transform, rendering = part["kx"], part["ky"], part["transform"], part["rendering"]
            elif part["kx"].shape != kx.shape or not np.allclose(part["kx"], kx) or not np.allclose(part["ky"], ky):
                raise RuntimeError(f"images of {p.key} are on another k grid than the others")
            parts.append((p, rec, part))
            points.add(p)
    new_keys = {(p.split, round(p.U, 6), p.filling) for p, _, _ in parts}
    cols = st.samples_from_parts(parts)
    # per-point LDOS + cell geometry (store contract D)
    point_ldos = [(st.point_key(p.split, p.U, p.filling), part["ldos"]) for p, _, part in parts if "ldos" in part]
    bias_level, geometry = next(((part["ldos_bias"], part["geometry"]) for _, _, part in parts if "ldos" in part),
                                (None, None))
    history: list[dict[str, Any]] = []
    if old is not None:
        keys = zip(old["split"].values.tolist(), old["U"].values.tolist(), old["filling"].values.tolist())
        keep = np.array([(s, round(u, 6), f) not in new_keys for s, u, f in keys], bool)
        if keep.any():
            cols = st.concat_columns(st.columns_from_store(old, keep), cols) if parts else \
                st.columns_from_store(old, keep)
        old_kx, old_ky = np.asarray(old["kx"].values), np.asarray(old["ky"].values)
        if kx is not None and (old_kx.shape != kx.shape or not np.allclose(old_kx, kx)
                               or not np.allclose(old_ky, ky)):
            raise RuntimeError("new images are on another k grid than the existing store's")
        kx, ky = old_kx, old_ky
        point_ldos = st.points_from_store(old, new_keys) + point_ldos
        if bias_level is None and st.geometry_from_store(old) is not None:
            bias_level, geometry = st.geometry_from_store(old)
        if transform is not None and transform != st.json_attr(old, "image_transform", transform):
            raise RuntimeError("new images were made with another image transform than the existing store's")
        transform = st.json_attr(old, "image_transform", transform)
        rendering = st.json_attr(old, "rendering", rendering)
        history = st.json_attr(old, "history", [])
    # failures and unconverged points (from the work dir records)
    failures = wd.failures() if wd.root.is_dir() else []
    report.failures = failures
    records = [wd.solve_record(p) for p in sorted(points)] if wd.root.is_dir() else []
    report.unconverged = [r for r in records if r is not None and r["status"] == "unconverged"]
    if not parts and old is not None and not failures:
        return int(old.sizes["sample"])  # nothing new: the store is already complete and current
    if kx is None:
        if not failures:
            return 0
        kx = ky = np.zeros(0)
    prov = provenance()
    history = history + [{"created": prov["created"], "git_commit": prov["git_commit"],
                          "fingerprint": cfg.fingerprint(), "new_points": len(parts),
                          "failures": len(failures)}]
    attrs = {"config": cfg.to_json(), "moireu_version": prov["moireu_version"], "git_commit": prov["git_commit"],
             "created": prov["created"], "image_transform": json.dumps(transform or {}, sort_keys=True),
             "rendering": json.dumps(rendering, sort_keys=True),
             "failures": json.dumps(failures), "history": json.dumps(history),
             "n_points": len({(s, u, f) for s, u, f in zip(cols["split"], cols["U"], cols["filling"])})}
    ds = st.dataset_from_columns(cols, kx, ky, attrs)
    if bias_level is not None:
        ds = st.attach_points(ds, point_ldos, bias_level, geometry)
    st.write_store(ds, out)
    return int(ds.sizes["sample"])


class _Progress:
    """Progress of a build on stderr: two rich bars (solves, images) with counts and ETA on a terminal;
    one line per finished task (counts, elapsed, ETA) otherwise (log files, batch jobs)."""

    def __init__(self, n_solves: int, n_images: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.n_solves, self.n_images = n_solves, n_images
        self.done_s = self.done_i = 0
        self.t0 = time.perf_counter()
        self._p = None
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)
            if self._console.is_terminal:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                   console=self._console, transient=False)
                self._ts = self._p.add_task("HF solves", total=n_solves)
                self._ti = self._p.add_task("images   ", total=n_images)

    def __enter__(self) -> "_Progress":
        if self._p is not None:
            self._p.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()

    def _line(self, msg: str) -> None:
        el = time.perf_counter() - self.t0
        total = self.n_solves + self.n_images / 50.0  # images are ~50× cheaper than a solve
        done = self.done_s + self.done_i / 50.0
        eta = el * (total - done) / done if done > 0 else float("nan")
        fmt = (lambda t: "--:--" if not np.isfinite(t) else f"{int(t) // 60:02d}:{int(t) % 60:02d}")
        print(f"[solves {self.done_s}/{self.n_solves}, images {self.done_i}/{self.n_images}] "
              f"elapsed {fmt(el)}, ETA {fmt(eta)}  {msg}", file=sys.stderr, flush=True)

    def _emit(self, msg: str, warn: bool) -> None:
        if self._p is not None:
            if warn:
                self._p.console.print(f"[yellow]{msg}[/yellow]")
        elif self.enabled:
            self._line(msg)
        elif warn:
            print(msg, file=sys.stderr, flush=True)

    def solve_done(self, msg: str, warn: bool) -> None:
        self.done_s += 1
        if self._p is not None:
            self._p.advance(self._ts)
        self._emit(msg, warn)

    def images_done(self, n: int, msg: str, warn: bool) -> None:
        self.done_i += n
        if self._p is not None:
            self._p.advance(self._ti, n)
        self._emit(msg, warn)
