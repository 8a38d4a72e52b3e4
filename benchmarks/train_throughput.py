"""Training throughput (images/second) of the moireu regressors on CPU (and GPU when present).

One training step = forward + MSE loss + backward + gradient clipping + Adam step on a batch of 32
single-channel images, the same work as one batch of ``moireu train``. Each configuration is warmed
up for 2 steps and then timed for at least ``--seconds`` (default 3 s) of steps.

Usage::

    .venv/bin/python benchmarks/train_throughput.py [--sizes 128 256] [--seconds 3] [--threads N]

Prints one table: model × image size, with the 64-px input the default ``ours`` recipe trains on
(area-downsampled) side by side with the full stored sizes the ``paper`` recipe trains on.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from moireu.ml import create_model

MODELS = [("fc", {"hidden": (256, 64)}), ("cnn", {"width": 16, "coord_channels": True}),
          ("cnn", {"width": 32}), ("resnet18", {"width": 64})]


def throughput(name: str, kw: dict, size: int, device: str, seconds: float, batch: int = 32) -> float:
    torch.manual_seed(0)
    if name == "fc":
        kw = kw | {"image_size": (size, size)}
    model = create_model(name, **kw).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randn(batch, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 2:
            return n * batch / dt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}; batch 32; "
          "images/second (higher is better)", file=sys.stderr)
    head = f"{'model':<28}" + "".join(f"{f'{d} {s}px':>14}" for d in devices for s in args.sizes)
    print(head)
    print("-" * len(head))
    for name, kw in MODELS:
        label = name + ("" if name == "fc" else f" (width {kw['width']})")
        cells = []
        for d in devices:
            for s in args.sizes:
                try:
                    cells.append(f"{throughput(name, dict(kw), s, d, args.seconds):>14.1f}")
                except RuntimeError as exc:  # e.g. out of memory
                    cells.append(f"{'error':>14}")
                    print(f"{label} {d} {s}px: {exc}", file=sys.stderr)
        print(f"{label:<28}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
