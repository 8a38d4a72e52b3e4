"""FT-LDOS benchmark: finufft (type 1, rescaled) vs the reference-style direct sum, same inputs, same run.

Patch: TBG i = 7 (676 atoms per moiré cell) tiled over P × P cells (P = 13 → 114 244 atoms), weights
= the U = 0 tight-binding LDOS at the flat bands (Γ point), mean subtracted as in production.
Grid: 1003 × 1003 on the reference window (the reference code's grid).

The direct sum F(k) = Σ_i w_i exp(−i k·r_i) (NumPy, chunked over k, as the reference evaluates it)
costs N² · M complex exponentials; it is timed on a few k-rows and **extrapolated** to the full grid
(the full direct sum takes most of an hour here). finufft runs on the full grid. The accuracy is
the max |F_nufft − F_direct| over the directly computed rows relative to max |F_direct| there
(and to max |F| over the full grid).

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ftldos.py [--cells 13] [--n 1003] [--rows 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def bandwidth_gbs(nbytes: int = 256 << 20, repeat: int = 3) -> float:
    """Measured memory bandwidth (GB/s): best of ``repeat`` copies of a 256 MiB array (read + write)."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=13, help="patch of P×P moiré cells (i = 7)")
    ap.add_argument("--n", type=int, default=1003, help="k grid N×N")
    ap.add_argument("--rows", type=int, default=3, help="k-rows evaluated by the direct sum")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from moireu.lattice import build_tbg
    from moireu.stm import FTWindow, build_patch, ft_direct, ft_grid, ldos_from_spectrum
    from moireu.stm.ft import DEFAULT_EPS, default_threads

    t0 = time.perf_counter()
    model = build_tbg(7, 2.85, 6.0)
    e, v = np.linalg.eigh(model.hk(np.zeros(2)))
    n_orb = model.n_orb
    e0 = 0.5 * (e[n_orb // 2 - 1] + e[n_orb // 2])
    ldos = ldos_from_spectrum(e[None], v[None], np.ones(1), [e0], eta=0.005, kind="lorentzian")[0]
    p = build_patch(model.positions[:, :2], model.cell, ldos, cells=args.cells)
    xy, w = p.xy, p.values - p.values.mean()
    M = len(xy)
    win = FTWindow.reference()
    kx, ky = win.axes(args.n)
    print(f"setup {time.perf_counter() - t0:.1f} s: TBG i=7 patch {args.cells}×{args.cells} cells = {M} atoms, "
          f"{args.n}×{args.n} k-grid, finufft eps={DEFAULT_EPS:g}, threads={default_threads()}", file=sys.stderr)

    # finufft on the full grid (best of 3 after a warm-up that builds the FFTW plan cache)
    ft_grid(xy, w, args.n, win)
    t_nufft = np.inf
    for _ in range(3):
        t = time.perf_counter()
        F = ft_grid(xy, w, args.n, win)
        t_nufft = min(t_nufft, time.perf_counter() - t)

    # direct sum on a few rows: through a Bragg peak, through k_y = 0, and a seeded random row
    rng = np.random.default_rng(args.seed)
    bragg_row = int(np.argmin(np.abs(ky - 4 * np.pi / (np.sqrt(3) * 2.46))))
    rows = [bragg_row, args.n // 2] + list(rng.choice(args.n, size=max(0, args.rows - 2), replace=False))
    rows = [int(r) for r in sorted(set(rows))][: max(1, args.rows)]
    t = time.perf_counter()
    D = np.stack([ft_direct(xy, w, kx, ky[r:r + 1])[0] for r in rows])
    t_rows = time.perf_counter() - t
    t_direct = t_rows * args.n / len(rows)
    Fr = F[rows]
    err_rows = float(np.abs(Fr - D).max() / np.abs(D).max())
    err_grid = float(np.abs(Fr - D).max() / np.abs(F).max())

    # memory-bandwidth floor of the NUFFT: inputs read once, the 2N×2N oversampled complex grid
    # written by spreading and read+written by ~2 FFT passes (rows, columns), output N×N written
    bw = bandwidth_gbs()
    nf = 2 * args.n
    bytes_min = M * (2 * 8 + 16) + nf * nf * 16 * (1 + 2 * 2) + args.n ** 2 * 16
    t_floor = bytes_min / (bw * 1e9)
    n_exp = float(args.n) ** 2 * M

    print()
    print(f"FT-LDOS benchmark  ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__})")
    print(f"patch: {M} atoms (TBG i=7, {args.cells}×{args.cells} cells), grid {args.n}×{args.n} = {args.n ** 2} k-points")
    print()
    hdr = f"{'method':44s} {'time (s)':>12s} {'k-points':>12s} {'note':s}"
    print(hdr)
    print("-" * len(hdr))
    print(f"{'direct sum, NumPy chunked (reference style)':44s} {t_rows:12.3f} {len(rows) * args.n:12d} "
          f"measured on {len(rows)} rows {rows}")
    print(f"{'direct sum, full grid (EXTRAPOLATED)':44s} {t_direct:12.1f} {args.n ** 2:12d} "
          f"= {t_rows:.3f} s × {args.n}/{len(rows)} rows ({n_exp / t_direct / 1e6:.0f} M exp/s)")
    print(f"{'finufft type 1 (rescaled), full grid':44s} {t_nufft:12.4f} {args.n ** 2:12d} best of 3, eps={DEFAULT_EPS:g}")
    print(f"{'memory-bandwidth floor (NUFFT traffic)':44s} {t_floor:12.4f} {'':12s} "
          f"{bytes_min / 1e6:.0f} MB at a measured {bw:.1f} GB/s copy bandwidth")
    print()
    print(f"speed-up (extrapolated direct / finufft): {t_direct / t_nufft:,.0f}×   (target ≥ 1000×)")
    print(f"max relative difference on the direct rows: {err_rows:.2e} of max|F| on those rows, "
          f"{err_grid:.2e} of max|F| on the grid   (target ≤ 1e-6)")
    print(f"finufft time / bandwidth floor: {t_nufft / t_floor:.1f}×")
    ok = t_direct / t_nufft >= 1000 and err_rows <= 1e-6
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
