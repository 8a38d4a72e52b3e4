"""Hartree–Fock solver: TB limit, honeycomb Néel transition, particle number, I/O, bad input."""

import pickle

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.hf import CoulombParams, HFResult, HFSystem, Mixer
from moireu.lattice import build_graphene, build_tbg

T = 2.7


@pytest.fixture(scope="module")
def graphene_system():
    # 101 × 101 Monkhorst–Pack (no point on the Dirac point: 101 is not a multiple of 3)
    return HFSystem(build_graphene(t=T), (101, 101), CoulombParams(long_range=False))


@pytest.fixture(scope="module")
def tbg1():
    return HFSystem(build_tbg(1, 3.35, 6.0), (2, 2), CoulombParams(eps=10.0, gate_distance=100.0, fock_range=5.0))


@pytest.fixture(scope="module")
def tbg2():
    return HFSystem(build_tbg(2, 3.0, 6.0), (2, 2), CoulombParams(fock_range=4.0))


def _tb_spectrum(system):
    return np.array([np.linalg.eigvalsh(system.model.hk(k)) for k in system.k_frac])


@pytest.mark.parametrize("long_range", [False, True])
def test_U0_reproduces_tight_binding(tbg2, long_range):
    s = tbg2 if long_range else HFSystem(tbg2.model, (2, 2), CoulombParams(long_range=False))
    res = s.solve(U=0.0, filling=0.0, init="paramagnetic")
    assert res.converged and res.iterations <= 3
    E = s.spectrum(res, s.k_frac, vectors=False)
    E0 = _tb_spectrum(s)
    assert np.abs(E - E0[:, None, :]).max() < 1e-10
    assert np.abs(res.band_energies - E0[:, None, :]).max() < 1e-10


def test_honeycomb_neel_critical_U(graphene_system):
    s = graphene_system
    lo, hi = 2.0 * T, 2.5 * T
    assert s.instability(lo, kT=1e-4) < 1 < s.instability(hi, kT=1e-4)
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if s.instability(mid, kT=1e-4) > 1 else (mid, hi)
    uc = 0.5 * (lo + hi) / T
    print(f"mean-field U_c/t = {uc:.4f} (101x101 mesh)")
    assert abs(uc - 2.23) < 0.05
    # the full SCF agrees: no moment just below, a Néel moment just above
    below = s.solve(U=(uc - 0.1) * T, kT=1e-4, init="afm")
    above = s.solve(U=(uc + 0.15) * T, kT=1e-4, init="afm")
    assert below.converged and above.converged
    assert below.max_moment < 1e-3
    assert above.staggered_moment > 0.05
    assert abs(above.total_moment) < 1e-10          # antiferromagnet: zero net moment
    assert abs(above.charge.sum() - 2.0) < 1e-8      # half filling
    m = above.magnetization
    assert m[0] * m[1] < 0 and abs(m[0] + m[1]) < 1e-10


def test_strong_coupling_moment_and_gap(graphene_system):
    res = graphene_system.solve(U=4.0 * T, kT=1e-4, init="afm")
    assert res.converged
    # Néel mean field at U = 4t: moment m and gap 2Δ = U m (gap equation, weak k dependence)
    assert 0.5 < res.staggered_moment < 0.9
    assert res.gap == pytest.approx(4.0 * T * res.staggered_moment, rel=2e-2)


@pytest.mark.parametrize("nu", [-1.5, 0.0, 1.0, 3.0])
def test_particle_number_at_filling(tbg1, nu):
    res = tbg1.solve(U=2.0, filling=nu, init="ferro", kT=0.002)
    assert res.converged
    assert abs(res.charge.sum() - (tbg1.n_orb + nu)) < 1e-8


def test_long_range_paramagnet_at_neutrality_is_tb(tbg1):
    # with the reference subtraction the TB state is self-consistent at ν = 0 for any U below U_c
    res = tbg1.solve(U=1.0, filling=0.0, init="paramagnetic")
    assert res.converged and res.max_moment < 1e-12
    assert np.abs(res.band_energies - _tb_spectrum(tbg1)[:, None]).max() < 1e-10


def test_init_patterns_and_symmetry_breaking(tbg1):
    res = tbg1.solve(U=10.0, init="afm")
    assert res.converged and res.staggered_moment > 0.2 and abs(res.total_moment) < 1e-6
    fm = tbg1.solve(U=6.0, init="ferro", filling=2.0)
    assert fm.converged and fm.total_moment > 0.5
    r1 = tbg1.solve(U=10.0, init="random", seed=3, max_iter=2)
    r2 = tbg1.solve(U=10.0, init="random", seed=3, max_iter=2)
    assert np.array_equal(r1.occupations, r2.occupations)


def test_hamiltonian_and_spectrum_consistent(tbg1):
    res = tbg1.solve(U=8.0, init="afm")
    k = tbg1.k_frac[1]
    H = tbg1.hamiltonian(res, k)
    assert H.shape == (2, tbg1.n_orb, tbg1.n_orb)
    assert np.allclose(H, np.conj(np.swapaxes(H, -1, -2)))
    E, V = tbg1.spectrum(res, tbg1.k_frac, tbg1.weights)
    assert E.shape == (len(tbg1.k_frac), 2, tbg1.n_orb) and V.shape[-1] == tbg1.n_orb
    np.testing.assert_allclose(E, res.band_energies, atol=1e-10)
    np.testing.assert_allclose(np.linalg.eigvalsh(H), E[1], atol=1e-10)


def test_warm_start_is_fast_and_same(tbg1):
    a = tbg1.solve(U=8.0, init="afm")
    b = tbg1.solve(U=8.0, init="afm", warm_start=a)
    assert b.converged and b.iterations <= 3
    np.testing.assert_allclose(a.occupations, b.occupations, atol=1e-5)


def test_unconverged_is_flagged_and_checkpoint_resumes(tbg1, tmp_path):
    ck = tmp_path / "ck.nc"
    r = tbg1.solve(U=8.0, init="afm", max_iter=4, checkpoint=ck, checkpoint_every=2)
    assert not r.converged and r.iterations == 4 and ck.exists()
    r2 = tbg1.solve(U=8.0, init="afm", checkpoint=ck)
    assert r2.converged and r2.iterations > 4 and len(r2.residual_history) == r2.iterations
    with pytest.raises(InputError, match="U="):
        tbg1.solve(U=7.0, checkpoint=ck)


def test_save_load_roundtrip_and_foreign_system(tbg1, tbg2, tmp_path):
    res = tbg1.solve(U=8.0, init="afm")
    p = res.save(tmp_path / "r.nc")
    back = HFResult.load(p, system=tbg1)
    assert back == res or np.allclose(back.occupations, res.occupations)
    assert back.summary()["max_moment"] == pytest.approx(res.max_moment)
    with pytest.raises(InputError, match="another system"):
        HFResult.load(p, system=tbg2)
    # a checkpoint from another system is refused and left untouched
    before = p.read_bytes()
    with pytest.raises(InputError, match="another system"):
        tbg2.solve(U=1.0, checkpoint=p)
    assert p.read_bytes() == before


def test_pickle_roundtrip(tbg1):
    res = tbg1.solve(U=8.0, init="afm")
    s2 = pickle.loads(pickle.dumps(tbg1))
    assert s2._hk is None and s2.fingerprint == tbg1.fingerprint
    H1, H2 = tbg1.hamiltonian(res, (0.1, 0.2)), s2.hamiltonian(pickle.loads(pickle.dumps(res)), (0.1, 0.2))
    np.testing.assert_allclose(H1, H2, atol=1e-14)


@pytest.mark.parametrize("kw,match", [({"U": -1.0}, "U"), ({"filling": 4.5}, "filling"),
                                      ({"kT": 0.0}, "kT"), ({"init": "spiral"}, "initial state")])
def test_bad_solve_input(tbg1, kw, match):
    with pytest.raises(InputError, match=match):
        tbg1.solve(**kw)


def test_bad_system_input():
    g = build_graphene()
    with pytest.raises(InputError, match="k-mesh"):
        HFSystem(g, (0, 3))
    with pytest.raises(InputError, match="k-mesh"):
        HFSystem(g, (np.zeros((0, 2)), np.zeros(0)))
    with pytest.raises(InputError, match="backend"):
        HFSystem(g, (2, 2), backend="cuda-magic")


@pytest.mark.parametrize("kind", ["anderson", "broyden"])
def test_quasi_newton_mixers_beat_linear(kind):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 30))
    A = 0.9 * A / np.abs(np.linalg.eigvals(A)).max()
    b = rng.normal(size=30)
    xstar = np.linalg.solve(np.eye(30) - A, b)

    def run(m):
        x = np.zeros(30)
        for it in range(400):
            g = A @ x + b
            if np.abs(g - x).max() < 1e-10:
                return it
            x = m(x, g)
        return 400

    assert run(Mixer(kind, 0.5, 10)) < 60 <= run(Mixer("linear", 0.5))
    del xstar


def test_fock_range_convergence():
    """Observables of the AF state of TBG i = 1 (U = 8 eV) as the exchange range grows.

    The k-mesh (6×6, a 39 Å Born–von Kármán cell) resolves ρ(R) out to the largest range used.
    """
    model = build_tbg(1, 3.35, 6.0)
    rows = []
    for fr in (1.5, 3.0, 5.0, 8.0, 12.0):
        s = HFSystem(model, (6, 6), CoulombParams(fock_range=fr))
        r = s.solve(U=8.0, init="afm")
        assert r.converged
        rows.append((fr, s.n_pair, r.staggered_moment, r.gap, r.total_energy / s.n_orb))
    print("\nfock_range  pairs  staggered_m   gap_eV   E/atom_eV")
    for row in rows:
        print(f"{row[0]:10.1f} {row[1]:6d} {row[2]:12.6f} {row[3]:8.4f} {row[4]:11.6f}")
    d = np.abs(np.diff(np.array(rows)[:, 2:], axis=0))  # successive changes (m, gap, E/atom)
    assert np.all(d[-1] < d[0])            # the changes shrink as the range grows
    assert d[-1, 0] < 2e-3 and d[-1, 2] < 2e-3


def test_fock_range_beyond_mesh_period_is_refused():
    with pytest.raises(InputError, match="aliased"):
        HFSystem(build_tbg(1, 3.35, 6.0), (2, 2), CoulombParams(fock_range=8.0))


def test_torch_backend_matches_scipy():
    pytest.importorskip("torch")
    model = build_tbg(1, 3.35, 6.0)
    a = HFSystem(model, (2, 2), CoulombParams(), backend="scipy").solve(U=8.0, init="afm")
    b = HFSystem(model, (2, 2), CoulombParams(), backend="torch").solve(U=8.0, init="afm")
    assert a.converged and b.converged
    np.testing.assert_allclose(a.occupations, b.occupations, atol=1e-6)
    assert a.total_energy == pytest.approx(b.total_energy, abs=1e-6)


def test_sweep_first_point_keeps_the_lower_energy_start(tbg1, tmp_path):
    """The first sweep point is solved from the seed and from the TB state; the lower energy wins."""
    from moireu.hf.driver import sweep_U

    res = sweep_U(tbg1, [0.0, 1.0], {"filling": 0.0, "init": "afm"}, save_dir=tmp_path)
    e_pm = tbg1.solve(U=0.0, filling=0.0, init="paramagnetic").total_energy
    e_afm = tbg1.solve(U=0.0, filling=0.0, init="afm").total_energy
    assert res[0].converged and res[0].total_energy <= min(e_pm, e_afm) + 1e-9
    assert (tmp_path / "U_0.0000.nc").exists() and not list(tmp_path.glob(".U_*.ckpt.nc"))


def test_sweep_continues_from_a_start_solution(tbg1, tmp_path):
    """``start`` warm-starts the first point (no cold seed): converges in fewer iterations than cold."""
    from moireu.hf.driver import sweep_U
    from moireu.hf.result import HFResult

    first = sweep_U(tbg1, [2.0], {"filling": 0.0, "init": "afm"}, save_dir=tmp_path)[0]
    start = HFResult.load(tmp_path / "U_2.0000.nc", tbg1)
    warm = sweep_U(tbg1, [2.5], {"filling": 0.0, "init": "afm"}, start=start)[0]
    cold = tbg1.solve(U=2.5, filling=0.0, init="afm")
    assert first.converged and warm.converged and warm.iterations < cold.iterations
    assert warm.total_energy == pytest.approx(cold.total_energy, abs=1e-5)
