"""Read the arrays the analyses need from a dataset store, through the one reader of :mod:`moireu.data.schema`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moireu.data import schema as sc
from moireu.errors import InputError

from .kspace import twist_angle_deg

HF_VARIABLES = tuple(f"hf_{k}" for k in sc.HF_ORDER_PARAMETERS)


@dataclass(frozen=True)
class AnalysisData:
    """Arrays of one dataset store.

    Attributes
    ----------
    images : (n, ny, nx) float32 FT-LDOS images.
    U : (n,) Hubbard U (eV).
    split : (n,) ``"grid"`` or ``"heldout"``.
    kx, ky : (nx,), (ny,) wave-vector coordinates (Å⁻¹).
    rotation_deg : (n,) rotation of the lattice in each stored image (zeros for aligned images).
    hf : order parameters per sample (the ``hf_*`` variables present in the store).
    config : the resolved run configuration stored in the attributes (dict, may be empty).
    attrs : all store attributes.
    variation : (n,) acquisition-draw id of each sample (the ML split groups by it), None for old stores.
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
    variation: np.ndarray | None = None

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


def load_store(path: str | Path) -> AnalysisData:
    """Load images, labels, coordinates and order parameters of the store at ``path``.

    Raises
    ------
    InputError
        When the path is missing or a required variable (``image``, ``U``, ``kx``, ``ky``) is absent.
    """
    ds = sc.open_store(path)
    sc.require(ds, ("image", "U", "kx", "ky"), "the analyses")
    img = sc.values(ds, "image").astype(np.float32, copy=False)
    U = sc.values(ds, "U").astype(float)
    split = np.asarray(ds["split"].values).astype(str)
    rot = sc.image_rotation(ds)
    hf = {v: sc.values(ds, v).astype(float) for v in HF_VARIABLES if v in ds.variables}
    attrs = dict(ds.attrs)
    cfg = attrs.get("config", {})
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            cfg = {}
    if not np.all(np.isfinite(img)):
        raise InputError(f"dataset store {str(path)!r} holds non-finite image values")
    return AnalysisData(img, U, split, sc.values(ds, "kx").astype(float), sc.values(ds, "ky").astype(float),
                        rot, hf, cfg if isinstance(cfg, dict) else {}, attrs,
                        sc.values(ds, "variation").astype(np.int64) if "variation" in ds.variables else None)
