"""The dask tasks of a dataset build: each runs a backend (:mod:`moireu.data.tasks`) for one point, commits
its output atomically to the build's work directory (:mod:`moireu.data.workdir`) and returns a record.

A task never raises: a failure is a returned status (``ok``, ``unconverged``, ``failed``, or ``stale`` when
the work directory belongs to another build now and nothing was written). Tasks run with dask's
synchronous scheduler for their own I/O (:func:`_local_io`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.config import MoireuConfig
from moireu.data.plan import ImageSpec, SolvePoint
from moireu.data.tasks import SUMMARY_KEYS, Backend, replace_path, retry_overrides
from moireu.data.workdir import StaleTask, WorkDir
from moireu.hf.ground import is_lower

__all__ = ["solve_task", "render_task", "sweep_task", "point_info"]


def _local_io(task: Any) -> Any:
    """Run a worker task with dask's synchronous scheduler as the default.

    xarray picks its file lock from the active dask scheduler: inside a worker that is the cluster,
    so a NetCDF write would hold a *distributed* lock (and open a worker client for it). A task
    interrupted mid-write (Ctrl-C, a lost scheduler) then leaves a file manager whose ``__del__``
    tries to release that lock over a closed connection and prints a traceback at exit. The task's
    I/O is local to one file, so a process-local lock is the right one.
    """

    @functools.wraps(task)
    def run(*args: Any, **kw: Any) -> Any:
        import dask

        with dask.config.set(scheduler="synchronous"):
            return task(*args, **kw)

    return run


def point_info(point: SolvePoint) -> dict[str, Any]:
    """The identifying fields of a point in a task record."""
    return {"key": point.key, "split": point.split, "U": point.U, "filling": point.filling}


@_local_io
def solve_task(backend: Backend, cfg: MoireuConfig, point: SolvePoint, root: str, token: str, fingerprint: str,
               warm_point: SolvePoint | None, _after: Any = None,
               warm_prior: SolvePoint | None = None) -> dict[str, Any]:
    """Solve ``point`` (warm-starting from ``warm_point`` when it converged), commit, return the record.

    ``warm_prior`` is the point before ``warm_point`` in the chain: when both converged, the backend
    gets both result files (in chain order) and the solve starts from their linear extrapolation in U
    (:func:`moireu.hf.scf.run_scf`) instead of from ``warm_point`` alone.
    ``_after`` is the predecessor's future: it only orders the chain. Returns a record with
    ``status`` ∈ {ok, unconverged, failed, stale} (failed: no result at all; stale: the work
    directory belongs to another build now — nothing was written).
    """
    wd = WorkDir(root, token, fingerprint)
    if not wd.owned():
        return point_info(point) | {"stage": "solve", "status": "stale"}
    done = wd.solve_record(point)
    if done is not None:
        return done | {"skipped": True}
    warm: list[Path] = []  # converged chain predecessors, oldest first (at most two)
    for wp in (warm_prior, warm_point):
        prev = wd.solve_record(wp) if wp is not None else None
        if prev is not None and prev.get("converged") and wd.result_path(wp).exists():
            warm.append(wd.result_path(wp))
        else:
            warm = []  # an unconverged (or missing) point breaks the chain: nothing before it is used
    tries: list[tuple[dict[str, Any], list[Path] | None]] = [({}, warm or None)]
    if cfg.dataset.retry:
        tries.append((retry_overrides(cfg), None))
    attempts: list[dict[str, Any]] = []
    best: tuple[int, dict[str, Any]] | None = None
    io_error = False
    for i, (over, w) in enumerate(tries):
        info: dict[str, Any] = {"attempt": i, "hf_overrides": over,
                                "warm_start": None if not w else w[-1].name,
                                "warm_chain": None if not w else [x.name for x in w]}
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            wd.check_owned()
            summ = backend.solve(cfg, point, w, over, wd.result_path(point, i))
            info |= {"converged": bool(summ["converged"]), "iterations": int(summ["iterations"])}
            best = (i, summ)
        except StaleTask:
            return point_info(point) | {"stage": "solve", "status": "stale"}
        except OSError as exc:  # disk full, lost file system: not a convergence problem — no retry
            info |= {"error": f"I/O error ({type(exc).__name__}): {exc}"}
            io_error = True
        except Exception as exc:  # noqa: BLE001 - reported, retried, never silent
            info |= {"error": f"{type(exc).__name__}: {exc}"}
        info["seconds"] = time.perf_counter() - t0
        info["cpu_seconds"] = time.process_time() - c0  # of this worker process (all its threads)
        attempts.append(info)
        if io_error or (best is not None and best[0] == i and best[1]["converged"]):
            break
    try:
        if best is None or io_error:
            fail = point_info(point) | {"stage": "solve", "status": "failed", "attempts": attempts,
                                         "error": attempts[-1].get("error"), "io_error": io_error}
            wd.record_failure(point, "solve", fail)
            return fail
        i, summ = best
        wd.check_owned()
        replace_path(wd.result_path(point, i), wd.result_path(point))
        for j in range(len(tries)):
            _remove(wd.result_path(point, j))
        record = {k: _plain(v) for k, v in summ.items()} | point_info(point) | {
            "status": "ok" if summ["converged"] else "unconverged", "attempts": attempts,
            "retried": len(attempts) > 1}
        wd.commit_solve(point, record)
    except StaleTask:
        return point_info(point) | {"stage": "solve", "status": "stale"}
    except OSError as exc:
        return point_info(point) | {"stage": "solve", "status": "failed", "io_error": True,
                                     "error": f"I/O error ({type(exc).__name__}) committing the solve: {exc}"}
    return record


@_local_io
def render_task(backend: Backend, cfg: MoireuConfig, point: SolvePoint, root: str, token: str, fingerprint: str,
                specs: Sequence[ImageSpec], solve_record: dict[str, Any]) -> dict[str, Any]:
    """Render and commit every image of ``point``; returns ``{"status", "n", ...}``."""
    wd = WorkDir(root, token, fingerprint)
    if not wd.owned():
        return point_info(point) | {"stage": "render", "status": "stale", "n": 0}
    if wd.images_done(point):
        return {"key": point.key, "status": "ok", "n": len(specs), "skipped": True}
    if solve_record.get("status") in ("failed", "stale"):
        return {"key": point.key, "status": "no-solve", "n": 0}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        wd.check_owned()
        rendered = backend.render(cfg, point, wd.result_path(point), specs)
        wd.commit_images(point, specs, rendered)
    except StaleTask:
        return point_info(point) | {"stage": "render", "status": "stale", "n": 0}
    except Exception as exc:  # noqa: BLE001
        kind = "I/O error " if isinstance(exc, OSError) else ""
        fail = point_info(point) | {"stage": "render", "status": "failed", "n": 0,
                                     "error": f"{kind}{type(exc).__name__}: {exc}"}
        with contextlib.suppress(StaleTask, OSError):
            wd.record_failure(point, "render", fail)
        return fail
    return {"key": point.key, "status": "ok", "n": len(specs), "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0}


def sweep_task(backend: Backend, cfg: MoireuConfig, point: SolvePoint, direction: str, root: str, token: str,
               fingerprint: str, prev: SolvePoint | None, frozen: bool = False, _after: Any = None) -> dict[str, Any]:
    """One step of the sweep ``direction`` (``up``/``down`` in U): the lower of ``point``'s own state and
    its solve started from the sweep state of ``prev``, the point before it in the sweep.

    Sweeping the finished points up and down in U, each step keeping the lower of the state carried
    in and the point's own, is the usual completion of a search among coexisting mean-field states:
    a state found at one U (by any start) reaches every U of the grid where it stays the lowest, and
    the result depends on the set of points only, never on the chains or the cluster. A ``frozen``
    point (its images already made) only passes its own state on. The step commits a record
    (``source`` ``own``/``carried``/``none``, the summary of the state it passes on; a carried state
    in ``<key>.<token>.<direction>.hf``), never raises, and is skipped when its record exists.
    """
    wd = WorkDir(root, token, fingerprint)
    if not wd.owned():
        return point_info(point) | {"stage": "sweep", "status": "stale"}
    done = wd.sweep_record(point, direction)
    if done is not None:
        return done | {"skipped": True}
    own = wd.solve_record(point)
    own_ok = bool(own and own.get("converged") and wd.result_path(point).exists())
    e_own = float(own["total_energy"]) if own_ok else math.inf
    start = None
    if prev is not None and not frozen:
        pr = wd.sweep_record(prev, direction)
        if pr is not None and pr.get("converged"):
            start = wd.sweep_result_path(prev, direction) if pr["source"] == "carried" else wd.result_path(prev)
    rec: dict[str, Any] = point_info(point) | {"stage": "sweep", "direction": direction, "status": "ok"}
    final = wd.sweep_result_path(point, direction)
    tmp = final.with_name(f".{final.name}.new")  # a dot name: clean() removes it after a crash
    try:
        if start is not None and start.exists():
            t0 = time.perf_counter()
            try:
                new = backend.solve_from(cfg, point, start, tmp)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point keeps its own state; reported
                new, rec["error"] = None, f"{type(exc).__name__}: {exc}"
            rec["seconds"] = time.perf_counter() - t0
            if new is not None:
                rec |= {"from_U": prev.U, "carried_energy": float(new["total_energy"]),
                        "carried_converged": bool(new["converged"]), "carried_iterations": int(new["iterations"])}
            if (new is not None and new["converged"] and math.isfinite(new["total_energy"])
                    and is_lower(new["total_energy"], e_own)):  # the rule of moireu.hf.ground
                wd.check_owned()
                replace_path(tmp, final)
                rec |= {k: _plain(new[k]) for k in SUMMARY_KEYS} | {"source": "carried"}
        if "source" not in rec:
            rec |= ({k: own[k] for k in SUMMARY_KEYS if k in own} | {"source": "own"} if own_ok
                    else {"converged": False, "source": "none"})
        wd.commit_sweep(point, direction, rec)
    except StaleTask:
        return point_info(point) | {"stage": "sweep", "status": "stale"}
    except OSError as exc:
        return point_info(point) | {"stage": "sweep", "status": "failed",
                                     "error": f"I/O error ({type(exc).__name__}): {exc}"}
    finally:
        tmp.unlink(missing_ok=True)
    return rec


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
