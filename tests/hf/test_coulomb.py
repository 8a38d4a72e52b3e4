"""Gate-screened Coulomb kernel and its lattice sums against independent references."""

import math

import numpy as np
import pytest

from moireu.constants import COULOMB_K
from moireu.errors import InputError
from moireu.hf.coulomb import (CoulombParams, _bessel_series, _image_real, gated_potential, gated_potential_q,
                               hartree_matrix, hartree_matrix_direct)
from moireu.lattice import build_graphene

L = 20.0  # a small gate distance keeps the direct reference sums cheap


def image_series(rho, z1, z2, eps=10.0, M=200_000):
    """Explicit image-charge series, partial sums averaged (alternating-series acceleration)."""
    n = np.arange(-M, M + 1)
    zn = n * L + np.where(n % 2 == 0, 1.0, -1.0) * z1
    t = np.where(n % 2 == 0, 1.0, -1.0) / np.sqrt(rho ** 2 + (z2 - zn) ** 2)
    s1 = t.sum()
    return COULOMB_K / eps * 0.5 * (s1 + s1 - t[0] - t[-1])


@pytest.mark.parametrize("rho,z1,z2", [(1.42, 0, 0), (3.0, 1.5, -1.5), (0.0, 1.5, -1.5), (6.0, -1.0, 1.0),
                                       (12.0, 0.3, 0.3)])
def test_kernel_matches_image_series(rho, z1, z2):
    assert float(gated_potential(rho, z1, z2, 10.0, L)) == pytest.approx(image_series(rho, z1, z2), abs=1e-11)


def test_bessel_and_quadrature_forms_agree():
    for rho in (3.0, 5.0, 8.0):
        for z1, z2 in ((0, 0), (1.5, -1.5), (1.5, 1.5)):
            r3 = math.hypot(rho, z1 - z2)
            a = float(_bessel_series(np.array(rho), z1, z2, L))
            b = float(1 / r3 + _image_real(rho, z1, z2, L))
            assert a == pytest.approx(b, abs=1e-13)


def test_fourier_kernel_midplane_is_tanh():
    q = np.linspace(0.01, 3, 50)
    np.testing.assert_allclose(gated_potential_q(q, 0.0, 0.0, 100.0), 2 * np.pi / q * np.tanh(q * 50.0), rtol=1e-12)


def test_far_field_decays_with_gate_length():
    r = np.array([200.0, 232.0])
    v = gated_potential(r, 0, 0, 10.0, 100.0)
    # leading Bessel term 4/ξ K0(πρ/ξ): decay length ξ/π
    from scipy.special import k0
    np.testing.assert_allclose(v, COULOMB_K / 10 * 4 / 100 * k0(np.pi * r / 100), rtol=1e-3)


def _ab_bilayer():
    g = build_graphene()
    d = 3.35
    pos = np.vstack([g.positions, g.positions + [g.positions[1, 0], g.positions[1, 1], d]])
    return pos, g.cell


@pytest.mark.parametrize("which", ["graphene", "ab_bilayer"])
def test_hartree_ewald_matches_direct_sum(which):
    if which == "graphene":
        g = build_graphene()
        pos, cell = g.positions, g.cell
    else:
        pos, cell = _ab_bilayer()
    W = hartree_matrix(pos, cell, 10.0, L)
    Wd = hartree_matrix_direct(pos, cell, 10.0, L, rmax=26.0 * L / math.pi)
    np.testing.assert_allclose(W, Wd, atol=1e-8, rtol=0)
    assert np.allclose(W, W.T)


def test_hartree_independent_of_splitting():
    pos, cell = _ab_bilayer()
    W1 = hartree_matrix(pos, cell, 10.0, 100.0, eta=1.0)
    W2 = hartree_matrix(pos, cell, 10.0, 100.0, eta=3.0)
    np.testing.assert_allclose(W1, W2, atol=1e-9, rtol=0)


def test_bad_coulomb_params():
    with pytest.raises(InputError, match="eps"):
        CoulombParams(eps=0.0)
    with pytest.raises(InputError, match="gate_distance"):
        CoulombParams(gate_distance=-1.0)
    with pytest.raises(InputError, match="fock_range"):
        CoulombParams(fock_range=-1.0)
