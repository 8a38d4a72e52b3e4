"""Tiny synthetic dataset stores that follow the store contract of docs/ARCHITECTURE.md.

Images carry the physics the analyses look for: a central peak, the 12 Bragg peaks of the two
layers (|G| = 4π/(√3 a)) and moiré satellites (|g_M| = 2|G| sin(θ/2)), placed from k coordinates.
The satellite intensity grows linearly above a known kink U_KINK, and the HF order parameters
follow mean-field onsets at U_KINK, so every crossover estimator has a known answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moireu.analysis.kspace import bragg_radius, peak_geometry, twist_angle_deg
from moireu.config import load_config

U_KINK = 2.7  # eV, the crossover built into the synthetic data (U_c/t = 1)
INDEX = 2  # θ = 13.17°, |g_M| = 0.68 Å⁻¹: resolvable on tiny images
NPIX = 48
PHI0 = np.pi / 6


def kgrid(n: int = NPIX, a: float = 2.46, scale: float = 1.1):
    kx = np.linspace(-scale * 2 * np.pi / a, scale * 2 * np.pi / a, n)
    ky = np.linspace(-scale * bragg_radius(a), scale * bragg_radius(a), n)
    return kx, ky


def synth_image(U: float, rng: np.random.Generator, kx, ky, phi0: float = PHI0, noise: float = 0.02) -> np.ndarray:
    geom = peak_geometry(twist_angle_deg(INDEX), phi0)
    KX, KY = np.meshgrid(kx, ky)
    sig = 0.12 * geom.g_moire
    img = np.zeros(KX.shape)

    def add(pts, amp):
        nonlocal img
        for px, py in pts:
            img += amp * np.exp(-((KX - px) ** 2 + (KY - py) ** 2) / (2 * sig ** 2))

    add(geom.central, 1.0)
    add(geom.bragg, 0.8)
    add(geom.satellites, 0.3 + 0.08 * max(U - U_KINK, 0.0) + 0.01 * U)
    img += noise * rng.standard_normal(img.shape)
    img = (img - img.mean()) / img.std()
    return img.astype(np.float32)


def make_store(path: Path, n_var: int = 4, n_heldout: int = 5, seed: int = 0, hf: bool = True,
               n: int = NPIX) -> Path:
    import xarray as xr

    rng = np.random.default_rng(seed)
    kx, ky = kgrid(n)
    grid_u = [0.5 * i for i in range(13)]
    held = sorted(rng.uniform(0.2, 5.8, n_heldout).round(3).tolist())
    U, split = [], []
    for u in grid_u:
        U += [u] * n_var
        split += ["grid"] * n_var
    for u in held:
        U += [u] * n_var
        split += ["heldout"] * n_var
    U = np.array(U)
    images = np.stack([synth_image(u, rng, kx, ky) for u in U])
    ns = len(U)
    m = 0.4 * np.sqrt(np.maximum(U - U_KINK, 0.0))
    cfg = load_config("demo", overrides=[f"lattice.index={INDEX}", f"stm.n_pixels={n}"])
    data = {
        "image": (("sample", "ky", "kx"), images),
        "U": ("sample", U),
        "filling": ("sample", np.zeros(ns)),
        "bias": ("sample", np.zeros(ns)),
        "variation": ("sample", np.tile(np.arange(n_var), ns // n_var).astype(np.int32)),
        "offset_x": ("sample", rng.uniform(0, 1, ns)),
        "offset_y": ("sample", rng.uniform(0, 1, ns)),
        "rotation_deg": ("sample", np.zeros(ns)),
        "split": ("sample", np.array(split, dtype="<U8")),
        "hf_converged": ("sample", np.ones(ns, bool)),
        "hf_iterations": ("sample", np.full(ns, 20, np.int32)),
    }
    if hf:
        data |= {
            "hf_max_moment": ("sample", m),
            "hf_staggered_moment": ("sample", m * 0.9),
            "hf_charge_spread": ("sample", 0.01 * U),
            "hf_total_energy": ("sample", -100.0 - U),
            "hf_gap": ("sample", 0.5 * U * m),
        }
    ds = xr.Dataset(data, coords={"kx": kx, "ky": ky},
                    attrs={"config": cfg.to_json(), "moireu_version": "0.1.0", "git_commit": "test",
                           "image_transform": json.dumps({"normalize": "zscore"})})
    ds.to_zarr(path, mode="w")
    return path


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "dataset.zarr")


@pytest.fixture(scope="session")
def data(store):
    from moireu.analysis.data import load_store

    return load_store(store)
