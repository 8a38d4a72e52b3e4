"""Dataset build throughput: HF solves (and images) per minute on 1 vs 2 dask workers.

Builds the same small dataset twice from scratch, once on a LocalCluster with one worker process and
once with two, and prints both side by side with the speed-up. Every run uses the real physics
(``moireu.hf`` + ``moireu.stm``) through :func:`moireu.data.build_dataset`; wall time includes the
cluster start, the per-worker HF-system build and the final store write.

Usage::

    .venv/bin/python benchmarks/dataset_throughput.py                # TBG i = 5 (364 atoms), 6 U
    .venv/bin/python benchmarks/dataset_throughput.py --index 7 --n-u 4 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def run(index: int, n_u: int, workers: int, images: int, root: Path) -> dict:
    from moireu.config import load_config
    from moireu.data import build_dataset, open_store

    us = ", ".join(f"{u:.2f}" for u in np.linspace(0.0, 6.0, n_u))
    cfg = load_config("demo", overrides=[f"lattice.index={index}", f"dataset.U_values=[{us}]", "dataset.heldout=0",
                                         "dataset.biases=[0.0]", f"dataset.n_offsets={images}"])
    out = root / f"w{workers}.zarr"
    t0 = time.perf_counter()
    rep = build_dataset(cfg, out, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    ds = open_store(out)
    it = ds["hf_iterations"].values[ds["variation"].values == 0]
    return {"workers": workers, "wall_s": wall, "solves": rep.solves_run, "images": rep.images_run,
            "solves_per_min": 60 * rep.solves_run / wall, "images_per_min": 60 * rep.images_run / wall,
            "median_iter": float(np.median(it)), "ok": rep.ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=int, default=5, help="TBG commensurate index i (default 5: 364 atoms)")
    ap.add_argument("--n-u", type=int, default=6, help="U values on 0…6 eV")
    ap.add_argument("--images", type=int, default=8, help="patch offsets per solve")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="moireu-bench-"))
    try:
        rows = [run(args.index, args.n_u, w, args.images, root) for w in args.workers]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_atoms = 4 * (3 * args.index ** 2 + 3 * args.index + 1)
    print(f"\nDataset build throughput — TBG i = {args.index} ({n_atoms} atoms), {args.n_u} U values, "
          f"{args.images} images per solve, {cores} cores, load avg {os.getloadavg()[0]:.1f}")
    print(f"{'workers':>8} {'wall (s)':>9} {'solves':>7} {'solves/min':>11} {'images/min':>11} "
          f"{'median iter':>12} {'speed-up':>9} {'ok':>4}")
    base = rows[0]["wall_s"]
    for r in rows:
        print(f"{r['workers']:8d} {r['wall_s']:9.1f} {r['solves']:7d} {r['solves_per_min']:11.2f} "
              f"{r['images_per_min']:11.1f} {r['median_iter']:12.1f} {base / r['wall_s']:9.2f} "
              f"{'yes' if r['ok'] else 'NO':>4}")


if __name__ == "__main__":
    main()
