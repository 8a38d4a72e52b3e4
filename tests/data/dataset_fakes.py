"""Cheap, deterministic compute backends for exercising the dataset orchestration.

``FakeBackend.solve`` writes a small .npz "result" whose moment grows with U like a mean-field
order parameter, and ``render`` turns it into images that depend on (U, bias, offset, rotation), so
the tests can check that every image lands at the right sample with the right metadata.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


import numpy as np

from moireu.data.tasks import Rendered

N_PIX = 8
N_ATOM = 4


class FakeBackend:
    def __init__(self, log_dir: str | None = None, solve_seconds: float = 0.0, render_seconds: float = 0.0,
                 fail_U: tuple[float, ...] = (), unconverged_first: tuple[float, ...] = (),
                 never_converge: tuple[float, ...] = (), io_error_U: tuple[float, ...] = (),
                 contract: bool = False, tag_kT: bool = False, low_state_U: tuple[float, ...] = ()) -> None:
        self.low_state_U = low_state_U  # cold solves here find a lower state (state 1) the sweeps carry on
        self.io_error_U = io_error_U
        self.contract = contract
        self.tag_kT = tag_kT
        self.log_dir = log_dir
        self.solve_seconds = solve_seconds
        self.render_seconds = render_seconds
        self.fail_U = fail_U
        self.unconverged_first = unconverged_first
        self.never_converge = never_converge

    def _log(self, what: str, key: str) -> None:
        if self.log_dir:
            d = Path(self.log_dir)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{what}__{key}__{uuid.uuid4().hex}").touch()

    def solve(self, cfg, point, warm, hf_overrides, out):
        self._log("solve", point.key)
        time.sleep(self.solve_seconds)
        if any(abs(point.U - u) < 1e-9 for u in self.fail_U):
            raise RuntimeError(f"synthetic failure at U={point.U}")
        if any(abs(point.U - u) < 1e-9 for u in self.io_error_U):
            raise OSError(28, "No space left on device (synthetic)")
        retry = bool(hf_overrides)
        converged = not any(abs(point.U - u) < 1e-9 for u in self.never_converge)
        if not retry and any(abs(point.U - u) < 1e-9 for u in self.unconverged_first):
            converged = False
        state = int(any(abs(point.U - u) < 1e-9 for u in self.low_state_U))
        if warm:  # path dependence, as in HF where states coexist: a warm start keeps its start's state
            with np.load(list(warm)[-1]) as z:
                state = max(state, int(z["state"]) if "state" in z.files else 0)
        summ = self._write(cfg, point, out, warm is not None, state)
        return summ | {"converged": converged}

    def _write(self, cfg, point, out, warm, state):
        """Write the fake result (``state`` 1: a lower-energy state, its moment shifted by 0.25)."""
        m = 0.5 * np.tanh(max(point.U - 2.0, 0.0)) + 0.25 * state
        tmp = out.with_name(f".{out.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, U=point.U, m=m, warm=warm, kT=cfg.hf.kT, state=state)
        os.replace(tmp, out)
        return {"converged": True, "iterations": 3 if warm else 10, "seconds": 0.01,
                "fermi_level_eV": 0.1, "max_moment": m, "staggered_moment": m, "charge_spread": 0.01 * point.U,
                "total_energy": -point.U - 0.01 * state, "gap": 2 * m}

    def solve_from(self, cfg, point, start, out):
        """A sweep step: the start's ``state`` label travels with it (energy −U − 0.01·state)."""
        self._log("sweep", point.key)
        time.sleep(self.solve_seconds)
        with np.load(start) as z:
            state = int(z["state"]) if "state" in z.files else 0
        return self._write(cfg, point, out, warm=True, state=state) | {"iterations": 2}

    def render(self, cfg, point, result, specs):
        self._log("render", point.key)
        time.sleep(self.render_seconds)
        with np.load(result) as z:
            m = float(z["m"])
            tag = 1000.0 * float(z["kT"]) if self.tag_kT else 0.0
        k = np.linspace(-1.0, 1.0, N_PIX)
        kx, ky = np.meshgrid(k, k)
        imgs, ox, oy = [], [], []
        for s in specs:
            f1, f2 = (0.37 * s.variation.id) % 1.0, (0.61 * s.variation.id) % 1.0
            img = (point.U + 10 * s.bias + m + tag) * np.exp(-((kx - 0.3 * f1) ** 2 + (ky - 0.3 * f2) ** 2))
            imgs.append(np.rot90(img, s.variation.id % 4))
            ox.append(10.0 * f1)
            oy.append(10.0 * f2)
        params = {"scan_origin_x": np.asarray(ox), "scan_origin_y": np.asarray(oy),
                  "scan_rotation_deg": np.array([90.0 * (s.variation.id % 4) for s in specs])}
        if not self.contract:
            return Rendered(np.asarray(imgs, np.float32), k, k, params, {"kind": "fake", "n_pixels": N_PIX})
        levels = sorted({s.bias for s in specs})
        ldos = np.array([[point.U + b + m * (-1) ** a for a in range(N_ATOM)] for b in levels])
        geometry = {"atom_xyz": np.arange(3 * N_ATOM, dtype=float).reshape(N_ATOM, 3),
                    "atom_layer": np.array([0, 0, 1, 1]), "atom_sublattice": np.array([0, 1, 0, 1]),
                    "cell": np.array([[10.0, 0.0], [5.0, 8.66]])}
        params["align_quality"] = np.linspace(0.5, 1.0, len(specs))
        return Rendered(np.asarray(imgs, np.float32), k, k, params, {"kind": "fake", "n_pixels": N_PIX},
                        ldos=ldos, biases=np.asarray(levels, float), geometry=geometry)


def calls(log_dir, what: str) -> list[str]:
    d = Path(log_dir)
    if not d.is_dir():
        return []
    return sorted(p.name.split("__")[1] for p in d.iterdir() if p.name.startswith(what + "__"))


#: the ground-state starts with the chain predecessor's state among them (the default has cold starts only)
WARM = "dataset.ground_state=['warm', 'seed', 'nonmagnetic', 'ferro']"
