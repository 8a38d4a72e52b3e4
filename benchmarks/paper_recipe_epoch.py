"""Seconds per epoch of the reference recipe (``--recipe paper``) at the paper's size, side by side.

The paper preset (i = 9) gives 13 grid U × 5 biases × 8 acquisitions = 520 grid images of 256² px; the
paper split trains on 60 % (312) and validates on 20 % (104) every epoch. This script runs the real
training loop (:func:`moireu.ml.train.fit_ensemble`, one epoch, the paper recipe unchanged) on random
images of that size and count and prints, for ``cnn_paper`` and ``resnet18_paper``, the median seconds
of one epoch (training steps; the validation pass separately) for each torch thread count and with
the channels-last layout the loop uses vs the plain NCHW layout it used before.

Usage::

    .venv/bin/python benchmarks/paper_recipe_epoch.py [--threads 1 2] [--n-train 312] [--n-val 104]
        [--models cnn_paper resnet18_paper] [--epochs 2]

Run it on an idle machine: the figure is the recipe's wall time per epoch on these cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def epoch_seconds(model: str, n_train: int, n_val: int, size: int, epochs: int, channels_last: bool) -> tuple[float, float]:
    """(median training seconds of one epoch, seconds of one validation pass) of the paper recipe."""
    import moireu.ml.train as tr
    from moireu.config import TrainConfig
    from moireu.ml.data import StoreData

    rng = np.random.default_rng(0)

    def data(n: int) -> StoreData:
        return StoreData(rng.random((n, size, size), dtype=np.float32), rng.uniform(0, 6, n), np.arange(n), {})

    recipe = tr.resolve_recipe(TrainConfig(model=model, recipe="paper", epochs=epochs))
    saved = tr._on_device
    if not channels_last:
        tr._on_device = lambda m, dev: m.to(dev)
    try:
        _, info = tr.fit_ensemble(data(n_train), data(n_val), recipe, seed=0, progress=False, device="cpu")
    finally:
        tr._on_device = saved
    hist = info["members"][0]["history"]
    train = float(np.median([h["seconds"] for h in hist]))
    net = tr._build(recipe, (size, size))
    net = tr._on_device(net, torch.device("cpu")) if channels_last else net
    x = torch.from_numpy(data(n_val).images)[:, None]
    t0 = time.perf_counter()
    tr._predict_z(net, x, tr.Preprocess((size, size), 0, "none"))
    return train, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=["cnn_paper", "resnet18_paper"])
    ap.add_argument("--n-train", type=int, default=312)
    ap.add_argument("--n-val", type=int, default=104)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args(argv)
    print(f"paper recipe, {a.n_train} training + {a.n_val} validation images of {a.size}² px, batch 32, "
          f"median of {a.epochs} epoch(s), torch {torch.__version__}")
    print(f"{'model':<16}{'threads':>8}{'layout':>15}{'train s/epoch':>15}{'val pass s':>12}{'speed-up':>10}")
    for model in a.models:
        for th in a.threads:
            torch.set_num_threads(th)
            base = None
            for cl in (False, True):
                t, v = epoch_seconds(model, a.n_train, a.n_val, a.size, a.epochs, cl)
                base = base or t
                print(f"{model:<16}{th:>8}{'channels-last' if cl else 'NCHW':>15}{t:>15.1f}{v:>12.1f}"
                      f"{base / t:>9.2f}×", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
