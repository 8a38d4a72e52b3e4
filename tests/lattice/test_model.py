import math

import numpy as np
import pytest

from moireu.constants import A_CC
from moireu.errors import InputError
from moireu.lattice import (band_path, bloch_sum, build_graphene, build_tbg, central_bands, dos, fermi_level, kmesh,
                            slater_koster, summarize_bands)


@pytest.fixture(scope="module")
def tbg2():
    return build_tbg(2, 3.35, 6.0)


def test_slater_koster_limits():
    # in-plane nearest neighbour: Vppπ0; vertical at d0: Vppσ0
    assert slater_koster(np.array([A_CC, 0, 0])) == pytest.approx(-2.7)
    assert slater_koster(np.array([0, 0, 3.35])) == pytest.approx(0.48)


def test_graphene_dirac_cone():
    t = 2.7
    m = build_graphene(t=t)
    K = np.array([2 / 3, 1 / 3])
    e = m.eigh(K)
    assert np.allclose(e, 0.0, atol=1e-12)
    # Fermi velocity: ħ v_F = 3 t a_cc / 2
    hv = 1.5 * t * A_CC
    kc = m.k_cart(K)
    for ang in (0.1, 1.3, 2.9):
        dk = 1e-4 * np.array([math.cos(ang), math.sin(ang)])
        e = m.eigh(m.k_frac(kc + dk))
        assert e[1] / np.linalg.norm(dk) == pytest.approx(hv, rel=1e-3)
        assert e[0] == pytest.approx(-e[1], rel=1e-9)
    # bandwidth ±3t at Γ
    assert np.allclose(np.sort(m.eigh([0, 0])), [-3 * t, 3 * t])


def test_hermitian_and_sparse(tbg2):
    rng = np.random.default_rng(0)
    for k in rng.random((3, 2)):
        h = tbg2.hk(k)
        assert np.abs(h - h.conj().T).max() < 1e-14
        assert np.abs(tbg2.hk_sparse(k).toarray() - h).max() < 1e-13


def test_time_reversal(tbg2):
    rng = np.random.default_rng(1)
    for k in rng.random((3, 2)):
        assert np.allclose(tbg2.eigh(k), tbg2.eigh(-k), atol=1e-11)


def test_c3_symmetry(tbg2):
    c, s = math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)
    rot = np.array([[c, -s], [s, c]])
    rng = np.random.default_rng(2)
    for k in rng.random((3, 2)):
        kc = tbg2.k_cart(k)
        assert np.allclose(tbg2.eigh(k), tbg2.eigh(tbg2.k_frac(rot @ kc)), atol=1e-10)


def test_matches_sisl(tbg2):
    H = tbg2.to_sisl()
    k = np.array([0.13, 0.37])
    ours = tbg2.eigh(k)
    theirs = np.linalg.eigvalsh(H.Hk([k[0], k[1], 0.0]).toarray())
    assert np.allclose(ours, theirs, atol=1e-10)


def test_pairs_closed_under_reversal(tbg2):
    p = tbg2.pairs(4.0)
    r = p.reverse
    assert np.all(p.i[r] == p.j) and np.all(p.j[r] == p.i) and np.all(p.R[r] == -p.R)
    assert np.allclose(p.dvec[r], -p.dvec)
    vals = np.random.default_rng(3).random(len(p))
    m = bloch_sum(p, vals + vals[r], [0.2, 0.1], tbg2.n_orb)
    assert np.allclose(m, m.conj().T)


def test_kmesh_weights_and_trs_reduction(tbg2):
    k, w = kmesh(tbg2, (4, 4), trs=True)
    kf, wf = kmesh(tbg2, (4, 4), trs=False)
    assert w.sum() == pytest.approx(1.0) and wf.sum() == pytest.approx(1.0)
    assert len(kf) == 16 and len(k) < 16
    # a BZ average is the same on the reduced and the full mesh
    f = lambda kk: tbg2.eigh(kk)[tbg2.n_orb // 2]
    assert sum(wi * f(ki) for ki, wi in zip(k, w)) == pytest.approx(sum(wi * f(ki) for ki, wi in zip(kf, wf)), abs=1e-10)
    with pytest.raises(InputError):
        kmesh(tbg2, (0, 3))


def test_fermi_level_and_dos_sum_rule():
    m = build_graphene()
    k, w = kmesh(m, (30, 30))
    eigs = np.array([m.eigh(kk) for kk in k])
    ef = fermi_level(eigs, w, n_electrons=2.0, kT=0.01, degeneracy=2)
    assert abs(ef) < 1e-6  # particle-hole symmetric at half filling
    ef_plus = fermi_level(eigs, w, n_electrons=2.1, kT=0.01, degeneracy=2)
    assert ef_plus > 0.1
    energies = np.linspace(-9, 9, 4001)
    d = dos(eigs, w, energies, eta=0.05)
    assert np.trapezoid(d, energies) == pytest.approx(4.0, rel=1e-4)  # 2 bands × 2 spins
    with pytest.raises(InputError):
        fermi_level(eigs, w, n_electrons=5.0, kT=0.01, degeneracy=2)


def test_band_path_endpoints(tbg2):
    k, s, ticks, labels = band_path(tbg2, 31)
    assert labels == ["K", "Γ", "M", "K"]
    assert np.allclose(k[0], [2 / 3, 1 / 3]) and np.allclose(k[-1], [2 / 3, 1 / 3])
    assert s[-1] == pytest.approx(ticks[-1])


def test_bad_cutoff():
    with pytest.raises(InputError, match="cutoff"):
        build_tbg(2, 3.35, cutoff=1.0)


def _width(i, d, npts=24, mesh=(2, 2)):
    m = build_tbg(i, d, 6.0)
    k, *_ = band_path(m, npts)
    km, w = kmesh(m, mesh)
    e = np.array([m.eigh(kk) for kk in np.concatenate([k, km])])
    return summarize_bands(m, e, w, e[len(k):]).central_bandwidth_meV


@pytest.mark.slow
def test_flat_bands_i9():
    """Reference: four central bands ≈ 15 meV at d = 2.93–2.95 Å, ≥ 200 meV at d = 3.35 Å (i = 9)."""
    assert _width(9, 2.94) <= 20.0
    assert _width(9, 3.35, npts=12, mesh=(1, 1)) >= 200.0


@pytest.mark.slow
def test_flat_bands_i7():
    """Reference: ≈ 12 meV at d = 2.85 Å (i = 7)."""
    assert 5.0 <= _width(7, 2.85) <= 20.0
    assert central_bands(np.arange(10.0), 10).tolist() == [3.0, 4.0, 5.0, 6.0]
