"""Tiny synthetic dataset stores following the store contract (docs/ARCHITECTURE.md).

The images imitate FT-LDOS patterns: six Bragg-like peaks on a hexagon plus six moiré satellites
around the centre. U controls (smoothly) the contrast between the two triangular sub-sets of the
satellites (a sublattice-symmetry-breaking proxy) and the ratio of satellite to Bragg weight; each
"patch offset" variation adds random per-peak amplitude jitter and a speckle floor. Images are
z-scored like the real ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest


def synthetic_images(U: np.ndarray, n_pixels: int = 32, seed: int = 0, jitter: float = 0.05,
                     floor: float = 0.05, satellite_radius: float = 0.3) -> np.ndarray:
    """``satellite_radius``: |k| of the moiré satellites (∝ twist angle; 0.3 in every store)."""
    rng = np.random.default_rng(seed)
    k = np.linspace(-1.0, 1.0, n_pixels)
    kx, ky = np.meshgrid(k, k)
    width = 2.5 / n_pixels
    out = np.empty((len(U), n_pixels, n_pixels), np.float32)
    for i, u in enumerate(U):
        s = 0.5 * (1 + math.tanh((u - 3.0) / 1.5))  # 0 → 1 across U ≈ 3 eV
        img = np.zeros_like(kx)
        for j in range(6):
            a = j * math.pi / 3
            amp_b = 1.0 * (1 + jitter * rng.standard_normal())
            img += amp_b * np.exp(-((kx - 0.7 * math.cos(a)) ** 2 + (ky - 0.7 * math.sin(a)) ** 2) / (2 * width**2))
            sat = (0.4 + 0.5 * s if j % 2 == 0 else 0.4 - 0.2 * s) * (1 + jitter * rng.standard_normal())
            r = satellite_radius
            img += sat * np.exp(-((kx - r * math.cos(a + 0.3)) ** 2 + (ky - r * math.sin(a + 0.3)) ** 2)
                                / (2 * width**2))
        img += 0.15 * (u / 6.0) * np.exp(-(kx**2 + ky**2) / 0.1)  # a faint smooth centre feature
        img += floor * np.abs(rng.standard_normal(img.shape))
        out[i] = ((img - img.mean()) / img.std()).astype(np.float32)
    return out


def make_store(path: Path, U_values=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0), n_per_U: int = 12, n_pixels: int = 32,
               heldout: int = 6, seed: int = 0, with_nan: bool = False, splits: str = "both") -> Path:
    import xarray as xr

    rng = np.random.default_rng(seed + 1)
    U_grid = np.repeat(np.asarray(U_values, float), n_per_U)
    U_held = np.sort(rng.uniform(min(U_values) + 0.2, max(U_values) - 0.2, heldout))
    U = np.concatenate([U_grid, U_held])
    split = np.array(["grid"] * len(U_grid) + ["heldout"] * len(U_held), dtype=object)
    if splits == "heldout":
        U, split = U_held, split[len(U_grid):]
    # like a dataset store: acquisition draw v = 0..n_per_U−1 at every grid U, the held-out set its own draws
    variation = np.concatenate([np.tile(np.arange(n_per_U), len(U_values)), np.arange(heldout)]).astype(np.int32)
    if splits == "heldout":
        variation = variation[len(U_grid):]
    images = synthetic_images(U, n_pixels, seed=seed)
    if with_nan:
        images[1, 3, 4] = np.nan
    n = len(U)
    kx = np.linspace(-2.8, 2.8, n_pixels)
    transform = {"n_pixels": n_pixels, "window": {"kx_max": 2.8096, "ky_max": 3.2442}, "subtract_mean": True,
                 "log": False, "normalize": "zscore", "moire_period": None}
    ds = xr.Dataset(
        {"image": (("sample", "ky", "kx"), images), "U": ("sample", U), "split": ("sample", split),
         "filling": ("sample", np.zeros(n)), "bias": ("sample", np.zeros(n)),
         "variation": ("sample", variation)},
        coords={"kx": kx, "ky": kx},
        attrs={"config": json.dumps({"seed": seed}), "image_transform": json.dumps(transform)},
    )
    ds.to_zarr(path, mode="w", consolidated=False)
    return path


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("ml") / "tiny.zarr")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_sxm(path: Path, data: np.ndarray, names: list[str], range_m: float) -> Path:
    """A minimal Nanonis .sxm file (documented layout): text header, ``\\x1a\\x04``, big-endian float32
    data of shape (channel, direction, y, x)."""
    ny, nx = data.shape[-2:]
    hdr = [":NANONIS_VERSION:", "2", ":SCANIT_TYPE:", "              FLOAT            MSBFIRST",
           ":SCAN_PIXELS:", f"       {nx}       {ny}", ":SCAN_RANGE:", f"   {range_m:E}   {range_m:E}",
           ":SCAN_OFFSET:", "0 0", ":SCAN_ANGLE:", "0.000E+0", ":SCAN_DIR:", "up", ":BIAS:", "1.000E-1",
           ":DATA_INFO:", "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset"]
    hdr += [f"\t{i}\t{n}\tA\tboth\t1.000E+0\t0.000E+0" for i, n in enumerate(names)]
    hdr += ["", ":SCANIT_END:", ""]
    path.write_bytes("\n".join(hdr).encode() + b"\n\n\x1a\x04" + data.astype(">f4").tobytes())
    return path


@pytest.fixture
def sxm_writer():
    """:func:`write_sxm` as a fixture (``from conftest import`` is ambiguous across test folders)."""
    return write_sxm
