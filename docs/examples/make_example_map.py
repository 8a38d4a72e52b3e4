"""Render the example STM map shipped in docs/examples from a real HF state of a dataset store.

The map is what `moireu predict` expects from a user: a 2-D ``.npy`` array ``[iy, ix]`` (y grows with
the row index) plus a sidecar ``<map>.npy.json`` with ``pixel_size`` (Å). It is rendered through the
measurement model of the training set (:func:`moireu.stm.measure.simulate_map`) from the per-atom LDOS
the store holds for the requested U (contract D: no HF solve here), at bias 0, with a scan the
training set never drew (rotation 17°, origin inside the cell, 0.45 Å pixels, SNR-20 white noise).

Run:  PYTHONPATH=src python docs/examples/make_example_map.py STORE [--U 4.0] [--out docs/examples/tbg_i7_U4]
``STORE`` is a dataset store (``.zarr``) or one image part of a build's work directory (``.npz``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load_ldos(src: Path, U: float) -> tuple[dict, np.ndarray, float, dict]:
    """(geometry, LDOS at bias 0 of the point nearest to U, that U, store config)."""
    if src.suffix == ".npz":
        with np.load(src) as z:
            if "geometry_atom_xyz" in z.files:  # work-directory part (schema 2)
                geom = {"positions": z["geometry_atom_xyz"], "cell": z["geometry_cell"],
                        "layer": z["geometry_atom_layer"], "sublattice": z["geometry_atom_sublattice"]}
                levels = z["bias_level"]
            else:  # work-directory part of the first measurement-model builds
                geom = {k[len("geom__"):]: z[k] for k in z.files if k.startswith("geom__")}
                levels = z["ldos_bias"]
            row = int(np.argmin(np.abs(levels)))
            ldos = z["ldos"][row]
        rec = src.parent.parent / "solves" / f"{src.stem}.json"  # the point's solve record
        if not rec.is_file():
            raise SystemExit(f"{rec} not found: pass a store, or a part inside a build's work directory")
        return geom, ldos, float(json.loads(rec.read_text())["U"]), {}
    from moireu.data import open_store

    ds = open_store(src)
    j = int(np.argmin(np.abs(ds["point_U"].values - U) + 1e3 * (ds["point_split"].values != "grid")))
    row = int(np.argmin(np.abs(ds["bias_level"].values)))
    geom = {"positions": ds["atom_xyz"].values, "cell": ds["cell"].values, "layer": ds["atom_layer"].values,
            "sublattice": ds["atom_sublattice"].values}
    return geom, np.asarray(ds["ldos"].values[j, row]), float(ds["point_U"].values[j]), json.loads(ds.attrs["config"])


def main() -> None:
    from moireu.provenance import provenance, write_json_atomic
    from moireu.stm.measure import ScanParams, simulate_map

    ap = argparse.ArgumentParser()
    ap.add_argument("store", type=Path)
    ap.add_argument("--U", type=float, default=4.0)
    ap.add_argument("--pixels", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("docs/examples/tbg_i7_U4"))
    a = ap.parse_args()
    commit = provenance()["git_commit"]  # before the map is written: the tree it was made from
    geom, ldos, U, cfg = load_ldos(a.store, a.U)
    cell = np.asarray(geom["cell"], float)
    scan = ScanParams(pixels=a.pixels, pixel_size=0.45, rotation_deg=17.0,
                      origin=tuple(float(x) for x in np.array([0.31, 0.62]) @ cell), tip_height=3.0,
                      noise_white=0.05, noise_seed=20260)
    m = simulate_map(geom, ldos, scan)
    npy = a.out.with_suffix(".npy")
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, m.values.astype(np.float32))
    write_json_atomic(npy.with_name(npy.name + ".json"), {
        "pixel_size": scan.pixel_size, "units": {"pixel_size": "Angstrom", "values": "arbitrary (dI/dV)"},
        "truth": {"U_eV": U, "bias_eV": 0.0, "filling": 0.0,
                  "lattice": "TBG i = 7 (4.41°), demo preset", "hf": "eps = 10 screened Coulomb"},
        "scan": scan.to_dict(), "source_store": str(a.store), "git_commit": commit})
    print(f"wrote {npy} ({npy.stat().st_size} bytes) and its sidecar; U = {U}")


if __name__ == "__main__":
    main()
