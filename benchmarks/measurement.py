"""Measurement model benchmark: render/align timings, alignment accuracy, user map = simulated map.

TBG i = 7 (demo preset, 676 atoms per cell), per-atom LDOS at E_F from tight binding (2 × 2 k-mesh,
η = 4 meV; no HF needed). Acquisitions are drawn from the demo preset's measurement ranges (random
rotation in [0, 360), origin in the moiré cell, 0.40–0.50 Å pixels, ±1 % piezo, ≤ 0.1 % heterostrain,
±0.02° twist, drift, mild noise) and, for the accuracy table, also at a 3 % piezo error and ±0.1° twist.

Reported (JSON on stdout): median wall time of ``simulate_map`` (256² map) and of ``map_to_image``
(alignment + 128² image); errors of the measured rotation (mod 60°), piezo scale (singular values)
and twist angle; the correlation of each aligned image with the image of the unrotated, undistorted,
noiseless scan; and the max difference between ``user_map_image`` of the map saved as .npy + sidecar
and ``map_to_image`` of the MapData.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/measurement.py [--n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="random acquisitions per setting")
    args = ap.parse_args()
    from moireu.config import load_config
    from moireu.lattice import build_tbg, kmesh
    from moireu.stm import ImageTransform, MeasurementSpec, draw_scan, map_to_image, simulate_map
    from moireu.stm.ldos import ldos_from_spectrum
    from moireu.stm.geometry import CellGeometry
    from moireu.stm.measure import user_map_image

    cfg = load_config("demo")
    model = build_tbg(cfg.lattice.index, cfg.lattice.interlayer_distance, cfg.lattice.cutoff)
    kf, w = kmesh(model, (2, 2))
    e, v = np.linalg.eigh(model.hk_batch(kf))
    ldos = ldos_from_spectrum(e, v, w, [float(np.median(e))], cfg.stm.eta)[0]
    geom = CellGeometry.of(model)
    t = ImageTransform.from_config(cfg.stm, geom=geom)
    spec = MeasurementSpec.from_config(cfg.stm, geom.cell)
    ref, _ = map_to_image(simulate_map(geom, ldos, spec.nominal()), t)
    out: dict = {"load_average": os.getloadavg()[0], "cores": os.cpu_count(), "twist_trained_deg": t.twist_deg}
    for name, sp in (("demo", spec), ("piezo3_twist0.1", spec.replace(scale_error_max=0.03, twist_delta_max_deg=0.1))):
        rows = []
        for i in range(args.n):
            scan = draw_scan(np.random.default_rng([11, i]), sp)
            t0 = time.perf_counter()
            m = simulate_map(geom, ldos, scan)
            t1 = time.perf_counter()
            img, info = map_to_image(m, t)
            t2 = time.perf_counter()
            exp_angle = (-scan.rotation_deg + 30.0) % 60.0 - 30.0
            rows.append({"render_s": t1 - t0, "image_s": t2 - t1,
                         "angle_err": abs((info.angle_deg - exp_angle + 30) % 60 - 30),
                         "scale_err": float(np.abs(np.sort(info.scale) - np.sort(scan.scale)).max()),
                         "twist_err": abs(info.twist_deg - (t.twist_deg + scan.twist_delta_deg)),
                         "corr": float(np.corrcoef(img.values.ravel(), ref.values.ravel())[0, 1]),
                         "atomic": info.atomic_resolved, "in_range": info.in_range, "quality": info.quality})
        col = {k: np.array([r[k] for r in rows], float) for k in rows[0]}
        out[name] = {"n": args.n, "render_s_median": float(np.median(col["render_s"])),
                     "image_s_median": float(np.median(col["image_s"])),
                     "angle_err_deg_max": float(col["angle_err"].max()),
                     "angle_err_deg_median": float(np.median(col["angle_err"])),
                     "scale_err_max": float(col["scale_err"].max()),
                     "twist_err_deg_max": float(col["twist_err"].max()),
                     "twist_err_deg_median": float(np.median(col["twist_err"])),
                     "corr_min": float(col["corr"].min()), "corr_median": float(np.median(col["corr"])),
                     "atomic_resolved": int(col["atomic"].sum()), "in_range": int(col["in_range"].sum()),
                     "quality_min": float(col["quality"].min())}
    # user map (file) = simulated map (MapData)
    m = simulate_map(geom, ldos, draw_scan(np.random.default_rng(5), spec))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "map.npy"
        np.save(f, m.values)
        f.with_name("map.npy.json").write_text(json.dumps({"pixel_size": m.pixel_size[0]}))
        a, _ = user_map_image(f, t.to_json())
    b, _ = map_to_image(m, t)
    out["user_vs_simulated_max_abs_diff"] = float(np.abs(a.values - b.values).max())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
