"""Progress of long commands on stderr: a rich bar on a terminal, throttled lines in a log file.

:func:`progress_bar` returns an object with the part of :class:`rich.progress.Progress`'s API the
stages use (``add_task``, ``update``, ``advance``, ``start``, ``stop``, context manager). On a terminal
it is a rich progress bar; otherwise (output redirected to a log, a batch job) it is
:class:`LogProgress`, which writes one line ``[label] description n/total, elapsed mm:ss, ETA mm:ss``
whenever the description changes, a task finishes, or ``every`` seconds have passed — so a log shows
what a 30-minute ``bands`` or ``analyze`` is doing. :class:`BuildProgress` counts the two kinds of task of a
dataset build (HF solves and images, with failures) the same way.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


def _mmss(t: float) -> str:
    if t != t or t == float("inf"):
        return "--:--"
    return f"{int(t) // 60:02d}:{int(t) % 60:02d}"


class LogProgress:
    """Line-per-step progress for non-terminal stderr (see the module docstring)."""

    def __init__(self, label: str, every: float = 30.0, stream: TextIO | None = None, disable: bool = False) -> None:
        self.label, self.every, self.disable = label, float(every), disable
        self.stream = stream if stream is not None else sys.stderr
        self.tasks: dict[int, dict[str, Any]] = {}
        self.t0 = time.perf_counter()
        self._last = -float("inf")

    def add_task(self, description: str, total: float | None = None, completed: float = 0.0, **_: Any) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {"description": description, "total": total, "completed": float(completed)}
        self._emit(tid, force=True)
        return tid

    def update(self, task: int, *, advance: float = 0.0, completed: float | None = None,
               description: str | None = None, total: float | None = None, **_: Any) -> None:
        t = self.tasks[task]
        changed = description is not None and description != t["description"]
        if description is not None:
            t["description"] = description
        if total is not None:
            t["total"] = total
        t["completed"] = completed if completed is not None else t["completed"] + advance
        done = t["total"] is not None and t["completed"] >= t["total"]
        self._emit(task, force=changed or done)

    def advance(self, task: int, advance: float = 1.0) -> None:
        self.update(task, advance=advance)

    def _emit(self, task: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.disable or (not force and now - self._last < self.every):
            return
        self._last = now
        t = self.tasks[task]
        el = now - self.t0
        count = f" {t['completed']:g}/{t['total']:g}" if t["total"] else ""
        eta = ""
        if t["total"] and 0 < t["completed"] < t["total"]:
            eta = f", ETA {_mmss(el * (t['total'] - t['completed']) / t['completed'])}"
        print(f"[{self.label}] {t['description']}{count}, elapsed {_mmss(el)}{eta}", file=self.stream, flush=True)

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        pass

    def __enter__(self) -> "LogProgress":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def progress_bar(label: str, *, disable: bool = False, every: float = 30.0, transient: bool = False) -> Any:
    """A rich progress bar on a terminal, else :class:`LogProgress` (lines in the log every ``every`` s)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return LogProgress(label, every=every, disable=disable)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(f"[bold]{label}[/] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=transient, disable=disable)


def track(items: Iterable[T], label: str, description: str = "", *, total: int | None = None,
          disable: bool = False, every: float = 30.0) -> Iterator[T]:
    """Iterate over ``items`` with a :func:`progress_bar` (one step per item; ``total`` defaults to ``len``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(label, disable=disable, every=every, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for x in items:
            yield x
            bar.advance(task)


class BuildProgress:
    """Progress of a dataset build on stderr: two rich bars (solves, images) with counts and ETA on a
    terminal; one line per finished task (counts, failures, elapsed, ETA) otherwise (log files, batch
    jobs). The ETA weighs an image as 1/50 of a solve."""

    def __init__(self, n_solves: int, n_images: int, enabled: bool = True, label: str = "HF solves") -> None:
        self.enabled = enabled
        self.label = label
        self.n_solves, self.n_images = n_solves, n_images
        self.done_s = self.done_i = 0
        self.failed_s = self.failed_i = 0
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
                self._ts = self._p.add_task(label, total=n_solves)
                if n_images:
                    self._ti = self._p.add_task("images   ", total=n_images)

    def __enter__(self) -> "BuildProgress":
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
        fs = f" ({self.failed_s} failed)" if self.failed_s else ""
        fi = f" ({self.failed_i} failed)" if self.failed_i else ""
        what = "solves" if self.label == "HF solves" else self.label
        print(f"[{what} {self.done_s}/{self.n_solves}{fs}, images {self.done_i}/{self.n_images}{fi}] "
              f"elapsed {_mmss(el)}, ETA {_mmss(eta)}  {msg}", file=sys.stderr, flush=True)

    def _emit(self, msg: str, warn: bool) -> None:
        if self._p is not None:
            if warn:
                self._p.console.print(f"[yellow]{msg}[/yellow]")
        elif self.enabled:
            self._line(msg)
        elif warn:
            print(msg, file=sys.stderr, flush=True)

    def solve_done(self, msg: str, warn: bool, failed: bool = False) -> None:
        self.done_s += 1
        self.failed_s += failed
        if self._p is not None:
            self._p.advance(self._ts)
        self._emit(msg, warn)

    def images_done(self, n: int, msg: str, warn: bool, failed: bool = False) -> None:
        """``n`` images finished — rendered, or (``failed``) given up: counted apart, never as done."""
        self.done_i += n
        self.failed_i += n if failed else 0
        if self._p is not None:
            self._p.advance(self._ti, n)
        self._emit(msg, warn)
