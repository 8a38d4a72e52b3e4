"""The fast LDOS solvers (resolvent, window) give the full-eigensolver LDOS to rounding."""

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.hf import CoulombParams, HFSystem
from moireu.lattice import build_tbg
from moireu.stm import ldos_at
from moireu.stm.ldos import ldos_of_hamiltonian


@pytest.fixture(scope="module")
def afm_tbg1():
    """TBG i = 1 (28 atoms) with a converged antiferromagnetic HF state (spins differ, E_F in a gap or not)."""
    s = HFSystem(build_tbg(1, 3.35, 6.0), (2, 2), CoulombParams(eps=10.0, gate_distance=100.0, fock_range=5.0))
    res = s.solve(U=8.0, kT=0.001, init="afm")
    assert res.converged and res.max_moment > 0.1
    return s, res


@pytest.mark.parametrize("kind,solver", [("lorentzian", "resolvent"), ("gaussian", "window")])
def test_fast_ldos_solvers_equal_full_eigensolver(afm_tbg1, kind, solver):
    s, res = afm_tbg1
    # E_F (mid-gap of the AF state), the band edges around it, a point inside the valence band
    energies = [res.fermi_level, res.homo, res.lumo, res.homo - 0.3]
    kw = dict(energies=energies, eta=0.02, kind=kind, kmesh=(3, 3), per_spin=True)
    ref = ldos_at(s, res, solver="eigh", **kw)
    # the spectrum path of before (eigenpairs of system.spectrum, chunked) is the same reference
    old = ldos_at(s, res, **kw)  # auto on a small cell: the batched full eigensolver
    np.testing.assert_allclose(old, ref, rtol=0, atol=1e-10)
    fast = ldos_at(s, res, solver=solver, **kw)
    assert ref.shape == (4, 2, s.n_orb) and ref.max() > 0.01
    assert np.abs(fast - ref).max() < 1e-10
    # the spins differ (AF state), so a spin mix-up would show
    assert np.abs(ref[:, 0] - ref[:, 1]).max() > 1e-3


def test_ldos_of_hamiltonian_solvers_and_extremes(afm_tbg1):
    s, res = afm_tbg1
    pot = s.potential_of(res)
    k = np.array([0.1, 0.27])  # a generic (complex) k
    H = s.bloch(pot, k, 1)
    H0 = H.copy()
    E = np.array([res.fermi_level, res.homo, res.lumo + 0.01])
    ev = np.linalg.eigvalsh(H)
    L, rng = ldos_of_hamiltonian(H, E, 0.004, "lorentzian", "eigh")
    assert rng == pytest.approx((ev[0], ev[-1]), abs=1e-12)
    L2, rng2 = ldos_of_hamiltonian(H, E, 0.004, "lorentzian", "resolvent")
    assert rng2 is None and np.abs(L2 - L).max() < 1e-10 * max(1.0, np.abs(L).max())
    G, _ = ldos_of_hamiltonian(H, E, 0.004, "gaussian", "eigh")
    G2, _ = ldos_of_hamiltonian(H, E, 0.004, "gaussian", "window")
    assert np.abs(G2 - G).max() < 1e-10
    np.testing.assert_array_equal(H, H0)  # the input is not overwritten
    # the real gauge at a time-reversal-invariant k
    Hg = s.bloch(pot, np.zeros(2), 0)
    Lr, _ = ldos_of_hamiltonian(Hg, E, 0.004, "lorentzian", "eigh", real=True)
    Lc, _ = ldos_of_hamiltonian(Hg, E, 0.004, "lorentzian", "resolvent")
    assert np.abs(Lr - Lc).max() < 1e-10 * max(1.0, np.abs(Lr).max())


def test_ldos_solver_errors_and_range_check(afm_tbg1):
    s, res = afm_tbg1
    with pytest.raises(InputError, match="Lorentzian broadening only"):
        ldos_at(s, res, biases=[0.0], kind="gaussian", solver="resolvent", kmesh=(2, 2))
    with pytest.raises(InputError, match="Gaussian broadening only"):
        ldos_at(s, res, biases=[0.0], kind="lorentzian", solver="window", kmesh=(2, 2))
    with pytest.raises(InputError, match="unknown LDOS solver"):
        ldos_at(s, res, biases=[0.0], solver="lanczos", kmesh=(2, 2))
    # the resolvent path computes no eigenvalues, yet a bias outside the spectrum is still refused
    # with the exact allowed range
    with pytest.raises(InputError, match="outside the computed spectrum"):
        ldos_at(s, res, biases=[50.0], solver="resolvent", kmesh=(3, 3))
    with pytest.raises(InputError, match="outside the computed spectrum"):
        ldos_at(s, res, biases=[-50.0], kind="gaussian", solver="window", kmesh=(3, 3))
