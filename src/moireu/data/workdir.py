"""The work directory of a build: per-point results committed atomically, so a crash loses nothing.

Layout (a hidden sibling of the store, ``.<store name>.work/``)::

    manifest.json            config (JSON) and fingerprint of the build that owns this folder
    solves/<key>.json        solve record of a point: summary, attempts — its presence = solve done
    solves/<key>.hf          the HF result (whatever ``HFResult.save`` writes), for warm starts/images
    images/<key>.npz         every image of the point, its scan columns, the per-atom LDOS and the cell
                             — its presence = images done
    failed/<key>.json        last failure of a point (not a commit: a rerun tries it again)

Every file is written to a temporary name in the same folder and renamed (atomic on POSIX), and a
record is only written after the data it describes, so whatever a SIGKILL interrupts is simply
redone by the next run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.data.plan import ImageSpec, SolvePoint
from moireu.provenance import write_bytes_atomic, write_json_atomic


def work_dir_for(store: Path) -> Path:
    """The work directory that belongs to the store path ``store``."""
    store = Path(store)
    return store.with_name(f".{store.name}.work")


class WorkDir:
    """Atomic per-point commits of a build (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # paths -------------------------------------------------------------------------------------
    def create(self) -> "WorkDir":
        for sub in ("solves", "images", "failed"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return (self.root / "manifest.json").is_file()

    def result_path(self, p: SolvePoint, attempt: int | None = None) -> Path:
        suffix = ".hf" if attempt is None else f".a{attempt}.hf"
        return self.root / "solves" / f"{p.key}{suffix}"

    def record_path(self, p: SolvePoint) -> Path:
        return self.root / "solves" / f"{p.key}.json"

    def images_path(self, p: SolvePoint) -> Path:
        return self.root / "images" / f"{p.key}.npz"

    def failed_path(self, p: SolvePoint, stage: str) -> Path:
        return self.root / "failed" / f"{p.key}.{stage}.json"

    # manifest ----------------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.create()
        write_json_atomic(self.root / "manifest.json", manifest)

    def manifest(self) -> dict[str, Any] | None:
        path = self.root / "manifest.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    # solves ------------------------------------------------------------------------------------
    def solve_record(self, p: SolvePoint) -> dict[str, Any] | None:
        path = self.record_path(p)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def commit_solve(self, p: SolvePoint, record: dict[str, Any]) -> None:
        write_json_atomic(self.record_path(p), record)
        self.failed_path(p, "solve").unlink(missing_ok=True)

    # images ------------------------------------------------------------------------------------
    def images_done(self, p: SolvePoint) -> bool:
        return self.images_path(p).is_file()

    def commit_images(self, p: SolvePoint, specs: Sequence[ImageSpec], rendered: Any) -> None:
        imgs = np.asarray(rendered.images, np.float32)
        if imgs.ndim != 3 or imgs.shape[0] != len(specs):
            raise ValueError(f"backend returned images of shape {imgs.shape} for {len(specs)} specs")
        if not np.all(np.isfinite(imgs)):
            raise ValueError(f"backend returned non-finite image values for {p.key}")
        buf = io.BytesIO()
        extra: dict[str, np.ndarray] = {}
        for k, v in (getattr(rendered, "params", None) or {}).items():  # per-image scan columns
            v = np.asarray(v, float)
            if v.shape != (len(specs),):
                raise ValueError(f"backend returned {k} of shape {v.shape} for {len(specs)} specs")
            extra[f"param__{k}"] = v
        if getattr(rendered, "ldos", None) is not None:  # per-atom LDOS of the point (store contract D)
            extra["ldos"] = np.asarray(rendered.ldos, float)
            extra["ldos_bias"] = np.asarray(rendered.biases, float)
        for k, v in (getattr(rendered, "geometry", None) or {}).items():
            extra[f"geom__{k}"] = np.asarray(v)
        np.savez(buf, images=imgs, kx=np.asarray(rendered.kx, float), ky=np.asarray(rendered.ky, float),
                 bias=np.array([s.bias for s in specs], float),
                 variation=np.array([s.variation.id for s in specs], np.int32),
                 transform=np.array(json.dumps(rendered.transform, sort_keys=True)),
                 rendering=np.array(json.dumps(getattr(rendered, "info", {}) or {}, sort_keys=True)), **extra)
        write_bytes_atomic(self.images_path(p), buf.getvalue())
        self.failed_path(p, "render").unlink(missing_ok=True)

    def load_images(self, p: SolvePoint) -> dict[str, Any]:
        with np.load(self.images_path(p)) as z:
            out = {k: z[k] for k in z.files}
        out["transform"] = json.loads(str(out["transform"]))
        out["rendering"] = json.loads(str(out["rendering"])) if "rendering" in out else {}
        out["params"] = {k[len("param__"):]: out.pop(k) for k in list(out) if k.startswith("param__")}
        out["geometry"] = {k[len("geom__"):]: out.pop(k) for k in list(out) if k.startswith("geom__")}
        return out

    # failures ----------------------------------------------------------------------------------
    def record_failure(self, p: SolvePoint, stage: str, info: dict[str, Any]) -> None:
        write_json_atomic(self.failed_path(p, stage), info)

    def failures(self) -> list[dict[str, Any]]:
        d = self.root / "failed"
        if not d.is_dir():
            return []
        return [json.loads(f.read_text()) for f in sorted(d.glob("*.json"))]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def clean_temporaries(self) -> None:
        """Remove half-written temporaries left by a killed run (names start with a dot)."""
        for sub in ("solves", "images", "failed"):
            d = self.root / sub
            if not d.is_dir():
                continue
            for f in d.glob(".*"):
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)
