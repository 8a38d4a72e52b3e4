"""Read the arrays the analyses need from a dataset store (the contract in docs/ARCHITECTURE.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError

from .kspace import twist_angle_deg

HF_VARIABLES = ("hf_max_moment", "hf_staggered_moment", "hf_charge_spread", "hf_total_energy", "hf_gap")


@dataclass(frozen=True)
class AnalysisData:
    """Arrays of one dataset store.

    Attributes
    ----------
    images : (n, ny, nx) float32 FT-LDOS images.
    U : (n,) Hubbard U (eV).
    split : (n,) ``"grid"`` or ``"heldout"``.
    kx, ky : (nx,), (ny,) wave-vector coordinates (Å⁻¹).
    rotation_deg : (n,) patch rotation of each sample (zeros when absent).
    hf : order parameters per sample (the ``hf_*`` variables present in the store).
    config : the resolved run configuration stored in the attributes (dict, may be empty).
    attrs : all store attributes.
    """

    images: np.ndarray
    U: np.ndarray
    split: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    rotation_deg: np.ndarray
    hf: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def lattice_index(self) -> int | None:
        idx = self.config.get("lattice", {}).get("index")
        return int(idx) if idx is not None else None

    @property
    def theta_deg(self) -> float | None:
        """Twist angle from ``config.lattice.index`` (None when the store carries no config)."""
        i = self.lattice_index
        return twist_angle_deg(i) if i is not None else None

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def grid(self) -> np.ndarray:
        return self.split == "grid"

    @property
    def heldout(self) -> np.ndarray:
        return self.split == "heldout"


def _open(path: Path):
    try:
        from moireu.data import open_store  # the dataset stage's reader when present
    except ImportError:
        open_store = None
    if open_store is not None:
        return open_store(path)
    import xarray as xr

    return xr.open_zarr(path)


def load_store(path: str | Path) -> AnalysisData:
    """Load images, labels, coordinates and order parameters of the store at ``path``.

    Raises
    ------
    InputError
        When the path is missing or a required variable (``image``, ``U``, ``kx``, ``ky``) is absent.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset store {str(path)!r} does not exist")
    try:
        ds = _open(path)
    except InputError:
        raise
    except Exception as exc:  # zarr/xarray raise many kinds
        raise InputError(f"{str(path)!r} is not a readable dataset store: {exc}") from None
    missing = [v for v in ("image", "U", "kx", "ky") if v not in ds.variables]
    if missing:
        raise InputError(f"dataset store {str(path)!r} lacks {', '.join(missing)}; a moireu store holds "
                         "image(sample, ky, kx), U(sample), kx, ky (see docs/ARCHITECTURE.md)")
    img = ds["image"].transpose("sample", "ky", "kx").values.astype(np.float32)
    n = img.shape[0]
    U = np.asarray(ds["U"].values, float)
    split = (np.asarray(ds["split"].values).astype(str) if "split" in ds.variables
             else np.full(n, "grid"))
    rot = (np.asarray(ds["rotation_deg"].values, float) if "rotation_deg" in ds.variables else np.zeros(n))
    hf = {v: np.asarray(ds[v].values, float) for v in HF_VARIABLES if v in ds.variables}
    attrs = dict(ds.attrs)
    cfg = attrs.get("config", {})
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            cfg = {}
    if not np.all(np.isfinite(img)):
        raise InputError(f"dataset store {str(path)!r} holds non-finite image values")
    return AnalysisData(img, U, split, np.asarray(ds["kx"].values, float), np.asarray(ds["ky"].values, float),
                        rot, hf, cfg if isinstance(cfg, dict) else {}, attrs)
