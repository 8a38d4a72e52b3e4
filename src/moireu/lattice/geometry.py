"""Geometry of monolayer graphene and commensurate twisted bilayer graphene (TBG).

Conventions
-----------
Graphene primitive vectors ``a1 = a (1, 0)``, ``a2 = a (1/2, √3/2)`` (a = 2.46 Å), sublattice A at the
origin and B at ``(a1 + a2)/3`` (a bond of length a_cc = a/√3 along 30°).

Commensurate TBG of index ``i`` (Lopes dos Santos, Peres & Castro Neto, PRB 86, 155449 (2012);
Trambly de Laissardière et al., Nano Lett. 10, 804 (2010)): the superlattice vectors are

.. math::  t_1 = i\\,a_1 + (i+1)\\,a_2,\\qquad t_2 = -(i+1)\\,a_1 + (2i+1)\\,a_2,

the twist angle obeys :math:`\\cos\\theta = (3i^2+3i+1/2)/(3i^2+3i+1)` and the cell holds
:math:`N = 4(3i^2+3i+1)` carbon atoms. The bottom layer (``layer 0``, z = 0) is unrotated; the top
layer (``layer 1``, z = d) is the bottom one rotated by +θ about the A atom at the origin, so the cell
starts AA-stacked at the origin and the structure keeps the C3 axis through it. The AB and BA stacking
centres sit at fractional positions (1/3, 1/3) and (2/3, 2/3) of the moiré cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moireu.constants import A_LAT
from moireu.errors import InputError


def twist_angle(index: int) -> float:
    """Commensurate twist angle θ (degrees) of TBG index ``i``: cos θ = (3i²+3i+1/2)/(3i²+3i+1)."""
    _check_index(index)
    m = 3 * index * index + 3 * index + 1
    return math.degrees(math.acos((m - 0.5) / m))


def n_atoms(index: int) -> int:
    """Number of carbon atoms in the commensurate TBG cell: N = 4(3i²+3i+1)."""
    _check_index(index)
    return 4 * (3 * index * index + 3 * index + 1)


def _check_index(index: int) -> None:
    if not isinstance(index, (int, np.integer)) or index < 1:
        raise InputError(f"commensurate index i must be an integer ≥ 1, got {index!r}")


def graphene_vectors(a: float = A_LAT) -> np.ndarray:
    """Rows a1, a2 of the graphene lattice (Å)."""
    return a * np.array([[1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])


def reciprocal(cell: np.ndarray) -> np.ndarray:
    """Rows b1, b2 with a_i · b_j = 2π δ_ij for a (2, 2) cell given as rows."""
    return 2.0 * math.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T


@dataclass(frozen=True)
class Geometry:
    """Atoms of a 2-D periodic cell (frozen; arrays read-only).

    Attributes
    ----------
    positions : (N, 3) Å
    cell : (2, 2) Å, rows are the lattice vectors
    layer, sublattice : (N,) int8
    theta_deg : twist angle (0 for a monolayer)
    index : commensurate index (0 for a monolayer)
    interlayer_distance : Å (0 for a monolayer)
    aa_centers, ab_centers : (m, 2) Å, stacking centres inside the cell (empty for a monolayer)
    """

    positions: np.ndarray
    cell: np.ndarray
    layer: np.ndarray
    sublattice: np.ndarray
    theta_deg: float
    index: int
    interlayer_distance: float
    aa_centers: np.ndarray
    ab_centers: np.ndarray

    def __post_init__(self) -> None:
        for name in ("positions", "cell", "layer", "sublattice", "aa_centers", "ab_centers"):
            getattr(self, name).setflags(write=False)

    @property
    def n_orb(self) -> int:
        return int(self.positions.shape[0])

    @property
    def reciprocal(self) -> np.ndarray:
        return reciprocal(self.cell)

    @property
    def area(self) -> float:
        """Cell area (Å²)."""
        return float(abs(np.linalg.det(self.cell)))


def graphene_geometry(a: float = A_LAT) -> Geometry:
    """Monolayer graphene primitive cell: A at the origin, B at (a1 + a2)/3."""
    cell = graphene_vectors(a)
    pos = np.zeros((2, 3))
    pos[1, :2] = (cell[0] + cell[1]) / 3.0
    return Geometry(pos, cell, np.zeros(2, np.int8), np.array([0, 1], np.int8), 0.0, 0, 0.0,
                    np.zeros((0, 2)), np.zeros((0, 2)))


def rotation(theta: float) -> np.ndarray:
    """The 2 × 2 matrix of a counter-clockwise rotation by ``theta`` (radians)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def tbg_geometry(index: int, interlayer_distance: float, a: float = A_LAT) -> Geometry:
    """Commensurate TBG cell of index ``i`` (see module docstring).

    Parameters
    ----------
    index : int ≥ 1
    interlayer_distance : float > 0, Å
    a : graphene lattice constant, Å

    Returns
    -------
    Geometry with N = 4(3i²+3i+1) atoms, atoms of layer 0 first.
    """
    _check_index(index)
    if not interlayer_distance > 0:
        raise InputError(f"interlayer distance must be > 0 Å, got {interlayer_distance!r}")
    i = int(index)
    av = graphene_vectors(a)
    cell = np.array([i * av[0] + (i + 1) * av[1], -(i + 1) * av[0] + (2 * i + 1) * av[1]])
    theta = math.radians(twist_angle(i))
    inv = np.linalg.inv(cell)
    basis = np.array([[0.0, 0.0], (av[0] + av[1]) / 3.0])
    # enumerate graphene lattice points n1 a1 + n2 a2 covering the cell (a generous box)
    nmax = 3 * i + 4
    n1, n2 = np.meshgrid(np.arange(-nmax, nmax + 1), np.arange(-nmax, nmax + 1), indexing="ij")
    lat = n1.reshape(-1, 1) * av[0] + n2.reshape(-1, 1) * av[1]
    pos, lay, sub = [], [], []
    eps = 1e-8
    for layer, rot in ((0, np.eye(2)), (1, rotation(theta))):
        for s, b in enumerate(basis):
            pts = (lat + b) @ rot.T
            frac = pts @ inv
            frac = frac - np.floor(frac + eps)  # wrap into [0, 1) with a tolerance at the boundary
            frac[np.abs(frac) < eps] = 0.0
            _, first = np.unique(np.round(frac, 7), axis=0, return_index=True)
            frac = frac[np.sort(first)]
            pos.append(frac @ cell)
            lay.append(np.full(len(frac), layer, np.int8))
            sub.append(np.full(len(frac), s, np.int8))
    xy = np.concatenate(pos)
    layer_arr = np.concatenate(lay)
    sub_arr = np.concatenate(sub)
    order = np.lexsort((sub_arr, layer_arr))
    xy, layer_arr, sub_arr = xy[order], layer_arr[order], sub_arr[order]
    expected = n_atoms(i)
    if len(xy) != expected:  # pragma: no cover - guards the construction itself
        raise RuntimeError(f"TBG i={i}: built {len(xy)} atoms, expected {expected}")
    positions = np.column_stack([xy, interlayer_distance * layer_arr.astype(float)])
    aa = np.zeros((1, 2))
    ab = np.array([[1 / 3, 1 / 3], [2 / 3, 2 / 3]]) @ cell
    return Geometry(positions, cell, layer_arr, sub_arr, twist_angle(i), i, float(interlayer_distance), aa, ab)
