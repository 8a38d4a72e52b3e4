"""A further full sweep over a stored ladder: does any rung change? (the ladder's stopping rule, checked)

The ladder build (:mod:`moireu.data.ladder`) stops when every rung was tried from its neighbours' current
states. This re-runs *every* sweep step anyway — each rung re-solved from the stored state of the rung
below and of the rung above, whatever the file says was tried — and reports, per step, the energy of
the carried solution against the stored one. A rung "changes" when a carried solution is lower by more
than :data:`moireu.hf.ground.SAME_STATE_E` (the build's own criterion). Exit status 1 when one does.
Cost: 2 (n − 1) warm solves (demo: 48, ≈ 10 min on one idle core at i = 7).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/states_sweep.py --preset demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from moireu.config import load_config
from moireu.data.ladder import solve_point
from moireu.data.states import States, shipped_states_path
from moireu.hf.ground import SAME_STATE_E


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--file", default=None, help="states file (default: the preset's shipped one)")
    ap.add_argument("--json", default=None, help="write the per-step table here")
    a = ap.parse_args()
    cfg = load_config(a.preset)
    st = States.load(a.file or shipped_states_path(a.preset))
    st.check(cfg)
    rows, changed = [], 0
    t0 = time.perf_counter()
    for nu in st.fillings:
        rungs = [p for p in st.points("ladder") if p.filling == nu]
        for k, tgt in enumerate(rungs):
            for side, j in (("below", k - 1), ("above", k + 1)):
                if not 0 <= j < len(rungs):
                    continue
                src = rungs[j]
                r = solve_point(cfg, tgt.U, nu, starts=(("sweep_up" if side == "below" else "sweep_down",
                                                         st.result(src.U, nu)),), ldos_below=-float("inf"))
                d = r["energy"] - tgt.total_energy
                lower = d < -SAME_STATE_E
                changed += lower
                rows.append({"U": tgt.U, "from_U": src.U, "carried_minus_stored_meV": 1e3 * d, "lower": bool(lower),
                             "seconds": round(r["seconds"], 1)})
                print(f"U = {tgt.U:5.2f} from {src.U:5.2f}: carried − stored = {1e3 * d:+9.4f} meV"
                      f"{'  LOWER' if lower else ''}  ({r['seconds']:.0f} s)", flush=True)
    out = {"preset": a.preset, "fingerprint": st.fingerprint, "steps": len(rows), "rungs_lowered": changed,
           "min_carried_minus_stored_meV": min(r["carried_minus_stored_meV"] for r in rows) if rows else None,
           "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    print(f"{len(rows)} sweep steps over the stored ladder, {changed} lower by more than "
          f"{1e3 * SAME_STATE_E:g} meV; smallest carried − stored {out['min_carried_minus_stored_meV']:+.4f} meV, "
          f"{out['seconds']:.0f} s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
