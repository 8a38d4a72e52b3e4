r"""Long-range Hartree term of the gate-screened Coulomb interaction.

.. math::  v_{\sigma i} = \sum_j W_{ij}\,\delta n_j,\qquad
           E_H = \tfrac12\sum_{ij}\delta n_i W_{ij}\delta n_j,\qquad \delta n_j = \sum_\sigma \delta n_{j\sigma},

with the periodic lattice sum :math:`W_{ij} = \sum_{\mathbf R} V(\mathbf r_j + \mathbf R - \mathbf r_i)`
(on-site i = j, R = 0 excluded: it is the Hubbard U) computed by Ewald summation in
:func:`moireu.hf.coulomb.hartree_matrix`. The potential is spin independent and site diagonal.
"""

from __future__ import annotations

import numpy as np

from moireu.hf.coulomb import CoulombParams, hartree_matrix
from moireu.hf.terms.base import Density, Params, Potential, Term

__all__ = ["Hartree"]


class Hartree(Term):
    """Gate-screened Hartree term with the precomputed (N, N) kernel ``W`` (eV)."""

    name = "hartree"

    def __init__(self, W: np.ndarray, exchange_pairs=None) -> None:
        super().__init__(W.shape[0], exchange_pairs)
        self.W = np.asarray(W, float)

    @classmethod
    def build(cls, model, coulomb: CoulombParams, exchange_pairs=None) -> "Hartree":
        return cls(hartree_matrix(model.positions, model.cell, coulomb.eps, coulomb.gate_distance), exchange_pairs)

    def potential(self, d: Density, p: Params) -> Potential:
        v = self.W @ d.n.sum(axis=1)
        return Potential(np.vstack([v, v]), np.zeros((2, self.n_pair)))

    def energy(self, d: Density, p: Params) -> float:
        dt = d.n.sum(axis=1)
        return 0.5 * float(dt @ self.W @ dt)
