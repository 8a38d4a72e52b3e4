"""C₃ reduction of the k-mesh (moireu.hf.symmetry): same numbers as the full mesh, used only when checked."""

import dataclasses

import numpy as np
import pytest

from moireu.hf import CoulombParams, HFSystem
from moireu.hf.symmetry import C3Reduction
from moireu.hf.terms import Params
from moireu.lattice import build_tbg, kmesh
from moireu.stm import ldos_at

CP = CoulombParams(eps=10.0, gate_distance=100.0, fock_range=4.0)


@pytest.fixture(scope="module")
def pair():
    m = build_tbg(2, 3.0, 6.0)  # 76 atoms: above the batched small-cell size, so the reduction is used
    return HFSystem(m, (3, 3), CP), HFSystem(m, (3, 3), CP, symmetry=False)


def test_orbits_of_the_meshes(pair):
    a, b = pair
    assert b.c3 is None and a.c3 is not None
    # 3 × 3 (time-reversal reduced: 5 points): Γ, the six (1/3, 0)-type points, K and K'
    assert len(a.k_frac) == 5 and len(a.c3.reps) == 3
    np.testing.assert_allclose(sorted(a.c3.rep_weights), [1 / 9, 2 / 9, 6 / 9])
    assert a.describe()["c3_k_points"] == 3
    # 4 × 4 (11 points): Γ, the three M, and two orbits of six
    kf, w = kmesh(a.model, (4, 4))
    reps, wts, orbit_of = a.c3.orbits(kf, w)
    assert len(kf) == 11 and len(reps) == 4 and abs(wts.sum() - 1) < 1e-12
    np.testing.assert_allclose(np.bincount(orbit_of, weights=w), wts)
    # the permutation keeps layer and sublattice, and g³ = 1
    p = a.c3.perm
    assert np.array_equal(a.model.layer[p], a.model.layer) and np.array_equal(a.model.sublattice[p], a.model.sublattice)
    assert np.array_equal(p[p[p]], np.arange(a.n_orb))


def test_reduced_step_equals_full_mesh_step(pair):
    a, b = pair
    p = Params(4.0, 0.0, 0.002)
    d = a.initial_state("afm", 0.0, p.kT, 0.3)
    pa, pb = a.potential(d, p), b.potential(d, p)
    assert a.symmetric(pa)
    for single in (False, True):
        sa, sb = a.step(pa, a.n_orb, p.kT, single=single), b.step(pb, b.n_orb, p.kT, single=single)
        assert sa.eigs.shape[0] == 3 and sb.eigs.shape[0] == 5
        tol = 1e-12 if not single else 1e-5
        assert np.abs(sa.density.n - sb.density.n).max() < tol
        assert np.abs(sa.density.rho - sb.density.rho).max() < tol
        assert abs(sa.mu - sb.mu) < tol and abs(sa.eband - sb.eband) < 100 * tol
    # band energies on the mesh from the representatives
    Ea = a.spectrum_from_potentials(pa, a.k_frac, vectors=False)
    Eb = b.spectrum_from_potentials(pb, b.k_frac, vectors=False)
    assert np.abs(Ea - Eb).max() < 1e-11


def test_asymmetric_state_uses_the_full_mesh(pair):
    a, b = pair
    p = Params(4.0, 0.0, 0.002)
    d = a.initial_state("random", 0.0, p.kT, 0.3, seed=3)
    pa = a.potential(d, p)
    assert not a.symmetric(pa)
    sa, sb = a.step(pa, a.n_orb, p.kT), b.step(b.potential(d, p), b.n_orb, p.kT)
    assert sa.eigs.shape[0] == 5
    assert np.abs(sa.density.n - sb.density.n).max() < 1e-12


def test_reduced_solve_and_ldos_agree_with_full_mesh(pair):
    a, b = pair
    ra, rb = a.solve(U=4.0, kT=0.002, init="afm"), b.solve(U=4.0, kT=0.002, init="afm")
    assert ra.converged and rb.converged and ra.max_moment > 0.02
    # the same fixed point within the convergence tolerance (the iterates differ by rounding)
    assert np.abs(ra.occupations - rb.occupations).max() < 2e-6
    assert abs(ra.total_energy - rb.total_energy) < 1e-6
    # LDOS of one solution with and without the reduction (4 × 4 mesh: 4 instead of 11 k-points);
    # a solution of the reduced solve is symmetric to rounding, so the LDOS uses the reduction too
    from moireu.hf.symmetry import LDOS_SYM_TOL

    assert a.symmetric(a.potential_of(ra), LDOS_SYM_TOL)
    ev = a.spectrum(ra, [[0.25, 0.0]], vectors=False)[0, 0]  # levels of a (complex) mesh point
    e1 = float(ev[np.argmin(np.abs(ev - ra.fermi_level))])
    kw = dict(energies=[ra.fermi_level, e1, float(ev[0]) + 0.5], eta=0.03, kmesh=(4, 4), per_spin=True)
    for kind, solver in (("lorentzian", "eigh"), ("lorentzian", "resolvent"), ("gaussian", "window")):
        La = ldos_at(a, ra, kind=kind, solver=solver, **kw)
        Lb = ldos_at(b, ra, kind=kind, solver="eigh", **kw)
        assert La.max() > 0.1
        assert np.abs(La - Lb).max() < 1e-10, (kind, solver)


def test_no_reduction_without_the_symmetry():
    m = build_tbg(2, 3.0, 6.0)
    k, w = kmesh(m, (3, 3))
    assert C3Reduction.build(m, k, w) is not None
    t = np.array(m.t)
    t[0] *= 1.01  # one hopping off: the TB model is no longer C₃ symmetric
    assert C3Reduction.build(dataclasses.replace(m, t=t), k, w) is None
    # a mesh that is not closed under the rotation
    assert C3Reduction.build(m, np.array([[0.0, 0.0], [0.1, 0.0]]), np.array([0.5, 0.5])) is None
