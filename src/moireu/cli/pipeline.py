"""A resumable chain of ``moireu`` subcommands in one run directory (``moireu demo``, ``moireu paper``).

Each stage runs as its own ``moireu`` subcommand in a child process and is skipped when its marker
file exists (unless forced, or when one of its inputs is newer than the marker). Every stage reads
the run's own resolved config (``RUN/config.toml``), so all stages see the same settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import typer

from moireu.cli.common import info


class Pipeline:
    """Stages of one run directory.

    Parameters
    ----------
    tag : the pipeline command (``demo``, ``paper``), named in the messages
    cfg : the resolved :class:`moireu.config.MoireuConfig`, saved to ``out`` (config.toml + provenance)
    out : run directory
    on_stage : called with the stage log after every stage (e.g. to keep a ``stages.json``)
    """

    def __init__(self, tag: str, cfg: Any, out: Path, on_stage: Callable[[list[dict]], None] | None = None) -> None:
        from moireu.config import save_resolved

        self.tag, self.cfg, self.out = tag, cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, self.out)
        #: every stage reads the run's own (complete, resolved) config file and nothing else
        self.conf = ["--preset", "none", "--config", str(self.out / "config.toml")]
        self.exe = [sys.executable, "-m", "moireu"]
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        self.log: list[dict] = []
        self.on_stage = on_stage
        self.t0 = time.perf_counter()

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.t0) / 60.0

    def stage(self, name: str, marker: Path, args: list[str], force: bool = False, stdout_to: Path | None = None,
              inputs: tuple[Path, ...] = ()) -> None:
        """Run ``moireu ARGS`` unless ``marker`` exists; stop the pipeline (same exit code) on failure.

        ``stdout_to``: keep the command's stdout (its ``--json`` document) in this file (atomically).
        ``inputs``: files the stage reads; the stage reruns when one is missing from an earlier run or
        newer than the marker (e.g. the analysis after a second model was trained).
        """
        tag = self.tag
        stale = marker.exists() and any(not p.exists() or p.stat().st_mtime > marker.stat().st_mtime for p in inputs)
        if stale:
            info(f"[{tag}] {name}: inputs changed since {marker.name}, rerunning")
        entry: dict[str, Any] = {"stage": name, "command": "moireu " + " ".join(args)}
        if marker.exists() and not force and not stale:
            info(f"[{tag}] {name}: done already ({marker}), skipping")
            self._record(entry | {"seconds": 0.0, "skipped": True})
            return
        info(f"[{tag}] {name}: moireu {' '.join(args)}")
        t0 = time.perf_counter()
        r = subprocess.run([*self.exe, *args], stdout=subprocess.PIPE if stdout_to else subprocess.DEVNULL, text=True)
        if stdout_to is not None and r.returncode == 0:
            from moireu.provenance import write_text_atomic

            write_text_atomic(stdout_to, r.stdout)
        dt = time.perf_counter() - t0
        self._record(entry | {"seconds": round(dt, 1), "skipped": False, "rc": r.returncode})
        if r.returncode != 0:
            info(f"[{tag}] {name} failed (exit {r.returncode}) after {dt:.0f} s; rerun `moireu {tag}` to resume")
            raise typer.Exit(r.returncode)
        info(f"[{tag}] {name}: {dt:.0f} s")

    def _record(self, entry: dict) -> None:
        self.log.append(entry)
        if self.on_stage is not None:
            self.on_stage(self.log)
