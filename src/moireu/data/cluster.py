"""The dask cluster of a build: a client to a running scheduler or a machine-sized LocalCluster.

:func:`dask_client` gives single-threaded workers whose BLAS/OpenMP pools share the cores
(:func:`worker_environ`), spawned with SIGINT ignored so that Ctrl-C stops the build in one line, and
with glibc's malloc kept from re-faulting the HF matrices (:data:`MALLOC_ENV`). Used by the dataset
build (:mod:`moireu.data.build`) and the states ladder (:mod:`moireu.data.ladder`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterator

from moireu.errors import InputError

__all__ = ["BuildError", "available_cores", "check_scheduler_address", "dask_client", "dask_setup",
           "n_workers_of", "worker_environ", "MALLOC_ENV"]


class BuildError(RuntimeError):
    """The build could not finish its work (lost scheduler, no workers, a failed final write).

    Nothing partial was published; the committed points stay in the work directory for the rerun.
    The CLI prints ``error: …`` and exits 1.
    """


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def check_scheduler_address(address: str) -> str:
    """A dask scheduler address ``[protocol://]host:port`` (as :mod:`distributed.comm` parses it), else InputError."""
    from distributed.comm.addressing import parse_address, parse_host_port

    addr = address.strip()
    try:
        scheme, loc = parse_address(addr if "://" in addr else f"tcp://{addr}")
        if scheme in ("tcp", "tls", "ucx"):
            host, port = parse_host_port(loc)
            if not host or port is None or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
                raise ValueError("need host:port")
        elif scheme != "inproc":
            raise ValueError(f"unknown protocol {scheme!r}")
    except (ValueError, TypeError) as exc:
        raise InputError(f"--scheduler {address!r} is not a dask scheduler address ({exc}); expected "
                         "[tcp://]host:port, e.g. tcp://10.0.0.5:8786") from None
    return addr if "://" in addr else f"tcp://{addr}"


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 0, processes: bool = True,
                worker_timeout: float = 300.0, say: Any = None) -> Iterator[Any]:
    """A :class:`distributed.Client`: to ``scheduler`` if given, else on a machine-sized LocalCluster.

    The local cluster has ``n_workers`` (0: one per core) single-threaded workers; BLAS/OpenMP in
    each worker get ``max(1, cores // n_workers)`` threads (OMP/MKL/OPENBLAS_NUM_THREADS), so the
    eigensolvers never oversubscribe the machine. ``processes=False`` runs the workers as threads of
    this process (cheap; for tests and tiny builds). On an external scheduler the client waits up to
    ``worker_timeout`` seconds for a first worker (saying so through ``say``), then raises
    :class:`BuildError`; workers may come and go during the build.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        addr = check_scheduler_address(scheduler)
        try:
            client = Client(addr, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise BuildError(f"cannot connect to the dask scheduler {addr!r}: {exc}") from None
        try:
            if not client.scheduler_info().get("workers"):
                if say is not None:
                    say(f"waiting up to {worker_timeout:.0f} s for a dask worker to join {addr} "
                        f"(start one with `dask worker {addr}`)")
                try:
                    client.wait_for_workers(1, timeout=worker_timeout)
                except (TimeoutError, OSError) as exc:
                    raise BuildError(f"no dask worker joined the scheduler {addr} within {worker_timeout:.0f} s "
                                     f"({type(exc).__name__}); start workers with `dask worker {addr}` and rerun "
                                     "(nothing was written)") from None
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return
    import dask

    cores = available_cores()
    n = n_workers or cores
    kw: dict[str, Any] = dict(n_workers=n, threads_per_worker=1, processes=processes,
                              dashboard_address=":0", silence_logs=logging.CRITICAL)
    if not processes:
        kw["n_workers"], kw["threads_per_worker"] = 1, n
    else:
        kw["preload"] = [__name__]  # dask_setup below, in each worker process
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(cores, n)}), _workers_ignore_sigint():
        cluster = LocalCluster(**kw)
    client = Client(cluster)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()


def dask_setup(worker: Any) -> None:
    """Worker preload of the LocalCluster's processes: a worker torn down by Ctrl-C stays quiet.

    The client side reports the interruption in one line. Tasks do their I/O under a local
    scheduler (:func:`_local_io`), so a worker should open no client of its own; should one still be
    collected after the worker's event loop closed, its ``Client.__del__`` noise is dropped by this
    filter. Every other unraisable exception is still printed.
    """
    default = sys.unraisablehook

    def hook(u: Any) -> None:
        if isinstance(u.exc_value, RuntimeError) and "IOLoop is closed" in str(u.exc_value):
            return
        default(u)

    sys.unraisablehook = hook


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Spawn the LocalCluster's worker processes with SIGINT ignored (inherited through exec).

    Ctrl-C then reaches only this process, which stops the build and closes the cluster — one
    line for the user instead of a traceback from every worker. (Only from the main thread, where
    Python allows changing signal handlers.)
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


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
