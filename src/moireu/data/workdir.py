"""The work directory of a build: per-point results committed atomically, so a crash loses nothing.

Layout (a hidden sibling of the store, ``.<store name>.work/``)::

    manifest.json                 config, data fingerprint and build token of the owning build
    solves/<key>.<token>.json     solve record of a point: summary, attempts — its presence = solve done
    solves/<key>.<token>.hf       the HF result (whatever ``HFResult.save`` writes), for warm starts/images
    solves/<key>.<token>.<dir>.*  the point re-solved in the U sweep ``dir`` ∈ {up, down} (result + record)
    images/<key>.<token>.npz      every image of the point + per-image columns + per-atom LDOS — presence = done
    failed/<key>.<token>.<stage>.json   last failure of a point (not a commit: a rerun tries it again)

Every file is written to a temporary name in the same folder and renamed (atomic on POSIX), and a
record is only written after the data it describes, so whatever a SIGKILL interrupts is simply
redone by the next run.

Build token and fingerprint
---------------------------
The *token* names one generation of the work directory: it is drawn when the directory is created
and kept by every resume of it. Every file of a point carries it in its name and every record also
carries the config's data fingerprint (:func:`moireu.data.store.data_fingerprint`). A task checks
that the manifest still names its token before it writes anything, and readers ignore records of
another token or fingerprint (and the build removes them). So the tasks of a killed client that keep
running on an external cluster can never put their results into a later build — not even into a
new work directory created after the old one was deleted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.data import schema as sc
from moireu.data.plan import ImageSpec, SolvePoint
from moireu.provenance import write_bytes_atomic, write_json_atomic

_SUBDIRS = ("solves", "images", "failed")


class StaleTask(RuntimeError):
    """The work directory no longer belongs to the build that started this task (nothing was written)."""


def work_dir_for(store: Path) -> Path:
    """The work directory that belongs to the store path ``store``."""
    store = Path(store)
    return store.with_name(f".{store.name}.work")


def new_token() -> str:
    """A fresh build token (random, 12 hex digits)."""
    return uuid.uuid4().hex[:12]


class WorkDir:
    """Atomic per-point commits of one build generation (see the module docstring).

    Parameters
    ----------
    root : the work directory.
    token, fingerprint : the build token and data fingerprint every record must carry.
    """

    def __init__(self, root: str | os.PathLike, token: str, fingerprint: str) -> None:
        self.root = Path(root)
        self.token = token
        self.fingerprint = fingerprint

    # paths -------------------------------------------------------------------------------------
    def create(self) -> "WorkDir":
        for sub in _SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return (self.root / "manifest.json").is_file()

    def result_path(self, p: SolvePoint, attempt: int | None = None) -> Path:
        suffix = ".hf" if attempt is None else f".a{attempt}.hf"
        return self.root / "solves" / f"{p.key}.{self.token}{suffix}"

    def record_path(self, p: SolvePoint) -> Path:
        return self.root / "solves" / f"{p.key}.{self.token}.json"

    def sweep_result_path(self, p: SolvePoint, direction: str) -> Path:
        return self.root / "solves" / f"{p.key}.{self.token}.{direction}.hf"

    def sweep_record_path(self, p: SolvePoint, direction: str) -> Path:
        return self.root / "solves" / f"{p.key}.{self.token}.{direction}.json"

    def images_path(self, p: SolvePoint) -> Path:
        return self.root / "images" / f"{p.key}.{self.token}.npz"

    def failed_path(self, p: SolvePoint, stage: str) -> Path:
        return self.root / "failed" / f"{p.key}.{self.token}.{stage}.json"

    # manifest / ownership ----------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.create()
        write_json_atomic(self.root / "manifest.json",
                          manifest | {"token": self.token, "fingerprint": self.fingerprint})

    def manifest(self) -> dict[str, Any] | None:
        return read_manifest(self.root)

    def owned(self) -> bool:
        """Whether the manifest names this build's token and fingerprint (a task may write)."""
        man = self.manifest()
        return man is not None and man.get("token") == self.token and man.get("fingerprint") == self.fingerprint

    def check_owned(self) -> None:
        if not self.owned():
            raise StaleTask(f"the work directory {str(self.root)!r} belongs to another build now")

    def has_records(self) -> bool:
        """Whether any committed solve or image of this token exists."""
        return any(any((self.root / sub).glob(f"*.{self.token}.*")) for sub in ("solves", "images"))

    def _mine(self, rec: dict[str, Any] | None) -> dict[str, Any] | None:
        if rec is None or rec.get("token") != self.token or rec.get("fingerprint") != self.fingerprint:
            return None
        return rec

    def _write_json(self, path: Path, obj: dict[str, Any]) -> None:
        self.check_owned()
        write_json_atomic(path, obj | {"token": self.token, "fingerprint": self.fingerprint}, create_parent=False)

    # solves ------------------------------------------------------------------------------------
    def solve_record(self, p: SolvePoint) -> dict[str, Any] | None:
        return self._mine(_read_json(self.record_path(p)))

    def commit_solve(self, p: SolvePoint, record: dict[str, Any]) -> None:
        self._write_json(self.record_path(p), record)
        self.failed_path(p, "solve").unlink(missing_ok=True)

    def sweep_record(self, p: SolvePoint, direction: str) -> dict[str, Any] | None:
        """The record of ``p``'s step in the U sweep ``direction`` (``None``: not done)."""
        return self._mine(_read_json(self.sweep_record_path(p, direction)))

    def commit_sweep(self, p: SolvePoint, direction: str, record: dict[str, Any]) -> None:
        self._write_json(self.sweep_record_path(p, direction), record)

    # images ------------------------------------------------------------------------------------
    def images_done(self, p: SolvePoint) -> bool:
        path = self.images_path(p)
        return path.is_file() and self.solve_record(p) is not None

    def commit_images(self, p: SolvePoint, specs: Sequence[ImageSpec], rendered: Any) -> None:
        """Check and commit the images of ``p`` with their per-image columns and per-atom LDOS.

        ``rendered`` is a :class:`moireu.data.tasks.Rendered`: ``images``, ``kx``, ``ky``, ``transform``,
        ``info``; the per-image acquisition ``params`` (schema ``scan`` columns, contract A) or, from a
        backend without them, the legacy ``offset_x``/``offset_y``; optionally ``ldos`` (n_bias, N) with
        ``geometry`` (``atom_xyz``, ``atom_layer``, ``atom_sublattice``, ``cell``; contract D).
        """
        imgs = np.asarray(rendered.images, np.float32)
        n = len(specs)
        if imgs.ndim != 3 or imgs.shape[0] != n:
            raise ValueError(f"backend returned images of shape {imgs.shape} for {n} specs")
        if not np.all(np.isfinite(imgs)):
            raise ValueError(f"backend returned non-finite image values for {p.key}")
        arrays: dict[str, np.ndarray] = {
            "images": imgs, "kx": np.asarray(rendered.kx, float), "ky": np.asarray(rendered.ky, float),
            "bias": np.array([s.bias for s in specs], float),
            "variation": np.array([s.variation.id for s in specs], np.int32)}
        arrays |= _per_image_columns(rendered, specs)
        ldos = getattr(rendered, "ldos", None)
        if ldos is not None:
            ldos = np.asarray(ldos, float)
            levels = np.array(sorted({s.bias for s in specs}), float)
            given = getattr(rendered, "biases", None)
            if given is not None and (np.shape(given) != levels.shape or not np.allclose(given, levels)):
                raise ValueError(f"backend returned LDOS rows for biases {list(np.ravel(given))}, expected the "
                                 f"sorted image biases {levels.tolist()}")
            geom = getattr(rendered, "geometry", None) or {}
            if ldos.ndim != 2 or ldos.shape[0] != len(levels) or not np.all(np.isfinite(ldos)):
                raise ValueError(f"backend returned an LDOS of shape {ldos.shape} for {len(levels)} bias levels "
                                 f"at {p.key} (must be finite, (n_bias, n_atom))")
            missing = [g for g in sc.LDOS_GEOMETRY if g not in geom]
            if missing:
                raise ValueError(f"backend returned an LDOS without the geometry {missing} (contract D)")
            arrays |= {"ldos": ldos, "bias_level": levels} | {f"geometry_{g}": np.asarray(geom[g]) for g in
                                                              sc.LDOS_GEOMETRY}
        meta = {"transform": rendered.transform, "rendering": getattr(rendered, "info", {}) or {},
                "token": self.token, "fingerprint": self.fingerprint}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self.check_owned()
        write_bytes_atomic(self.images_path(p), buf.getvalue(), create_parent=False)
        self.failed_path(p, "render").unlink(missing_ok=True)

    def load_images(self, p: SolvePoint) -> dict[str, Any] | None:
        """The committed images of ``p`` (``None`` if absent or of another token/fingerprint)."""
        try:
            with np.load(self.images_path(p)) as z:
                out = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None
        meta = json.loads(str(out.pop("meta")))
        if self._mine(meta) is None:
            return None
        out["transform"], out["rendering"] = meta["transform"], meta["rendering"]
        out["geometry"] = {g: out.pop(f"geometry_{g}") for g in sc.LDOS_GEOMETRY if f"geometry_{g}" in out}
        return out

    def committed_points(self) -> list[SolvePoint]:
        """Points whose solve record and images of this token exist."""
        out = []
        for f in sorted((self.root / "images").glob(f"*.{self.token}.npz")):
            key = f.name[: -len(f".{self.token}.npz")]
            rec = _read_json(self.root / "solves" / f"{key}.{self.token}.json")
            if self._mine(rec) is not None:
                out.append(SolvePoint(rec["split"], float(rec["U"]), float(rec["filling"])))
        return out

    # failures ----------------------------------------------------------------------------------
    def record_failure(self, p: SolvePoint, stage: str, info: dict[str, Any]) -> None:
        self._write_json(self.failed_path(p, stage), info)

    def failures(self) -> list[dict[str, Any]]:
        d = self.root / "failed"
        if not d.is_dir():
            return []
        recs = [self._mine(_read_json(f)) for f in sorted(d.glob(f"*.{self.token}.*.json"))]
        return [r for r in recs if r is not None]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def clean(self) -> int:
        """Remove half-written temporaries and every file of another token; return how many went."""
        n = 0
        for sub in _SUBDIRS:
            d = self.root / sub
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if f.name.startswith(".") or f".{self.token}." not in f.name:
                    n += 1
                    if f.is_dir() and not f.is_symlink():
                        shutil.rmtree(f, ignore_errors=True)
                    else:
                        f.unlink(missing_ok=True)
        return n


def read_manifest(root: Path) -> dict[str, Any] | None:
    return _read_json(Path(root) / "manifest.json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _per_image_columns(rendered: Any, specs: Sequence[ImageSpec]) -> dict[str, np.ndarray]:
    """The schema's per-image columns from ``rendered.params`` (contract A)."""
    n = len(specs)
    params = getattr(rendered, "params", None)
    out: dict[str, np.ndarray] = {}
    if params:
        for k, v in params.items():
            name = k if k in sc.SCAN_COLUMNS else f"scan_{k}"
            if name not in sc.SCAN_COLUMNS:
                raise ValueError(f"backend returned an unknown per-image column {k!r}; "
                                 f"the store schema has {', '.join(sc.SCAN_COLUMNS)}")
            out[name] = np.asarray(v, float).reshape(-1)
    bad = [k for k, v in out.items() if v.shape != (n,)]
    if bad:
        raise ValueError(f"per-image columns {bad} do not have one value per image ({n})")
    return out
