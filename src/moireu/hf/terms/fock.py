r"""Exchange (Fock) term of the gate-screened Coulomb interaction, and its pair list.

.. math::

    F_{\sigma,ij}(\mathbf R) = -V(\mathbf r_j+\mathbf R-\mathbf r_i)\,\delta\rho_{\sigma,ij}(\mathbf R),
    \qquad E_F = -\tfrac12\sum_{\sigma}\sum_{ij\mathbf R}V_{ij}(\mathbf R)\,\delta\rho_{\sigma,ij}(\mathbf R)^2,

for :math:`|\mathbf r_j+\mathbf R-\mathbf r_i| \le` ``fock_range`` (on-site excluded: it is in the Hubbard U),
with :math:`\rho_{\sigma,ij}(\mathbf R) = \langle c^\dagger_{j\mathbf R\sigma}c_{i\mathbf 0\sigma}\rangle
= \sum_{\mathbf k} w_{\mathbf k}\sum_n f_{n\mathbf k\sigma}\psi_{in}\psi^*_{jn}e^{-2\pi i\mathbf k\cdot\mathbf R}`
(cell gauge). Spinless time reversal per spin makes ρ(R) real and
:math:`\rho_{ji}(-\mathbf R) = \rho_{ij}(\mathbf R)`, so the state keeps one of each pair
(i, j, R)/(j, i, −R) (the *half list*) and the Bloch matrix is the lattice's
:func:`~moireu.lattice.bloch_sum` over the full list.
"""

from __future__ import annotations

import math

import numpy as np

from moireu.hf.coulomb import CoulombParams, gated_potential
from moireu.hf.terms.base import Density, Params, Potential, Term
from moireu.lattice import PairList, bloch_sum

__all__ = ["ExchangePairs", "Fock"]


class ExchangePairs:
    """Half list of exchange pairs (i ≤ j) with V(r) on it, and the map to the full list.

    Attributes
    ----------
    i, j, R : half list (one of each (i, j, R)/(j, i, −R)), sorted by (i, j)
    V : (npair,) gated Coulomb potential on the half list (eV)
    dist : (npair,) 3-D pair distance (Å)
    full : the full :class:`~moireu.lattice.PairList` (closed under reversal)
    half_of_full : (2 npair,) index of every full-list pair in the half list
    """

    def __init__(self, model, coulomb: CoulombParams) -> None:
        pl = model.pairs(coulomb.fock_range)
        R = pl.R
        keep = (pl.i < pl.j) | ((pl.i == pl.j) & ((R[:, 0] > 0) | ((R[:, 0] == 0) & (R[:, 1] > 0))))
        idx = np.nonzero(keep)[0]
        idx = idx[np.lexsort((pl.j[idx], pl.i[idx]))]
        self.i, self.j, self.R = pl.i[idx].copy(), pl.j[idx].copy(), pl.R[idx].copy()
        dvec = pl.dvec[idx]
        z = model.positions[:, 2] - 0.5 * (model.positions[:, 2].min() + model.positions[:, 2].max())
        self.dist = np.linalg.norm(dvec, axis=1)
        self.V = gated_potential(np.linalg.norm(dvec[:, :2], axis=1), z[self.i], z[self.j], coulomb.eps,
                                 coulomb.gate_distance)
        rank = np.full(len(pl), -1, np.int64)
        rank[idx] = np.arange(len(idx))
        self.half_of_full = np.where(keep, rank, rank[pl.reverse])
        self.full = PairList(pl.i, pl.j, pl.R, pl.dvec)
        self.n_orb = int(model.n_orb)

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def bloch(self, values: np.ndarray, k_frac) -> np.ndarray:
        """(N, N) :math:`\\sum_{\\mathbf R}X_{ij}(\\mathbf R)e^{2\\pi i\\mathbf k\\cdot\\mathbf R}` of real
        half-list values X (symmetric under (i, j, R) ↔ (j, i, −R))."""
        return bloch_sum(self.full, np.asarray(values, float)[self.half_of_full], k_frac, self.n_orb)

    def density(self, A: np.ndarray, k_frac) -> np.ndarray:
        r""":math:`\mathrm{Re}\sum_n A_{in}A^*_{jn}e^{-2\pi i\mathbf k\cdot\mathbf R}` on the half list,
        A = ψ√f (N, m) (occupation-weighted eigenvectors at one k); chunked row gathers."""
        out = np.empty(len(self))
        if not len(self):
            return out
        ph = np.exp(-2j * math.pi * (self.R @ np.asarray(k_frac, float)))
        if not np.iscomplexobj(A) or not np.any(A.imag):
            Ar = np.ascontiguousarray(A.real)
            for s in range(0, len(self), 512):
                a, b = self.i[s:s + 512], self.j[s:s + 512]
                out[s:s + 512] = np.einsum("pn,pn->p", Ar[a], Ar[b]) * ph[s:s + 512].real
            return out
        Ar, Ai = np.ascontiguousarray(A.real), np.ascontiguousarray(A.imag)
        for s in range(0, len(self), 256):
            a, b = self.i[s:s + 256], self.j[s:s + 256]
            xr, xi, yr, yi = Ar[a], Ai[a], Ar[b], Ai[b]
            re = np.einsum("pn,pn->p", xr, yr) + np.einsum("pn,pn->p", xi, yi)
            im = np.einsum("pn,pn->p", xi, yr) - np.einsum("pn,pn->p", xr, yi)
            p = ph[s:s + 256]
            out[s:s + 256] = re * p.real - im * p.imag
        return out


class Fock(Term):
    """Exchange of the gate-screened Coulomb interaction within ``fock_range``."""

    name = "fock"

    def __init__(self, exchange_pairs: ExchangePairs) -> None:
        super().__init__(exchange_pairs.n_orb, exchange_pairs)

    def potential(self, d: Density, p: Params) -> Potential:
        return Potential(np.zeros((2, self.n_orb)), -self.exchange_pairs.V[None, :] * d.rho)

    def energy(self, d: Density, p: Params) -> float:
        # half list: each pair stands for itself and its reverse, ½ · 2 = 1
        return -float(np.sum(self.exchange_pairs.V[None, :] * d.rho ** 2))
