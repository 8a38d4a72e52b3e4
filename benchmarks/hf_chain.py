"""A warm paper-preset U chain (HF solve + LDOS + FT-LDOS images) in units of one i = 9 eigensolve.

The chain is what one dataset worker does for one warm-start chain of the paper preset: U = 3.0,
3.5, 4.0 eV (ν = 0, kT = 1 meV, 3 × 3 HF mesh), each point warm-started from the previous one
(``moireu.hf.driver.sweep_U``; the first from a converged U = 2.5 eV state, ``--start``), then
rendered: per-atom LDOS at the bias 0 (``moireu.stm.ldos_at``, 4 × 4 mesh, η = 4 meV) and two
FT-LDOS crops of 256 × 256 px (``moireu.stm.ftldos``). One worker, one process per code version.

Unit: the **eigensolve floor** — one full ``scipy.linalg.eigh(H, driver="evr")`` (values and
vectors) of the 1084 × 1084 complex Bloch Hamiltonian, timed in the same process before and after
the chain (median of 6), so machine load cancels to first order in the ratio; the two versions
run side by side, one process each, under the same load.

"before" is the code at the branch point of the HF rebuild (``--before-src``, e.g. a ``git archive``
of that commit), "after" this checkout. Both build the same Hamiltonian: the before process is given
the derived a_cc = a/√3 of the new ``moireu.constants`` (it had the literal 1.42 Å), so both accept
the same start state (``--start``, an ``HFResult`` of the paper preset at U = 2.5 eV).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/hf_chain.py --start U2.5.nc --before-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def worker(src: str, start: str, U: list[float], crops: int, out: str, overrides: list[str]) -> None:
    sys.path.insert(0, src)
    import moireu.constants as C

    C.A_CC = C.A_LAT / math.sqrt(3.0)  # the same Hamiltonian for both versions (set before the lattice import)
    import numpy as np
    import scipy.linalg as sl

    from moireu.config import load_config
    from moireu.hf import HFResult
    from moireu.hf.driver import solve_kwargs, sweep_U, system_from_config
    from moireu.stm import ImageTransform, ftldos, ldos_at, patch_points

    cfg = load_config("paper", None, overrides)
    system = system_from_config(cfg)
    H = system.model.hk(system.k_frac[1])

    def floor(n: int) -> list[float]:
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            sl.eigh(H.copy(), driver="evr", overwrite_a=True, check_finite=False)
            ts.append(time.perf_counter() - t)
        return ts

    floors = floor(3)
    first = HFResult.load(start, system=system)
    st = cfg.stm
    cell = np.asarray(system.model.cell, float)
    transform = ImageTransform.from_config(st, moire_period=float(np.linalg.norm(cell[0])))
    rows: list[dict] = []
    clock = [time.perf_counter()]

    def render(res) -> tuple[float, float]:
        t = time.perf_counter()
        ldos = np.asarray(ldos_at(system, res, biases=[0.0], eta=st.eta, kind=st.broadening, kmesh=st.kmesh,
                                  allow_unconverged=True))
        t_ldos = time.perf_counter() - t
        t = time.perf_counter()
        for c in range(crops):
            off = (0.37 * c) * cell[0] + (0.21 * c) * cell[1]
            xy, w = patch_points(system.model.positions[:, :2], cell, ldos[0], cells=st.patch_cells,
                                 offset=(float(off[0]), float(off[1])))
            ftldos(xy, w, transform=transform)
        return t_ldos, time.perf_counter() - t

    def on_point(u: float, res) -> None:
        solve_s = time.perf_counter() - clock[0]
        t_ldos, t_img = render(res)
        rows.append({"U": res.U, "converged": bool(res.converged), "iterations": int(res.iterations),
                     "solve_s": solve_s, "ldos_s": t_ldos, "images_s": t_img,
                     "max_moment": res.max_moment, "fermi_level": res.fermi_level})
        # partial results after every point (a long run can be read before it ends)
        Path(out).with_suffix(".partial.json").write_text(json.dumps({"src": src, "floors": floors, "points": rows}))
        clock[0] = time.perf_counter()

    kw = solve_kwargs(cfg)
    kw.pop("config")
    t0 = clock[0] = time.perf_counter()
    sweep_U(system, U, kw, on_point=on_point, start=first)
    total = time.perf_counter() - t0
    floors += floor(3)
    doc = {"src": src, "floor_s": float(np.median(floors)), "floors": floors, "total_s": total, "points": rows}
    Path(out).write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", required=True, help="HFResult of the paper preset at U = 2.5 eV (chain start)")
    ap.add_argument("--before-src", default=None, help="src/ of the code before the rebuild (omit: after only)")
    ap.add_argument("--U", default="3.0,3.5,4.0")
    ap.add_argument("--crops", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override of the paper preset (smoke tests)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    U = [float(x) for x in a.U.split(",")]
    if a.worker:
        worker(a.worker, a.start, U, a.crops, a.out, a.set)
        return
    versions = ([("before", a.before_src)] if a.before_src else []) + [("after", str(HERE / "src"))]
    # the versions run side by side (one process each), so both see the same machine load; each
    # measures its own eigensolve floor throughout its run
    procs = {}
    for name, src in versions:
        out = Path(f"/tmp/hf_chain_{name}.json")
        out.unlink(missing_ok=True)
        procs[name] = (subprocess.Popen([sys.executable, __file__, "--worker", src, "--start", a.start, "--U", a.U,
                                         "--crops", str(a.crops), "--out", str(out)]
                                        + [x for o in a.set for x in ("--set", o)]), out)
    docs = {}
    for name, (proc, out) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"the {name} worker failed (exit {proc.returncode})")
        docs[name] = json.loads(out.read_text())
    print(f"{'version':>7} {'U':>4} {'conv':>5} {'iter':>5} {'solve s':>8} {'ldos s':>7} {'img s':>6} "
          f"{'units':>7}")
    for name, d in docs.items():
        f = d["floor_s"]
        for r in d["points"]:
            cost = r["solve_s"] + r["ldos_s"] + r["images_s"]
            print(f"{name:>7} {r['U']:4.1f} {str(r['converged']):>5} {r['iterations']:5d} {r['solve_s']:8.1f} "
                  f"{r['ldos_s']:7.1f} {r['images_s']:6.1f} {cost / f:7.1f}")
        print(f"{name:>7} total {d['total_s']:.1f} s = {d['total_s'] / f:.1f} eigensolves "
              f"(floor {f:.3f} s, runs {', '.join(f'{x:.3f}' for x in d['floors'])})")
    if "before" in docs:
        ub, ua = (docs[n]["total_s"] / docs[n]["floor_s"] for n in ("before", "after"))
        print(f"after / before = {ua / ub:.3f} in eigensolve units (bar ≤ 0.333: {'PASS' if ua / ub <= 1 / 3 else 'FAIL'})")


if __name__ == "__main__":
    main()
