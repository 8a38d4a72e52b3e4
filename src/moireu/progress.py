"""Progress of long commands on stderr: a rich bar on a terminal, throttled lines in a log file.

:func:`progress_bar` returns an object with the part of :class:`rich.progress.Progress`'s API the
stages use (``add_task``, ``update``, ``advance``, ``start``, ``stop``, context manager). On a terminal
it is a rich progress bar; otherwise (output redirected to a log, a batch job) it is
:class:`LogProgress`, which writes one line ``[label] description n/total, elapsed mm:ss, ETA mm:ss``
whenever the description changes, a task finishes, or ``every`` seconds have passed — so a log shows
what a 30-minute ``bands`` or ``analyze`` is doing.
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
