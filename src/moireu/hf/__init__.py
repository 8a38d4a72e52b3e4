"""Stage 2 — self-consistent Hartree–Fock (Hubbard U + gate-screened long-range Coulomb).

Build once, solve many times::

    system = HFSystem(model, kmesh=(3, 3), coulomb=CoulombParams(eps=10.0, gate_distance=100.0))
    res = system.solve(U=4.0, filling=0.0, kT=0.001, init="afm")   # physics by name, numerics as options
    # parts: moireu.hf.terms (Hubbard, Hartree, Fock), moireu.hf.scf (the driver), moireu.hf.mixing
    res.converged, res.fermi_level, res.magnetization, res.summary()
    system.hamiltonian(res, k_frac), system.spectrum(res, k_frac, weights)
"""

from moireu.hf.coulomb import CoulombParams, gated_potential, gated_potential_q, hartree_matrix, hartree_matrix_direct
from moireu.hf.mixing import AdaptiveMixer, Mixer, make_mixer
from moireu.hf.result import HFResult
from moireu.hf.scf import SCFOptions, run_scf
from moireu.hf.system import HFSystem
from moireu.hf.terms import Density, Fock, Hartree, Hubbard, Params, Potential, Term

__all__ = ["AdaptiveMixer", "CoulombParams", "Density", "Fock", "HFResult", "HFSystem", "Hartree", "Hubbard", "Mixer",
           "Params", "Potential", "SCFOptions", "Term", "gated_potential", "gated_potential_q", "hartree_matrix",
           "hartree_matrix_direct", "make_mixer", "run_scf"]
