"""The package's one Fermi level: bisection root when metallic, mid-gap when the filling is gapped."""

import math

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.lattice import FermiLevel, fermi_dirac, fermi_level, fermi_solve


def test_fermi_dirac_limits_and_symmetry():
    e = np.array([-1.0, -1e-3, 0.0, 1e-3, 1.0])
    f = fermi_dirac(e, 0.0, 1e-3)
    assert f[0] == 1.0 and f[-1] == 0.0 and f[2] == 0.5
    assert f[1] + f[3] == pytest.approx(1.0, abs=1e-15)
    assert f[1] == pytest.approx(1.0 / (math.exp(-1.0) + 1.0), rel=1e-14)
    assert np.all(np.isfinite(fermi_dirac(np.array([-1e300, 1e300]), 0.0, 1e-6)))


def test_gapped_filling_puts_mu_mid_gap():
    # two k-points, valence edge at -0.3 and -0.5, conduction edge at 0.9 and 1.4: gap -0.3 … 0.9
    eigs = np.array([[-2.0, -0.3, 0.9, 3.0], [-1.5, -0.5, 1.4, 2.0]])
    w = np.array([0.25, 0.75])
    fl = fermi_solve(eigs, w, n_electrons=4.0, kT=1e-3, degeneracy=2.0)
    assert isinstance(fl, FermiLevel) and fl.gapped
    assert fl.mu == pytest.approx(0.3, abs=1e-14)
    assert (fl.homo, fl.lumo) == (-0.3, 0.9) and fl.gap == pytest.approx(1.2)
    # whatever kT ≪ gap, the same μ (no drift to 25 kT above the valence edge)
    for kT in (1e-4, 1e-2):
        assert fermi_level(eigs, w, 4.0, kT, 2.0) == pytest.approx(0.3, abs=1e-14)


def test_small_gap_gives_the_exact_thermal_root():
    # gap of 4 kT with unequal edge weights: μ = mid + (kT/2) ln(g_c/g_v) to O(e^{-Δ/2kT})
    kT = 0.01
    eigs = np.array([[-0.02, 0.02]])
    w = np.array([1.0])
    eigs3 = np.array([[-0.02, 0.02, 0.02, 0.02]])  # conduction edge three-fold
    fl = fermi_solve(eigs3, w, 1.0, kT)
    n = float(np.sum(fermi_dirac(eigs3, fl.mu, kT)))
    assert n == pytest.approx(1.0, abs=1e-12) and not fl.gapped
    assert fermi_solve(eigs, w, 1.0, kT).mu == pytest.approx(0.0, abs=1e-13)
    assert fl.mu < 0.0  # more states above pull μ down: f(−μ) balance
    assert fl.mu == pytest.approx(-0.5 * kT * math.log(3.0), abs=0.1 * kT)


def test_metallic_root_counts_electrons():
    rng = np.random.default_rng(1)
    eigs = np.sort(rng.normal(size=(7, 2, 30)), axis=-1)
    w = rng.uniform(0.5, 1.0, 7)
    w /= w.sum()
    for ne in (13.3, 30.0, 47.9):
        fl = fermi_solve(eigs, w, ne, 0.02)
        count = float(np.sum(w[:, None, None] * fermi_dirac(eigs, fl.mu, 0.02)))
        assert count == pytest.approx(ne, abs=1e-10)
        assert fl.homo <= fl.mu < fl.lumo


def test_bad_input():
    eigs = np.zeros((2, 3))
    w = np.array([0.5, 0.5])
    with pytest.raises(InputError, match="do not fit"):
        fermi_solve(eigs, w, 7.0, 0.01)
    with pytest.raises(InputError, match="kT"):
        fermi_solve(eigs, w, 1.0, 0.0)
    with pytest.raises(InputError, match="weights"):
        fermi_solve(eigs, np.ones(3), 1.0, 0.01)
