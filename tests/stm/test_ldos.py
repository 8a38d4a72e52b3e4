import numpy as np
import pytest

from moireu.errors import InputError
from moireu.stm import broadening, dos_from_spectrum, ldos_at, ldos_from_spectrum


def _random_spectrum(rng, nk=3, ns=2, n=12):
    H = rng.normal(size=(nk, ns, n, n)) + 1j * rng.normal(size=(nk, ns, n, n))
    H = H + np.conj(np.swapaxes(H, -1, -2))
    e, v = np.linalg.eigh(H)
    w = rng.random(nk)
    return e, v, w / w.sum()


@pytest.mark.parametrize("kind", ["lorentzian", "gaussian"])
def test_sum_rule_sum_over_atoms_is_dos(rng, kind):
    e, v, w = _random_spectrum(rng)
    E = np.linspace(e.min(), e.max(), 9)
    L = ldos_from_spectrum(e, v, w, E, eta=0.05, kind=kind)
    assert L.shape == (9, 12)
    np.testing.assert_allclose(L.sum(axis=1), dos_from_spectrum(e, w, E, 0.05, kind), rtol=1e-12)
    Ls = ldos_from_spectrum(e, v, w, E, eta=0.05, kind=kind, per_spin=True)
    assert Ls.shape == (9, 2, 12)
    np.testing.assert_allclose(Ls.sum(axis=2), dos_from_spectrum(e, w, E, 0.05, kind, per_spin=True), rtol=1e-12)
    np.testing.assert_allclose(Ls.sum(axis=1), L, rtol=1e-12)
    assert np.all(L > 0)


def test_gaussian_ldos_integrates_to_one_state_per_spin_and_orbital(rng):
    e, v, w = _random_spectrum(rng, n=6)
    E = np.linspace(e.min() - 1, e.max() + 1, 20001)
    L = ldos_from_spectrum(e, v, w, E, eta=0.05, kind="gaussian", per_spin=True)
    np.testing.assert_allclose(np.trapezoid(L, E, axis=0), 1.0, rtol=1e-6)


def test_broadening_kernels_are_normalised():
    x = np.linspace(-200, 200, 400001)
    assert abs(np.trapezoid(broadening(x, 0.01, "gaussian"), x) - 1) < 1e-9
    assert abs(np.trapezoid(broadening(x, 0.01, "lorentzian"), x) - 1) < 1e-4  # tails beyond ±200 eV
    assert broadening(0.0, 0.01, "lorentzian") == pytest.approx(1 / (np.pi * 0.01))
    with pytest.raises(InputError, match="kind"):
        broadening(x, 0.01, "box")
    with pytest.raises(InputError, match="eta"):
        broadening(x, 0.0)


def test_graphene_sublattice_symmetry_and_dirac_point():
    from moireu.lattice import build_graphene, kmesh

    g = build_graphene()
    kf, w = kmesh(g, (60, 60))
    e, v = np.linalg.eigh(g.hk_batch(kf))
    ef = float(np.median(e))  # half filling: one electron per site
    E = ef + np.array([0.0, -1.0, 1.0])
    L = ldos_from_spectrum(e, v, w, E, eta=0.05, kind="gaussian")
    np.testing.assert_allclose(L[:, 0], L[:, 1], rtol=1e-10)  # A and B equivalent
    # the Dirac point: the DOS at E_F is much smaller than 1 eV away (ρ ∝ |E| near K)
    assert L[0, 0] < 0.2 * L[1, 0] and L[0, 0] < 0.2 * L[2, 0]


@pytest.mark.slow
def test_tbg_flat_band_ldos_is_localised_on_aa():
    """Flat-band states of TBG are localised in the AA regions (Trambly de Laissardière et al.,
    Nano Lett. 10, 804 (2010)); remote states far from E_F are not."""
    from moireu.lattice import build_tbg, kmesh

    m = build_tbg(7, 2.85, 6.0)
    kf, w = kmesh(m, (2, 2))
    e, v = np.linalg.eigh(m.hk_batch(kf))
    n = m.n_orb
    e0 = 0.5 * (e[:, n // 2 - 1].max() + e[:, n // 2].min())
    L = ldos_from_spectrum(e, v, w, [e0, e0 - 1.0], eta=0.01, kind="gaussian")
    xy = m.positions[:, :2]
    inv = np.linalg.inv(m.cell)

    def dist(c):
        f = (xy - c) @ inv
        f -= np.round(f)
        return np.linalg.norm(f @ m.cell, axis=1)

    lm = np.linalg.norm(m.cell[0])
    aa, ab = dist(m.aa_centers[0]) < 0.15 * lm, dist(m.ab_centers[0]) < 0.15 * lm
    r_flat = L[0, aa].mean() / L[0, ab].mean()
    r_remote = L[1, aa].mean() / L[1, ab].mean()
    assert r_flat > 5.0
    assert r_remote < 0.5 * r_flat


class _TBSystem:
    """U = 0 stand-in for an HFSystem: both spins = eigh(H_TB(k)) (same interface as hf)."""

    def __init__(self, model):
        self.model = model

    def spectrum(self, res, k_frac, weights, vectors=True):
        e, v = np.linalg.eigh(self.model.hk_batch(np.asarray(k_frac)))
        return np.stack([e, e], axis=1), np.stack([v, v], axis=1)


class _Res:
    def __init__(self, ef, converged=True):
        self.fermi_level, self.converged = ef, converged


def test_ldos_at_wrapper_and_errors():
    from moireu.lattice import build_graphene, kmesh

    g = build_graphene()
    sysm = _TBSystem(g)
    kf, w = kmesh(g, (6, 6))
    e = np.linalg.eigvalsh(g.hk_batch(kf))
    res = _Res(float(np.median(e)))
    L = ldos_at(sysm, res, biases=[0.0, 0.5], eta=0.05, kmesh=(6, 6), chunk=5)
    e2, v2 = sysm.spectrum(res, kf, w)
    ref = ldos_from_spectrum(e2, v2, w, res.fermi_level + np.array([0.0, 0.5]), 0.05)
    np.testing.assert_allclose(L, ref, rtol=1e-12)
    assert ldos_at(sysm, res, biases=[0.5], eta=0.05, kmesh=(6, 6), per_spin=True).shape == (1, 2, 2)
    with pytest.raises(InputError, match="outside the computed spectrum"):
        ldos_at(sysm, res, biases=[50.0], eta=0.05, kmesh=(6, 6))
    with pytest.raises(InputError, match="did not converge"):
        ldos_at(sysm, _Res(res.fermi_level, converged=False), biases=[0.0], kmesh=(2, 2))
    assert ldos_at(sysm, _Res(res.fermi_level, converged=False), biases=[0.0], kmesh=(2, 2),
                   allow_unconverged=True).shape == (1, 2)
    with pytest.raises(InputError, match="exactly one"):
        ldos_at(sysm, res, kmesh=(2, 2))
