r"""On-site Hubbard term :math:`U\sum_i n_{i\uparrow}n_{i\downarrow}` in the collinear mean field.

.. math::  v_{\sigma i} = U\,\delta n_{i,-\sigma},\qquad
           E_U = U\sum_i \delta n_{i\uparrow}\,\delta n_{i\downarrow},

with :math:`\delta n = n - n^0` (on a particle–hole symmetric lattice :math:`n^0_{i\sigma} = 1/2`, the
familiar :math:`U(\langle n_{i,-\sigma}\rangle - \tfrac12)`). The Hartree and the on-site exchange of a
spin-diagonal state combine into exactly this form (the same-spin parts cancel).
"""

from __future__ import annotations

import numpy as np

from moireu.hf.terms.base import Density, Params, Potential, Term

__all__ = ["Hubbard"]


class Hubbard(Term):
    """On-site U; the value of U comes from :class:`~moireu.hf.terms.base.Params` at solve time."""

    name = "hubbard"

    def active(self, p: Params) -> bool:
        return p.U != 0.0

    def potential(self, d: Density, p: Params) -> Potential:
        diag = p.U * d.n[:, ::-1].T  # spin σ feels U δn_{−σ}
        return Potential(np.ascontiguousarray(diag), np.zeros((2, self.n_pair)))

    def energy(self, d: Density, p: Params) -> float:
        return p.U * float(d.n[:, 0] @ d.n[:, 1])
