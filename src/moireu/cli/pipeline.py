"""A resumable chain of ``moireu`` subcommands in one run directory (``moireu demo``, ``moireu paper``).

Each stage runs as its own ``moireu`` subcommand in a child process and is skipped when its marker
file exists (unless forced, or when one of its inputs is newer than the marker). Every stage reads
the run's own resolved config (``RUN/config.toml``), so all stages see the same settings.

A pipeline may also **keep** the small results of its stages in a folder that is committed to the
repository (:class:`Kept`, e.g. ``results/paper``), so that they outlive the run directory and the
session: a stage whose kept result has the stage's key (the command, the resolved config and the
digest of the HF states the store renders from) and intact files is restored from there instead of
being run again; a stage that ran is kept as soon as it finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import typer

from moireu.cli.common import info
from moireu.provenance import file_sha256

#: a file larger than this is not kept (e.g. the 45 MB ResNet-18 checkpoint); its stage reruns when a later
#: stage needs it
KEEP_MAX_BYTES = 4 * 1024 * 1024
#: files of a run directory never kept: resumable scratch state, superseded by the results
KEEP_SKIP = ("last.pt",)


class Kept:
    """The kept (committed) results of one pipeline: ``ROOT/manifest.json`` and the files it lists.

    The manifest maps every stage name to ``key`` (what the result depends on), ``command``,
    ``files`` (path relative to the run directory → SHA-256; the file lies at that path under ROOT),
    ``seconds`` (of the run that made it) and ``provenance`` (version, commit, date, host).
    A result is *valid* when its key is the stage's and every file is there with its checksum; an
    edited or truncated file makes the stage run again (and says why).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / "manifest.json"
        try:
            self.manifest: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, json.JSONDecodeError) as exc:
            raise OSError(f"kept results {str(self.path)!r} are unreadable ({exc}); restore the file from git "
                          "or delete it to recompute every stage") from None
        self.manifest.setdefault("format", "moireu-kept-1")
        self.manifest.setdefault("stages", {})
        self._hashes: dict[tuple[Path, int, int], str] = {}  # a kept file is checked several times per run

    def _sha256(self, f: Path) -> str:
        st = f.stat()
        k = (f, st.st_mtime_ns, st.st_size)
        if k not in self._hashes:
            self._hashes[k] = file_sha256(f)
        return self._hashes[k]

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.manifest["stages"].get(name)

    def check(self, name: str, key: str) -> str | None:
        """``None`` when the kept result of ``name`` is valid for ``key``, else why not."""
        e = self.entry(name)
        if e is None:
            return "not kept yet"
        if e.get("key") != key:
            return "kept with other settings or other HF states"
        for rel, sha in e.get("files", {}).items():
            f = self.root / rel
            if not f.is_file():
                return f"kept file {rel} is missing"
            if self._sha256(f) != sha:
                return f"kept file {rel} does not match its checksum"
        return None

    def restore(self, name: str, run_dir: Path) -> list[str]:
        """Copy the kept files of ``name`` into ``run_dir`` (where absent or different); their paths."""
        out = []
        for rel, sha in self.entry(name)["files"].items():
            dst = run_dir / rel
            if not (dst.is_file() and file_sha256(dst) == sha):
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(dst.name + ".restoring")
                shutil.copyfile(self.root / rel, tmp)
                os.replace(tmp, dst)
            out.append(rel)
        return out

    def keep(self, name: str, key: str, run_dir: Path, paths: tuple[str, ...], command: str,
             seconds: float) -> dict[str, Any]:
        """Copy the files under ``paths`` (relative to ``run_dir``; a folder: its plain files) into ROOT
        (each written atomically; large and scratch files skipped) and record them in the manifest."""
        from moireu.provenance import provenance, write_bytes_atomic, write_json_atomic

        files: dict[str, str] = {}
        left: list[str] = []
        for rel in paths:
            src = run_dir / rel
            cands = sorted(q for q in src.rglob("*") if q.is_file()) if src.is_dir() else [src] if src.is_file() else []
            for q in cands:
                r = q.relative_to(run_dir).as_posix()
                if q.name in KEEP_SKIP or q.name.endswith((".tmp", ".restoring")):
                    continue
                if q.stat().st_size > KEEP_MAX_BYTES:
                    left.append(f"{r} ({q.stat().st_size / 2**20:.1f} MB)")
                    continue
                data = q.read_bytes()
                write_bytes_atomic(self.root / r, data)
                files[r] = hashlib.sha256(data).hexdigest()
        e = {"key": key, "command": command, "files": files, "not_kept": left, "seconds": round(seconds, 1),
             "provenance": provenance()}
        self.manifest["stages"][name] = e
        write_json_atomic(self.path, self.manifest)
        return e


class Pipeline:
    """Stages of one run directory.

    Parameters
    ----------
    tag : the pipeline command (``demo``, ``paper``), named in the messages
    cfg : the resolved :class:`moireu.config.MoireuConfig`, saved to ``out`` (config.toml + provenance)
    out : run directory
    on_stage : called with the stage log after every stage (e.g. to keep a ``stages.json``)
    kept : folder of the kept results (:class:`Kept`); none: nothing is kept
    digest : what the stages' results depend on besides the config and the command (the HF states)
    """

    def __init__(self, tag: str, cfg: Any, out: Path, on_stage: Callable[[list[dict]], None] | None = None,
                 kept: Path | None = None, digest: str = "") -> None:
        from moireu.config import save_resolved

        self.kept = Kept(kept) if kept is not None else None
        self.digest = digest
        self.tag, self.cfg, self.out = tag, cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, self.out)
        #: every stage reads the run's own (complete, resolved) config file and nothing else
        self.conf = ["--preset", "none", "--config", str(self.out / "config.toml")]
        self.exe = [sys.executable, "-m", "moireu"]
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        self.log: list[dict] = []
        self.on_stage = on_stage
        self._keys: dict[str, str] | None = None  # RUN/.stage-keys.json (see _made_with)
        self.t0 = time.perf_counter()

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.t0) / 60.0

    def key(self, name: str, args: list[str], config: dict | None = None) -> str:
        """What the result of stage ``name`` depends on, hashed: its command (run directory as ``RUN``),
        the resolved config (or ``config``: the view of it the stage sees, e.g. the reference pipeline's,
        :func:`moireu.cli.paper.reference_view`) and the pipeline's digest. The code version is recorded,
        not keyed."""
        run = str(self.out)
        cmd = [a.replace(run, "RUN") for a in args]
        conf = self.cfg.to_dict() if config is None else config
        blob = json.dumps({"stage": name, "args": cmd, "config": conf, "digest": self.digest},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def done(self, name: str, marker: Path, args: list[str], config: dict | None = None) -> bool:
        """Whether the run directory holds the result of stage ``name`` (its marker), made with the stage's
        present key when the pipeline keeps results."""
        return marker.exists() and (self.kept is None or self._made_with(name) == self.key(name, args, config))

    def reusable(self, name: str, args: list[str], needs: tuple[str, ...] = (), config: dict | None = None) -> bool:
        """Whether stage ``name`` would be restored from the kept results (with the files ``needs``,
        relative to the run directory, among them or already in the run directory)."""
        if self.kept is None or self.kept.check(name, self.key(name, args, config)) is not None:
            return False
        have = set(self.kept.entry(name)["files"])
        return all(r in have or (self.out / r).exists() for r in needs)

    def stage(self, name: str, marker: Path, args: list[str], force: bool = False, stdout_to: Path | None = None,
              inputs: tuple[Path, ...] = (), keep: tuple[str, ...] = (), needs: tuple[str, ...] = (),
              config: dict | None = None) -> None:
        """Run ``moireu ARGS`` unless ``marker`` exists; stop the pipeline (same exit code) on failure.

        ``stdout_to``: keep the command's stdout (its ``--json`` document) in this file (atomically).
        ``inputs``: files the stage reads; the stage reruns when one is missing from an earlier run or
        newer than the marker (e.g. the analysis after a second model was trained).
        ``keep``: paths (relative to the run directory) kept as the stage's result when the pipeline
        keeps results; the stage is then restored from them instead of run when they are valid and hold
        ``needs`` (files a later stage reads). ``config``: the view of the config the stage's key is made
        of (default: the whole resolved config).
        """
        tag = self.tag
        stale = marker.exists() and any(not p.exists() or p.stat().st_mtime > marker.stat().st_mtime for p in inputs)
        if stale:
            info(f"[{tag}] {name}: inputs changed since {marker.name}, rerunning")
        entry: dict[str, Any] = {"stage": name, "command": "moireu " + " ".join(args)}
        kept = self.kept if keep else None
        key = self.key(name, args, config) if kept is not None else ""
        # a marker counts only for the settings it was made with (recorded when the pipeline keeps results):
        # else the kept result stands in, or the stage runs again
        trusted = kept is None or self._made_with(name) == key
        if marker.exists() and not force and not stale and trusted:
            info(f"[{tag}] {name}: done already ({marker}), skipping")
            if kept is not None and kept.check(name, key) is not None:
                kept.keep(name, key, self.out, keep, entry["command"], 0.0)
                info(f"[{tag}] {name}: kept in {kept.root}")
            self._record(entry | {"seconds": 0.0, "skipped": True})
            return
        if kept is not None and not force and not stale:
            why = kept.check(name, key)
            if why is None and self.reusable(name, args, needs, config):
                e = kept.entry(name)
                kept.restore(name, self.out)
                self._made_with(name, key)
                prov = e.get("provenance", {})
                info(f"[{tag}] {name}: reused from {kept.root} (made {prov.get('created', '?')} at commit "
                     f"{str(prov.get('git_commit', '?'))[:10]} in {e.get('seconds', 0):.0f} s)")
                self._record(entry | {"seconds": 0.0, "skipped": True, "reused": True,
                                      "made": prov.get("created"), "made_seconds": e.get("seconds")})
                return
            if why is not None and kept.entry(name) is not None:
                info(f"[{tag}] {name}: not reused ({why})")
        if marker.exists() and not trusted:
            info(f"[{tag}] {name}: {marker} was made with other settings (or its key was not recorded), rerunning")
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
        if kept is not None:
            self._made_with(name, key)
            e = kept.keep(name, key, self.out, keep, entry["command"], dt)
            info(f"[{tag}] {name}: kept {len(e['files'])} file(s) in {kept.root}"
                 + (f"; too large to keep: {', '.join(e['not_kept'])}" if e["not_kept"] else ""))

    def _made_with(self, name: str, key: str | None = None) -> str | None:
        """The key the run directory's result of stage ``name`` was made (or restored) with; with ``key``,
        record it (``RUN/.stage-keys.json``)."""
        from moireu.provenance import write_json_atomic

        path = self.out / ".stage-keys.json"
        if self._keys is None:  # read once: only this pipeline writes the file while it runs
            try:
                self._keys = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, json.JSONDecodeError):
                self._keys = {}
        if key is not None:
            self._keys[name] = key
            write_json_atomic(path, self._keys)
        return self._keys.get(name)

    def skip(self, name: str, why: str) -> None:
        """Record a stage that is not needed (e.g. the dataset when every later stage is reused)."""
        info(f"[{self.tag}] {name}: not needed ({why})")
        self._record({"stage": name, "command": "", "seconds": 0.0, "skipped": True, "not_needed": why})

    def _record(self, entry: dict) -> None:
        self.log.append(entry)
        if self.on_stage is not None:
            self.on_stage(self.log)
