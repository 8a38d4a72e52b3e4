r"""What every interaction term shares: the mean-field potential of a density change and its form.

A mean-field potential of the collinear (spin-diagonal) Hartree–Fock problem has two parts,

.. math::

    \Sigma_{\sigma,ij}(\mathbf R) = v_{\sigma,i}\,\delta_{ij}\delta_{\mathbf R 0} + F_{\sigma,ij}(\mathbf R),

a site-diagonal part :math:`v_{\sigma i}` (Hubbard, Hartree) and a pair part :math:`F` on the exchange
pair list (Fock). :class:`Potential` holds both; the Bloch matrix at k is
:math:`\Sigma_\sigma(\mathbf k) = \mathrm{diag}(v_\sigma) + \sum_{\mathbf R}F_\sigma(\mathbf R)e^{2\pi i\mathbf k\cdot\mathbf R}`,
built by :func:`moireu.lattice.bloch_sum` (the one pair → Bloch routine of the package).

Every term acts on the *change* of the density matrix :math:`\delta\rho = \rho - \rho^0` (see
:mod:`moireu.hf.system`) and implements :class:`Term`: its potential, its Bloch matrix at k and its
energy, all from :class:`Density` δρ and the physics parameters :class:`Params`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from moireu.errors import InputError

__all__ = ["Density", "INITS", "Params", "Potential", "Term"]

#: the initial moment patterns a solve can start from (:meth:`moireu.hf.system.HFSystem.seed_moment`)
INITS = ("paramagnetic", "afm", "ferro", "random")


@dataclass(frozen=True)
class Params:
    """Physics parameters of one solve (kwant's ``params=``), kept apart from numerical options.

    Parameters
    ----------
    U : Hubbard U (eV, ≥ 0)
    filling : ν ∈ [−4, 4], electrons per moiré cell relative to neutrality
    kT : temperature k_B T (eV, > 0)
    """

    U: float = 0.0
    filling: float = 0.0
    kT: float = 0.001

    def __post_init__(self) -> None:
        U, nu, kT = float(self.U), float(self.filling), float(self.kT)
        if not (math.isfinite(U) and U >= 0):
            raise InputError(f"Hubbard U must be ≥ 0 eV, got {self.U!r}")
        if not (math.isfinite(nu) and abs(nu) <= 4.0):
            raise InputError(f"filling ν must lie in [−4, 4], got {self.filling!r}")
        if not (math.isfinite(kT) and kT > 0):
            raise InputError(f"kT must be > 0 eV, got {self.kT!r}")
        object.__setattr__(self, "U", U)
        object.__setattr__(self, "filling", nu)
        object.__setattr__(self, "kT", kT)

    def as_dict(self) -> dict[str, float]:
        return {"U": self.U, "filling": self.filling, "kT": self.kT}


@dataclass
class Density:
    """Site occupations n (N, 2) (spin 0 = ↑) and the pair density matrix ρ (2, npair) on the half
    exchange pair list; used both for ρ and for δρ = ρ − ρ⁰."""

    n: np.ndarray
    rho: np.ndarray

    def __sub__(self, other: "Density") -> "Density":
        return Density(self.n - other.n, self.rho - other.rho)

    def vector(self) -> np.ndarray:
        """Flat state vector (n↑, n↓, ρ↑, ρ↓) for the mixer."""
        return np.concatenate([self.n.T.ravel(), self.rho.ravel()])

    @classmethod
    def from_vector(cls, x: np.ndarray, n_orb: int) -> "Density":
        x = np.asarray(x, float)
        return cls(x[:2 * n_orb].reshape(2, n_orb).T.copy(), x[2 * n_orb:].reshape(2, -1).copy())


@dataclass
class Potential:
    """Mean-field potential: site-diagonal ``diag`` (2, N) and exchange pair values ``pair`` (2, npair)."""

    diag: np.ndarray
    pair: np.ndarray

    @classmethod
    def zeros(cls, n_orb: int, n_pair: int) -> "Potential":
        return cls(np.zeros((2, n_orb)), np.zeros((2, n_pair)))

    def __add__(self, other: "Potential") -> "Potential":
        return Potential(self.diag + other.diag, self.pair + other.pair)

    def __iadd__(self, other: "Potential") -> "Potential":
        self.diag += other.diag
        self.pair += other.pair
        return self

    def energy_shift(self, d: Density) -> float:
        r""":math:`\mathrm{Tr}[\Sigma\rho] = \sum_{i\sigma}v_{\sigma i}n_{i\sigma} + 2\sum_{\sigma,p\in\text{half}}F_{\sigma p}\rho_{\sigma p}`
        (each half-list pair stands for itself and its reverse)."""
        return float(np.sum(self.diag.T * d.n)) + 2.0 * float(np.sum(self.pair * d.rho))


class Term(ABC):
    """One interaction term of the mean-field Hamiltonian (Hubbard, Hartree, Fock).

    Subclasses implement :meth:`potential` (the mean field of δρ) and :meth:`energy`
    (the interaction energy of δρ, eV per cell); :meth:`bloch` is common.
    """

    name: str = "term"

    def __init__(self, n_orb: int, exchange_pairs=None) -> None:
        self.n_orb = int(n_orb)
        self.exchange_pairs = exchange_pairs  # moireu.hf.terms.fock.ExchangePairs or None

    @property
    def n_pair(self) -> int:
        return 0 if self.exchange_pairs is None else len(self.exchange_pairs)

    @abstractmethod
    def potential(self, d: Density, p: Params) -> Potential:
        """Mean-field potential of the density change ``d`` = δρ."""

    @abstractmethod
    def energy(self, d: Density, p: Params) -> float:
        """Interaction energy of δρ (eV per moiré cell)."""

    def active(self, p: Params) -> bool:
        """Whether the term contributes at these parameters (lets the driver skip work)."""
        return True

    def bloch(self, d: Density, p: Params, k_frac, spin: int) -> np.ndarray:
        """(N, N) Bloch matrix :math:`\\Sigma_\\sigma(\\mathbf k)` of this term's potential."""
        pot = self.potential(d, p)
        out = np.zeros((self.n_orb, self.n_orb), complex)
        if self.exchange_pairs is not None and np.any(pot.pair[spin]):
            out += self.exchange_pairs.bloch(pot.pair[spin], k_frac)
        out[np.diag_indices(self.n_orb)] += pot.diag[spin]
        return out
