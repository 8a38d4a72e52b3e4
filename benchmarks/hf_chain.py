"""A warm paper-preset U chain (HF solve + LDOS + FT-LDOS images) in units of one i = 9 eigensolve.

The chain is what one dataset worker does for one warm-start chain of the paper preset: U = 3.0,
3.5, 4.0 eV (ν = 0, kT = 1 meV, 3 × 3 HF mesh), each point warm-started from the previous one
(``moireu.hf.driver.sweep_U``; the first from a converged U = 2.5 eV state, ``--start``), then
rendered: per-atom LDOS at the bias 0 (``moireu.stm.ldos_at``, 4 × 4 mesh, η = 4 meV) and two
FT-LDOS crops of 256 × 256 px (``moireu.stm.ftldos``). One worker, one process per code version.

Unit: the **eigensolve floor** — one full ``scipy.linalg.eigh(H, driver="evr")`` (values and
vectors) of the 1084 × 1084 complex Bloch Hamiltonian, timed in the same process three times before
the chain and three times after every point; each point's cost is divided by the median of the
floors around it (the load of a shared machine drifts), so machine load cancels to first order; the two versions
run side by side, one process each, under the same load (``--serial``: one after the other, for a
machine where only one heavy process may run; the load average at the start and end of each run
is printed with it).

On a shared machine use ``OMP_NUM_THREADS=1``: OpenBLAS with 2 threads on 2 busy cores was measured
20× slower per eigensolve than with 1 thread (41 s vs 1.8 s for one 1084² complex ``eigh``).

"before" is the code at the branch point of the HF rebuild (``--before-src``, e.g. a ``git archive``
of that commit), "after" this checkout. Both build the same Hamiltonian: the before process is given
the derived a_cc = a/√3 of the new ``moireu.constants`` (it had the literal 1.42 Å), so both accept
the same start state (``--start``, an ``HFResult`` of the paper preset at U = 2.5 eV).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hf_chain.py --start U2.5.nc --before-src /tmp/before/src --serial
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def worker(src: str, start: str, U: list[float], crops: int, out: str, overrides: list[str],
           options: dict | None = None) -> None:
    sys.path.insert(0, src)
    import moireu.constants as C

    C.A_CC = C.A_LAT / math.sqrt(3.0)  # the same Hamiltonian for both versions (set before the lattice import)
    import numpy as np
    import scipy.linalg as sl

    from moireu.config import load_config
    from moireu.hf import HFResult
    from moireu.hf.driver import solve_kwargs, sweep_U, system_from_config
    from moireu.stm import ImageTransform, ftldos, ldos_at, patch_points

    options = options or {}
    cfg = load_config("paper", None, overrides)
    system = system_from_config(cfg)
    if options.get("no_symmetry") and getattr(system, "c3", None) is not None:
        system.c3 = None  # candidate measurements: the C₃ reduction off
    ldos_kw = {"solver": options["ldos_solver"]} if options.get("ldos_solver") else {}
    H = system.model.hk(system.k_frac[1])

    def floor(n: int) -> list[float]:
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            sl.eigh(H.copy(), driver="evr", overwrite_a=True, check_finite=False)
            ts.append(time.perf_counter() - t)
        return ts

    load0 = os.getloadavg()[0]
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
                                  allow_unconverged=True, **ldos_kw))
        t_ldos = time.perf_counter() - t
        t = time.perf_counter()
        for c in range(crops):
            off = (0.37 * c) * cell[0] + (0.21 * c) * cell[1]
            xy, w = patch_points(system.model.positions[:, :2], cell, ldos[0], cells=st.patch_cells,
                                 offset=(float(off[0]), float(off[1])))
            ftldos(xy, w, transform=transform)
        return t_ldos, time.perf_counter() - t

    last_floor = [floors[-3:]]

    def on_point(u: float, res) -> None:
        solve_s = time.perf_counter() - clock[0]
        t_ldos, t_img = render(res)
        here = floor(3)  # the floor around this point: the load of a shared machine drifts
        floors.extend(here)
        point_floor = float(np.median(last_floor[0] + here))
        last_floor[0] = here
        rows.append({"U": res.U, "converged": bool(res.converged), "iterations": int(res.iterations),
                     "solve_s": solve_s, "ldos_s": t_ldos, "images_s": t_img, "floor_s": point_floor,
                     "max_moment": res.max_moment, "fermi_level": res.fermi_level,
                     "residuals": [float(x) for x in res.residual_history]})
        # partial results after every point (a long run can be read before it ends)
        Path(out).with_suffix(".partial.json").write_text(json.dumps({"src": src, "floors": floors, "points": rows}))
        clock[0] = time.perf_counter()

    kw = solve_kwargs(cfg)
    kw.pop("config")
    clock[0] = time.perf_counter()
    sweep_U(system, U, kw, on_point=on_point, start=first)
    total = sum(r["solve_s"] + r["ldos_s"] + r["images_s"] for r in rows)  # without the floor timings
    c3 = getattr(system, "c3", None)
    doc = {"src": src, "options": options, "c3_k_points": None if c3 is None else len(c3.reps),
           "floor_s": float(np.median(floors)), "floors": floors, "total_s": total, "points": rows,
           "units": sum((r["solve_s"] + r["ldos_s"] + r["images_s"]) / r["floor_s"] for r in rows),
           "load": [load0, os.getloadavg()[0]]}
    Path(out).write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", required=True, help="HFResult of the paper preset at U = 2.5 eV (chain start)")
    ap.add_argument("--before-src", default=None, help="src/ of the code before the rebuild (omit: after only)")
    ap.add_argument("--U", default="3.0,3.5,4.0")
    ap.add_argument("--crops", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override of the paper preset (smoke tests)")
    ap.add_argument("--serial", action="store_true", help="run the versions one after the other (one heavy process)")
    ap.add_argument("--name", default="after", help="name of this checkout's run (its JSON: /tmp/hf_chain_NAME.json)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=SRC",
                    help="one more version to run (e.g. a candidate's checkout), after 'before', before 'after'")
    ap.add_argument("--reuse", action="append", default=[], metavar="NAME",
                    help="take version NAME from /tmp/hf_chain_NAME.json of an earlier run instead of running it")
    ap.add_argument("--options", default="{}", help="JSON options of this checkout's run (candidate "
                    "measurements): {\"no_symmetry\": true, \"ldos_solver\": \"eigh\"}")
    ap.add_argument("--no-after", action="store_true", help="skip this checkout (e.g. to run only --also versions)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    U = [float(x) for x in a.U.split(",")]
    if a.worker:
        worker(a.worker, a.start, U, a.crops, a.out, a.set, json.loads(a.options))
        return
    versions = ([("before", a.before_src)] if a.before_src else []) + [tuple(x.split("=", 1)) for x in a.also]
    versions += [] if a.no_after else [(a.name, str(HERE / "src"))]
    # the versions run side by side (one process each), so both see the same machine load; each
    # measures its own eigensolve floor throughout its run
    procs = {}
    docs = {}

    def finish(name: str) -> None:
        proc, out = procs[name]
        if proc.wait() != 0:
            raise SystemExit(f"the {name} worker failed (exit {proc.returncode})")
        docs[name] = json.loads(out.read_text())

    for name, src in versions:
        out = Path(f"/tmp/hf_chain_{name}.json")
        if name in a.reuse:
            docs[name] = json.loads(out.read_text())
            continue
        out.unlink(missing_ok=True)
        opts = ["--options", a.options] if name == a.name and not a.no_after else []
        procs[name] = (subprocess.Popen([sys.executable, __file__, "--worker", src, "--start", a.start, "--U", a.U,
                                         "--crops", str(a.crops), "--out", str(out)] + opts
                                        + [x for o in a.set for x in ("--set", o)]), out)
        if a.serial:
            finish(name)
    for name in procs:
        if name not in docs:
            finish(name)
    print(f"{'version':>7} {'U':>4} {'conv':>5} {'iter':>5} {'solve s':>8} {'ldos s':>7} {'img s':>6} "
          f"{'units':>7}")
    def units(d: dict) -> float:  # per-point floors where the run measured them (older JSON: one median)
        return d["units"] if "units" in d else d["total_s"] / d["floor_s"]

    for name, d in docs.items():
        f = d["floor_s"]
        for r in d["points"]:
            cost = r["solve_s"] + r["ldos_s"] + r["images_s"]
            print(f"{name:>7} {r['U']:4.1f} {str(r['converged']):>5} {r['iterations']:5d} {r['solve_s']:8.1f} "
                  f"{r['ldos_s']:7.1f} {r['images_s']:6.1f} {cost / r.get('floor_s', f):7.1f}")
        print(f"{name:>7} total {d['total_s']:.1f} s = {units(d):.1f} eigensolves "
              f"(floor median {f:.3f} s, runs {', '.join(f'{x:.2f}' for x in d['floors'])}; "
              f"load {d['load'][0]:.1f} → {d['load'][1]:.1f})")
    if "before" in docs:
        ub = units(docs["before"])
        for name in docs:
            if name != "before":
                ua = units(docs[name])
                print(f"{name} / before = {ua / ub:.3f} in eigensolve units "
                      f"(bar ≤ 0.333: {'PASS' if ua / ub <= 1 / 3 else 'FAIL'})")


if __name__ == "__main__":
    main()
