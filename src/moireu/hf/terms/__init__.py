"""Interaction terms of the mean-field Hamiltonian, one per module, with one interface
(:class:`~moireu.hf.terms.base.Term`: potential from δρ, its Bloch matrix at k, its energy)."""

from moireu.hf.terms.base import INITS, Density, Params, Potential, Term
from moireu.hf.terms.fock import ExchangePairs, Fock
from moireu.hf.terms.hartree import Hartree
from moireu.hf.terms.hubbard import Hubbard

__all__ = ["INITS", "Density", "ExchangePairs", "Fock", "Hartree", "Hubbard", "Params", "Potential", "Term"]
