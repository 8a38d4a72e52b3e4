"""The moiré cell an LDOS lives on, and the training frame it defines.

:class:`CellGeometry` holds the atoms of one commensurate cell (positions, cell vectors, layer,
sublattice) and interpolates per-atom values at moiré-equivalent points; :func:`reference_lattice`
gives the frame every map is aligned to: moiré period :math:`L_M`, twist angle
:math:`\\theta = 2\\arcsin(a/2L_M)`, reciprocal basis :math:`2\\pi (T^{-1})^{T}` of the cell rows
:math:`T` and the Miller indices of the first-shell Bragg peaks. Layer below: the FT
(:mod:`moireu.stm.ft`) and the real-space patch (:mod:`moireu.stm.patch`); above: the image
transform (:mod:`moireu.stm.ftldos`), alignment and measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from moireu.constants import A_LAT, POISSON_GRAPHENE
from moireu.errors import InputError
from moireu.lattice.geometry import rotation
from moireu.stm.patch import reciprocal_peaks

__all__ = ["CellGeometry", "reference_lattice"]


@dataclass(frozen=True, eq=False)
class CellGeometry:
    """The moiré cell the LDOS lives on: positions (N, 3|2) Å, cell (2, 2) rows t1, t2, layer, sublattice."""

    positions: np.ndarray
    cell: np.ndarray
    layer: np.ndarray
    sublattice: np.ndarray
    lattice_constant: float = A_LAT

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions, float)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3) or pos.shape[0] == 0:
            raise InputError(f"positions must have shape (N, 2|3), got {pos.shape}")
        cell = np.asarray(self.cell, float)
        if cell.shape != (2, 2) or abs(np.linalg.det(cell)) < 1e-9:
            raise InputError(f"cell must be two independent lattice vectors (2, 2), got {cell.tolist()}")
        n = pos.shape[0]
        lay = np.asarray(self.layer, int).reshape(-1)
        sub = np.asarray(self.sublattice, int).reshape(-1)
        if lay.shape != (n,) or sub.shape != (n,):
            raise InputError(f"layer and sublattice must have one entry per atom ({n})")
        object.__setattr__(self, "positions", pos[:, :2].copy())
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "layer", lay)
        object.__setattr__(self, "sublattice", sub)

    @classmethod
    def of(cls, geom: Any) -> "CellGeometry":
        """From a :class:`CellGeometry`, a lattice ``Geometry``/``TightBindingModel`` or a dict of arrays."""
        if isinstance(geom, CellGeometry):
            return geom
        if isinstance(geom, dict):  # the lattice's names, or the store's (moireu.data.schema.LDOS_GEOMETRY)
            g = {k.removeprefix("atom_"): v for k, v in geom.items()}
            return cls(g["xyz"] if "xyz" in g else g["positions"], g["cell"], g["layer"], g["sublattice"])
        return cls(geom.positions, geom.cell, geom.layer, geom.sublattice)

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def moire_period(self) -> float:
        return float(np.linalg.norm(self.cell, axis=1).max())

    @property
    def bilayer(self) -> bool:
        return len(np.unique(self.layer)) > 1

    @property
    def theta0_deg(self) -> float:
        """Twist angle of a commensurate bilayer from its period, θ = 2 arcsin(a / 2L_m) (0 for one layer)."""
        if not self.bilayer:
            return 0.0
        return math.degrees(2.0 * math.asin(min(1.0, self.lattice_constant / (2.0 * self.moire_period))))

    @cached_property
    def _classes(self) -> list[tuple[np.ndarray, Any]]:
        """Per (layer, sublattice) class: atom indices and a Delaunay triangulation of the class's sites
        tiled over 3 × 3 cells (so any point reduced into the cell lies inside it)."""
        from scipy.spatial import Delaunay

        out: list[tuple[np.ndarray, Any]] = []
        shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], float) @ self.cell
        for lay in range(int(self.layer.max()) + 1):
            for sub in range(int(self.sublattice.max()) + 1):
                idx = np.flatnonzero((self.layer == lay) & (self.sublattice == sub))
                if len(idx) == 0:
                    out.append((idx, None))
                    continue
                pts = (self.positions[idx][None, :, :] + shifts[:, None, :]).reshape(-1, 2)
                out.append((np.tile(idx, len(shifts)), Delaunay(pts)))
        return out

    def equivalent_values(self, atom: np.ndarray, r_equiv: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-atom ``values`` of the same layer/sublattice as ``atom``, linearly interpolated at the
        moiré-equivalent points ``r_equiv`` (reduced into the cell) on that class's triangulated sites.

        Exact at the sites (r_equiv on a site returns its value), continuous in r_equiv: a moiré
        distortion smaller than the atomic spacing still moves the pattern.
        """
        inv = np.linalg.inv(self.cell)
        f = r_equiv @ inv
        red = (f - np.floor(f)) @ self.cell
        out = np.empty(len(atom))
        nsub = int(self.sublattice.max()) + 1
        cls = self.layer[atom] * nsub + self.sublattice[atom]
        for c, (idx, tri) in enumerate(self._classes):
            sel = np.flatnonzero(cls == c)
            if len(sel) == 0:
                continue
            q = red[sel]
            simplex = tri.find_simplex(q)
            simplex = np.where(simplex < 0, 0, simplex)  # numerically on the hull: never for reduced points
            T = tri.transform[simplex]
            b = np.einsum("nij,nj->ni", T[:, :2, :], q - T[:, 2, :])
            bary = np.column_stack([b, 1.0 - b.sum(axis=1)])
            verts = idx[tri.simplices[simplex]]
            out[sel] = (bary * values[verts]).sum(axis=1)
        return out

    def moire_distortion_inverse(self, twist_delta_deg: float, heterostrain: float,
                                 strain_angle_deg: float) -> np.ndarray | None:
        """:math:`M^{-1} = (1 - T_0^{-1})^{-1}(1 - T^{-1})` of :mod:`moireu.stm.measure` (None: no distortion)."""
        if not self.bilayer or (twist_delta_deg == 0.0 and heterostrain == 0.0):
            return None
        th0 = self.theta0_deg
        T0 = rotation(math.radians(th0))
        R = rotation(math.radians(strain_angle_deg))
        E = heterostrain * R @ np.diag([1.0, -POISSON_GRAPHENE]) @ R.T
        T = rotation(math.radians(th0 + twist_delta_deg)) @ (np.eye(2) + E)
        return np.linalg.solve(np.eye(2) - np.linalg.inv(T0), np.eye(2) - np.linalg.inv(T))


def reference_lattice(geom: Any, window: Any) -> dict[str, Any]:
    """The training frame of a cell: moiré period, twist angle, reciprocal basis, Bragg indices.

    ``geom`` is anything :meth:`CellGeometry.of` accepts.
    """
    g = CellGeometry.of(geom)
    rec = 2 * np.pi * np.linalg.inv(g.cell).T
    peaks = reciprocal_peaks(g.positions, g.cell, g.layer, g.sublattice, window)
    B = peaks["bragg"]
    if len(B):
        kmin = float(np.linalg.norm(B, axis=1).min())
        B = B[np.linalg.norm(B, axis=1) <= kmin * 1.01]
    idx = np.rint(B @ g.cell.T / (2 * np.pi)).astype(int)
    return {"moire_period": g.moire_period, "twist_deg": g.theta0_deg if g.bilayer else None,
            "reciprocal": tuple(map(tuple, rec.tolist())), "bragg_indices": tuple(map(tuple, idx.tolist()))}
