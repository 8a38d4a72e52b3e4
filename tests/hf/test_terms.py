"""Interaction terms: one interface, potentials are the gradients of the energies, Bloch matrices."""

import math

import numpy as np
import pytest

from moireu.hf import CoulombParams, Density, Fock, Hartree, HFSystem, Hubbard, Params
from moireu.lattice import build_tbg


@pytest.fixture(scope="module")
def system():
    return HFSystem(build_tbg(1, 3.35, 6.0), (2, 2), CoulombParams(fock_range=4.0))


def _random_density(system, rng, scale=0.05):
    return Density(scale * rng.normal(size=(system.n_orb, 2)), scale * rng.normal(size=(2, system.n_pair)))


def test_system_has_the_three_terms(system):
    assert [type(t) for t in system.terms] == [Hubbard, Hartree, Fock]
    short = HFSystem(system.model, (2, 2), CoulombParams(long_range=False))
    assert [type(t) for t in short.terms] == [Hubbard] and short.n_pair == 0


@pytest.mark.parametrize("which", [0, 1, 2])
def test_potential_is_the_energy_gradient(system, which):
    """v_iσ = ∂E/∂n_iσ and F_p = ½ ∂E/∂ρ_p (a half-list pair stands for itself and its reverse)."""
    term = system.terms[which]
    p = Params(U=3.0)
    rng = np.random.default_rng(which)
    d = _random_density(system, rng)
    pot = term.potential(d, p)
    h = 1e-6
    for _ in range(5):
        i, s = rng.integers(system.n_orb), rng.integers(2)
        dp, dm = Density(d.n.copy(), d.rho), Density(d.n.copy(), d.rho)
        dp.n[i, s] += h
        dm.n[i, s] -= h
        fd = (term.energy(dp, p) - term.energy(dm, p)) / (2 * h)
        assert pot.diag[s, i] == pytest.approx(fd, abs=1e-7)
        q = rng.integers(system.n_pair)
        rp, rm = d.rho.copy(), d.rho.copy()
        rp[s, q] += h
        rm[s, q] -= h
        fd = (term.energy(Density(d.n, rp), p) - term.energy(Density(d.n, rm), p)) / (2 * h)
        assert 2 * pot.pair[s, q] == pytest.approx(fd, abs=1e-7)


def test_energy_is_quadratic_and_zero_at_reference(system):
    p = Params(U=2.0)
    d = _random_density(system, np.random.default_rng(5))
    for t in system.terms:
        assert t.energy(Density(0 * d.n, 0 * d.rho), p) == 0.0
        # E(λ δρ) = λ² E(δρ) and Tr[Σ δρ] = 2 E for a quadratic form
        assert t.energy(Density(2 * d.n, 2 * d.rho), p) == pytest.approx(4 * t.energy(d, p), rel=1e-12)
        assert t.potential(d, p).energy_shift(d) == pytest.approx(2 * t.energy(d, p), rel=1e-10, abs=1e-14)


def test_fock_bloch_matrix_is_the_direct_lattice_sum(system):
    fock = system.terms[2]
    pairs = fock.exchange_pairs
    p = Params()
    d = _random_density(system, np.random.default_rng(7))
    k = np.array([0.17, -0.31])
    for s in range(2):
        M = fock.bloch(d, p, k, s)
        F = fock.potential(d, p).pair[s]
        ref = np.zeros_like(M)
        for q in range(len(pairs)):
            ph = np.exp(2j * math.pi * pairs.R[q] @ k)
            ref[pairs.i[q], pairs.j[q]] += F[q] * ph
            ref[pairs.j[q], pairs.i[q]] += F[q] * np.conj(ph)
        np.testing.assert_allclose(M, ref, atol=1e-14)
        np.testing.assert_allclose(M, M.conj().T, atol=1e-15)
    # at a time-reversal-invariant k the mean-field Hamiltonian is real (the real-gauge eigensolve)
    pot = system.potential(Density(system.reference(0.001)[0].n + d.n, system.reference(0.001)[0].rho + d.rho),
                           Params(U=1.0))
    for kk in ([0.0, 0.0], [0.5, 0.0], [0.5, 0.5]):
        assert np.abs(system.bloch(pot, np.array(kk), 0).imag).max() < 1e-12


def test_fock_density_is_the_fourier_transform_of_rho_k(system):
    """Pair density from eigenvectors equals Re Σ_n A_in A*_jn e^{−2πik·R} computed directly."""
    pairs = system.pairs
    rng = np.random.default_rng(3)
    A = rng.normal(size=(system.n_orb, 5)) + 1j * rng.normal(size=(system.n_orb, 5))
    k = np.array([0.25, 0.1])
    got = pairs.density(A, k)
    rk = A @ A.conj().T
    want = (rk[pairs.i, pairs.j] * np.exp(-2j * math.pi * pairs.R @ k)).real
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(pairs.density(A.real, k), ((A.real @ A.real.T)[pairs.i, pairs.j]
                                                          * np.cos(2 * math.pi * pairs.R @ k)), atol=1e-12)
