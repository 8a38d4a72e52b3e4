"""Same output before and after a refactor: a small demo-preset chain run on two source trees, compared.

For each source tree (``--src DIR``, the ``src`` folder of a checkout, e.g. from ``git worktree add``) the
chain runs in a child process with that tree first on ``PYTHONPATH``, one BLAS / torch thread, and the
same arguments:

1. ``moireu dataset build`` — the demo preset at TBG i = 1 (HF solved, not rendered from the shipped
   states: the tiny lattice is not theirs), 4 grid U + 2 held-out U, 5 acquisitions, 16² images;
2. ``moireu train`` — the ``cnn``, 2 epochs, an ensemble of 2;
3. ``moireu evaluate`` on the test and the held-out split;
4. ``moireu analyze`` of the store with the trained run (similarity, PCA, baselines, attributions, crossover).

It then prints, per tree, the SHA-256 of the store's images, labels and per-atom LDOS, of the trained
weights, the evaluation numbers (MAE, RMSE, bias, interval width, coverage) and of ``analysis.json`` (less
its provenance and paths), and for the later trees
on whether each equals the first's (exit 1 when one does not). The HF solves make it take 1–3 minutes
per tree on one core.

Usage::

    git worktree add --detach /tmp/before <commit>
    .venv/bin/python benchmarks/same_output.py --src /tmp/before/src --src src
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = ["lattice.index=1", "dataset.U_values=[0.0, 2.0, 4.0, 6.0]", "dataset.heldout=2", "dataset.n_offsets=5",
            "dataset.biases=[0.0]", "stm.n_pixels=16", "stm.map_pixels=128", "stm.kmesh=[2, 2]", "hf.kmesh=[2, 2]",
            "train.epochs=2", "train.ensemble=2", "train.input_size=0", "train.threads=1", "analysis.n_bootstrap=5",
            "analysis.attribution_per_u=2", "analysis.baseline_components=[2]", "analysis.pca_components=2",
            "analysis.pca_max_components=4"]
EVAL_KEYS = ("n", "mae", "rmse", "bias", "mean_interval_width", "coverage90")


def _sha(*arrays) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _digest_store(path: Path) -> dict:
    import xarray as xr

    ds = xr.open_zarr(path, consolidated=None)
    out = {"n_samples": int(ds.sizes["sample"]), "images": _sha(ds["image"].values),
           "labels": _sha(ds["U"].values.astype("float64"))}
    if "ldos" in ds.variables:
        out["ldos"] = _sha(ds["ldos"].values)
    return out


def _digest_weights(run: Path) -> str:
    import torch

    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    states = ck.get("members") or ck.get("ensemble") or [ck.get("model_state") or ck.get("state_dict") or ck]
    arrays = []
    for st in states if isinstance(states, list) else [states]:
        st = st.get("model_state", st) if isinstance(st, dict) else st
        for k in sorted(st):
            v = st[k]
            if hasattr(v, "detach"):
                arrays.append(v.detach().cpu().numpy())
    return _sha(*arrays)


def run_chain(src: Path, work: Path) -> dict:
    """The chain of the module docstring with the package of ``src``; returns the digests."""
    env = os.environ | {"PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                        "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    conf = ["--preset", "demo"] + [a for s in SETTINGS for a in ("--set", s)]
    store, run = work / "dataset.zarr", work / "train_cnn"

    def moireu(*args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "moireu", *args], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"moireu {' '.join(args)} failed with {src}:\n{r.stderr[-3000:]}")

    moireu("dataset", "build", *conf, "--out", str(store), "--workers", "1", "--no-progress")
    moireu("train", str(store), "--model", "cnn", *conf, "--out", str(run), "--quiet")
    res = {"store": _digest_store(store), "weights": _digest_weights(run)}
    for split in ("test", "heldout"):
        moireu("evaluate", str(run), str(store), "--split", split)
        ev = json.loads((run / f"eval_{split}.json").read_text())
        res[f"eval_{split}"] = {k: ev.get(k) for k in EVAL_KEYS}
    moireu("analyze", "--data", str(store), "--out", str(work / "analysis"), *conf, "--runs", str(run))
    an = json.loads((work / "analysis" / "analysis.json").read_text())
    an.pop("provenance", None)
    an["store"].pop("git_commit", None)
    for m in an.get("models", []):
        m.pop("run_dir", None)
    res["analysis"] = hashlib.sha256(json.dumps(an, sort_keys=True).encode()).hexdigest()[:16]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", action="append", required=True, type=Path, help="a source tree (repeat: 2)")
    args = ap.parse_args()
    results = []
    for src in args.src:
        with tempfile.TemporaryDirectory(prefix="same-output-") as tmp:
            results.append(run_chain(src, Path(tmp)))
        print(f"{src}: {json.dumps(results[-1], sort_keys=True)}", flush=True)
    same = all(r == results[0] for r in results[1:])
    for r in results[1:]:
        for k in results[0]:
            print(f"  {k}: {'same' if r.get(k) == results[0][k] else 'DIFFERENT'}")
    print("same output" if same else "outputs differ")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
