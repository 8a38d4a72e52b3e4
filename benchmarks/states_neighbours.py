"""Does every U of a store hold the state of its ladder neighbours? (labels that are a function of U alone)

A store built with any ``dataset.seed`` draws its held-out U off the states ladder; those points are solved
from the two ladder neighbours' states and the cold candidates (:mod:`moireu.data.ladder`). This reads a
store and the preset's states file and prints, per U of the store, its branch and order parameters beside
those of its ladder neighbours, with two checks:

* **same family**: the largest on-site moment lies within ``--tol`` (relative) of a neighbour's, or between
  the two neighbours' when they differ (a state interpolated in U); a U whose moment is off both is a
  state no neighbour holds;
* **concavity**: the HF ground-state energy is a minimum over determinants of functions linear in U, so
  E(U) ≥ the chord between its neighbours; a point below the chord means a neighbour is not the lowest state.

Exit status 1 when a point fails either. Cost: reading only (run after ``blind-check`` on its store).

    .venv/bin/python benchmarks/states_neighbours.py /tmp/tmp.XXXX/blind.zarr --preset demo
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from moireu.config import load_config
from moireu.data import open_store
from moireu.data.schema import BRANCH_CODES
from moireu.data.states import States, shipped_states_path

#: energies (eV per cell) this far below the chord are a concavity violation, not round-off
CHORD_TOL = 1e-5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--file", default=None, help="states file (default: the preset's shipped one)")
    ap.add_argument("--tol", type=float, default=0.05, help="relative moment tolerance of 'same family'")
    ap.add_argument("--json", default=None, help="write the per-U table here")
    a = ap.parse_args()
    st = States.load(a.file or shipped_states_path(a.preset))
    st.check(load_config(a.preset))
    ds = open_store(a.store)
    names = {c: n for n, c in BRANCH_CODES.items()}
    U = np.round(ds["U"].values.astype(float), 6)
    rows, bad = [], 0
    for u in sorted(set(U.tolist())):
        i = int(np.flatnonzero(U == u)[0])
        m, e = float(ds["hf_max_moment"].values[i]), float(ds["hf_total_energy"].values[i])
        br = names.get(int(ds["hf_branch"].values[i]), "?")
        stored = st.get(u)
        lo, hi = st.neighbours(u)
        if stored is not None and stored.kind == "ladder":
            lo = hi = stored
        ms = [q.scalars["max_moment"] for q in (lo, hi) if q is not None]
        near = any(abs(m - x) <= a.tol * max(x, 1e-3) for x in ms)
        between = len(ms) == 2 and min(ms) - 1e-4 <= m <= max(ms) + 1e-4
        chord = None
        if lo is not None and hi is not None and lo is not hi:
            w = (u - lo.U) / (hi.U - lo.U)
            chord = (1 - w) * lo.total_energy + w * hi.total_energy
        concave = chord is None or e >= chord - CHORD_TOL
        ok = (near or between) and concave
        bad += not ok
        rows.append({"U": u, "branch": br, "max_moment": m, "E_minus_chord_meV": None if chord is None else
                     1e3 * (e - chord), "neighbours": [[q.U, q.branch, q.scalars["max_moment"]]
                                                        for q in (lo, hi) if q is not None],
                     "same_family": bool(near or between), "concave": bool(concave)})
        nb = "  ".join(f"{q.U:5.2f} {q.branch:<11} m {q.scalars['max_moment']:.4f}" for q in (lo, hi) if q is not None)
        ch = "" if chord is None else f"E − chord {1e3 * (e - chord):+8.3f} meV"
        print(f"U = {u:6.3f}  {br:<11} m {m:.4f}  | {nb:<60} {ch}{'' if ok else '  <-- NOT A NEIGHBOUR STATE'}",
              flush=True)
    print(f"{len(rows)} U values, {bad} not holding a ladder neighbour's state (moment tol {a.tol:g}, chord "
          f"tol {1e3 * CHORD_TOL:g} meV)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"store": a.store, "preset": a.preset, "fingerprint": st.fingerprint, "bad": bad,
                       "rows": rows}, fh, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
