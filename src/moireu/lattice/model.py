"""Slater–Koster pz tight-binding model and Bloch Hamiltonians.

Hopping between pz orbitals separated by :math:`\\mathbf d` (Moon & Koshino, PRB 87, 205404 (2013);
Trambly de Laissardière, Mayou & Magaud, Nano Lett. 10, 804 (2010)):

.. math::

    -t(\\mathbf d) = V_{pp\\pi}(d)\\left[1-\\left(\\frac{d_z}{d}\\right)^2\\right]
                   + V_{pp\\sigma}(d)\\left(\\frac{d_z}{d}\\right)^2,\\qquad
    V_{pp\\pi}(d) = V^0_{pp\\pi} e^{-(d-a_{cc})/\\delta_0},\\quad
    V_{pp\\sigma}(d) = V^0_{pp\\sigma} e^{-(d-d_0)/\\delta_0},

with :math:`V^0_{pp\\pi} = -2.7` eV, :math:`V^0_{pp\\sigma} = 0.48` eV, :math:`a_{cc} = 1.42` Å,
:math:`d_0 = 3.35` Å, :math:`\\delta_0 = 0.184\\,a`. The matrix element :math:`H_{ij} = -t` is what
the formula gives; all pairs within ``cutoff`` (3-D distance) are kept.

Gauge ("cell gauge"): :math:`H_{ij}(\\mathbf k) = \\sum_{\\mathbf R} t_{ij}(\\mathbf R)
e^{2\\pi i\\, \\mathbf k_{frac}\\cdot \\mathbf R}` with R the integer supercell shift of orbital j.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from moireu.constants import A_CC, D_INTERLAYER, DELTA0, VPP_PI0, VPP_SIGMA0
from moireu.errors import InputError
from moireu.lattice.geometry import Geometry, graphene_geometry, tbg_geometry


@dataclass(frozen=True)
class PairList:
    """All ordered pairs (i, j, R) with ``|r_j + R·cell − r_i| ≤ rmax`` (the on-site (i, i, 0) excluded).

    Attributes
    ----------
    i, j : (npair,) int64 orbital indices
    R : (npair, 2) int64 supercell shift of j
    dvec : (npair, 3) float64 vector r_j + R·cell − r_i (Å)
    """

    i: np.ndarray
    j: np.ndarray
    R: np.ndarray
    dvec: np.ndarray

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @property
    def dist(self) -> np.ndarray:
        return np.linalg.norm(self.dvec, axis=1)

    @cached_property
    def reverse(self) -> np.ndarray:
        """Index of the reversed pair (j, i, −R) for every pair (the list is closed under reversal)."""
        n = int(max(self.i.max(initial=0), self.j.max(initial=0))) + 1
        rmax = int(np.abs(self.R).max(initial=0)) + 1
        w = 2 * rmax + 1
        key = ((self.i * n + self.j) * w + (self.R[:, 0] + rmax)) * w + (self.R[:, 1] + rmax)
        rkey = ((self.j * n + self.i) * w + (-self.R[:, 0] + rmax)) * w + (-self.R[:, 1] + rmax)
        order = np.argsort(key)
        pos = np.searchsorted(key[order], rkey)
        return order[pos]

    @cached_property
    def _slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Unique flat (i, j) slots and the slot of every pair (pairs differing only in R share one)."""
        n = int(max(self.i.max(initial=0), self.j.max(initial=0))) + 1
        flat = self.i * n + self.j
        uniq, inv = np.unique(flat, return_inverse=True)
        return uniq, inv


def find_pairs(positions: np.ndarray, cell: np.ndarray, rmax: float) -> PairList:
    """Neighbour search over periodic images with a k-d tree (see :class:`PairList`)."""
    positions = np.asarray(positions, float)
    cell = np.asarray(cell, float)
    n = len(positions)
    # number of images needed along each lattice vector: rmax / (height of the cell along it) + 1
    area = abs(np.linalg.det(cell))
    heights = area / np.linalg.norm(cell, axis=1)
    nrep = np.ceil(rmax / heights).astype(int) + 1
    r1, r2 = np.meshgrid(np.arange(-nrep[0], nrep[0] + 1), np.arange(-nrep[1], nrep[1] + 1), indexing="ij")
    shifts = np.column_stack([r1.ravel(), r2.ravel()])
    offs = np.zeros((len(shifts), 3))
    offs[:, :2] = shifts @ cell
    images = (positions[None, :, :] + offs[:, None, :]).reshape(-1, 3)
    home = cKDTree(positions)
    tree = cKDTree(images)
    dm = home.sparse_distance_matrix(tree, rmax, output_type="coo_matrix").tocoo()
    i = dm.row.astype(np.int64)
    big = dm.col.astype(np.int64)
    j = big % n
    R = shifts[big // n].astype(np.int64)
    keep = ~((i == j) & (R[:, 0] == 0) & (R[:, 1] == 0))
    i, j, R = i[keep], j[keep], R[keep]
    # sparse_distance_matrix drops exact zeros only for identical points; keep order deterministic
    order = np.lexsort((R[:, 1], R[:, 0], j, i))
    i, j, R = i[order], j[order], R[order]
    dvec = positions[j] - positions[i]
    dvec[:, :2] += R @ cell
    return PairList(i, j, R, dvec)


def slater_koster(dvec: np.ndarray, vpp_pi0: float = VPP_PI0, vpp_sigma0: float = VPP_SIGMA0,
                  a_cc: float = A_CC, d0: float = D_INTERLAYER, delta0: float = DELTA0) -> np.ndarray:
    """Hopping matrix elements H_ij = −t(d) (eV) for separation vectors ``dvec`` (…, 3) in Å."""
    d = np.linalg.norm(dvec, axis=-1)
    c2 = (dvec[..., 2] / d) ** 2
    vpi = vpp_pi0 * np.exp(-(d - a_cc) / delta0)
    vsig = vpp_sigma0 * np.exp(-(d - d0) / delta0)
    return vpi * (1.0 - c2) + vsig * c2


def bloch_sum(pairs: PairList, values: np.ndarray, k_frac, n: int, onsite: np.ndarray | None = None) -> np.ndarray:
    """Dense matrix :math:`M_{ij}(k) = \\sum_{R} X_{ij}(R) e^{2\\pi i k\\cdot R}` from pair values.

    Parameters
    ----------
    pairs : PairList (defines i, j, R)
    values : (npair,) real or complex pair values X_ij(R)
    k_frac : (2,) fractional k
    n : matrix size
    onsite : optional (n,) real diagonal added to the result
    """
    k = np.asarray(k_frac, float).reshape(2)
    w = values * np.exp(2j * math.pi * (pairs.R @ k))
    uniq, inv = pairs._slots
    vals = np.bincount(inv, weights=w.real, minlength=len(uniq)) + 1j * np.bincount(
        inv, weights=w.imag, minlength=len(uniq))
    if len(uniq) and uniq[-1] >= n * n:
        raise ValueError(f"pair indices exceed the matrix size {n}")
    out = np.zeros((n, n), np.complex128)
    out.flat[uniq] = vals
    if onsite is not None:
        out[np.diag_indices(n)] += onsite
    return out


@dataclass(frozen=True)
class TightBindingModel:
    """Immutable pz tight-binding model on a 2-D periodic geometry (the "finalized" system).

    Build it with :func:`build_tbg` or :func:`build_graphene`; it serves any number of solves.
    """

    geometry: Geometry
    hoppings: PairList
    t: np.ndarray  # (npair,) eV, H_ij(R)
    cutoff: float
    name: str = "tbg"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.t.setflags(write=False)

    # --- geometry pass-through ---------------------------------------------------------------
    @property
    def n_orb(self) -> int:
        return self.geometry.n_orb

    @property
    def positions(self) -> np.ndarray:
        return self.geometry.positions

    @property
    def cell(self) -> np.ndarray:
        return self.geometry.cell

    @property
    def reciprocal(self) -> np.ndarray:
        return self.geometry.reciprocal

    @property
    def layer(self) -> np.ndarray:
        return self.geometry.layer

    @property
    def sublattice(self) -> np.ndarray:
        return self.geometry.sublattice

    @property
    def theta_deg(self) -> float:
        return self.geometry.theta_deg

    @property
    def index(self) -> int:
        return self.geometry.index

    @property
    def interlayer_distance(self) -> float:
        return self.geometry.interlayer_distance

    @property
    def aa_centers(self) -> np.ndarray:
        return self.geometry.aa_centers

    @property
    def ab_centers(self) -> np.ndarray:
        return self.geometry.ab_centers

    def describe(self) -> dict:
        return {"name": self.name, "index": self.index, "theta_deg": self.theta_deg, "n_atoms": self.n_orb,
                "interlayer_distance": self.interlayer_distance, "cutoff": self.cutoff,
                "n_hoppings": len(self.hoppings)}

    # --- Hamiltonians --------------------------------------------------------------------------
    def k_cart(self, k_frac) -> np.ndarray:
        """Fractional → Cartesian k (Å⁻¹)."""
        return np.asarray(k_frac, float)[..., :2] @ self.reciprocal

    def k_frac(self, k_cart) -> np.ndarray:
        """Cartesian (Å⁻¹) → fractional k."""
        return np.asarray(k_cart, float)[..., :2] @ self.cell.T / (2 * math.pi)

    def hk(self, k_frac) -> np.ndarray:
        """Dense Bloch Hamiltonian H(k) (N, N) complex128, Hermitian (eV)."""
        return bloch_sum(self.hoppings, self.t, k_frac, self.n_orb)

    def hk_batch(self, k_frac) -> np.ndarray:
        """(nk, N, N) stack of :meth:`hk`."""
        k = np.atleast_2d(np.asarray(k_frac, float))
        return np.stack([self.hk(kk) for kk in k])

    def hk_sparse(self, k_frac) -> sp.csr_matrix:
        """Sparse (CSR) Bloch Hamiltonian."""
        k = np.asarray(k_frac, float).reshape(2)
        vals = self.t * np.exp(2j * math.pi * (self.hoppings.R @ k))
        m = sp.coo_matrix((vals, (self.hoppings.i, self.hoppings.j)), shape=(self.n_orb, self.n_orb))
        return m.tocsr()  # duplicates (same i, j, different R) are summed

    def pairs(self, rmax: float) -> PairList:
        """Pairs within ``rmax`` (Å) on this geometry (cached per radius)."""
        key = ("pairs", round(float(rmax), 9))
        if key not in self._cache:
            self._cache[key] = find_pairs(self.positions, self.cell, rmax)
        return self._cache[key]

    def eigh(self, k_frac, vectors: bool = False):
        """Eigenvalues (and eigenvectors) of H(k) with LAPACK's evr driver."""
        from scipy.linalg import eigh

        h = self.hk(k_frac)
        if vectors:
            return eigh(h, driver="evr", overwrite_a=True, check_finite=False)
        return eigh(h, eigvals_only=True, driver="evr", overwrite_a=True, check_finite=False)

    def to_sisl(self):
        """The same model as a :class:`sisl.Hamiltonian` (for cross-checks and sisl tooling)."""
        import sisl

        lat = sisl.Lattice(np.array([[*self.cell[0], 0], [*self.cell[1], 0], [0, 0, 30.0]]))
        nsc0 = 2 * int(np.abs(self.hoppings.R[:, 0]).max()) + 1
        nsc1 = 2 * int(np.abs(self.hoppings.R[:, 1]).max()) + 1
        lat.set_nsc([nsc0, nsc1, 1])
        geom = sisl.Geometry(self.positions.copy(), atoms=sisl.Atom(6, R=self.cutoff), lattice=lat)
        H = sisl.Hamiltonian(geom, dtype=np.float64)
        isc = geom.lattice.sc_index(np.column_stack([self.hoppings.R, np.zeros(len(self.hoppings), int)]))
        cols = np.asarray(isc) * self.n_orb + self.hoppings.j
        csr = sp.csr_matrix((self.t, (self.hoppings.i, cols)), shape=(self.n_orb, self.n_orb * geom.n_s))
        H = sisl.Hamiltonian.fromsp(geom, csr)
        return H


def build_tbg(index: int, interlayer_distance: float = D_INTERLAYER, cutoff: float = 6.0) -> TightBindingModel:
    """Commensurate TBG with Slater–Koster hoppings (see module docstring).

    Parameters
    ----------
    index : commensurate index i ≥ 1 (i = 9: θ = 3.481°, 1084 atoms)
    interlayer_distance : d > 0 (Å); smaller d ("pressure") flattens the central bands
    cutoff : hopping cutoff radius (Å), must exceed a_cc = 1.42 Å
    """
    if not cutoff > A_CC:
        raise InputError(f"hopping cutoff must exceed a_cc = {A_CC} Å, got {cutoff!r}")
    geom = tbg_geometry(index, interlayer_distance)
    pairs = find_pairs(geom.positions, geom.cell, cutoff)
    t = slater_koster(pairs.dvec)
    return TightBindingModel(geom, pairs, t, float(cutoff), name=f"tbg_i{index}")


def build_graphene(t: float = 2.7, nn_only: bool = True, cutoff: float = 6.0) -> TightBindingModel:
    """Monolayer graphene: nearest-neighbour hopping −t (``nn_only``) or Slater–Koster up to ``cutoff``."""
    geom = graphene_geometry()
    if nn_only:
        pairs = find_pairs(geom.positions, geom.cell, 1.01 * A_CC)
        tv = np.full(len(pairs), -float(t))
        return TightBindingModel(geom, pairs, tv, 1.01 * A_CC, name="graphene_nn")
    if not cutoff > A_CC:
        raise InputError(f"hopping cutoff must exceed a_cc = {A_CC} Å, got {cutoff!r}")
    pairs = find_pairs(geom.positions, geom.cell, cutoff)
    return TightBindingModel(geom, pairs, slater_koster(pairs.dvec), float(cutoff), name="graphene_sk")
