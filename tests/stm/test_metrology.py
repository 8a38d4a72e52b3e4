"""Moiré metrology (moireu.stm.metrology) on simulated maps of known twist, heterostrain and scanner distortion.

The maps are built here, independently of the module's model: each layer's real-space lattice vectors
(layer 1 rotated by +θ/2; layer 2 rotated by −θ/2 and deformed by the uniaxial strain tensor with
Poisson ratio 0.16), their reciprocal first shells by matrix inversion, and a topograph that is the sum
of each layer's three Bragg cosines plus their product (the product holds the moiré: cos(G¹·r) cos(G²·r)
has the beat cos((G¹ − G²)·r)). Maps without atomic resolution hold only the three moiré cosines.
"""

import math

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.io import MapData
from moireu.stm.metrology import measure_metrology

A = 2.46
NU = 0.16


def _rot(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


def _strain(eps, phi_deg):
    c = np.array([math.cos(math.radians(phi_deg)), math.sin(math.radians(phi_deg))])
    n = np.array([-c[1], c[0]])
    return eps * (np.outer(c, c) - NU * np.outer(n, n))


def _shell(cell):
    """Three first-shell reciprocal vectors b1, b2, b1 + b2 of a real-space cell (rows a1, a2)."""
    b = 2 * np.pi * np.linalg.inv(cell).T
    return np.stack([b[0], b[1], b[0] + b[1]])


def layers(theta, eps, phi, alpha=0.0):
    """Reciprocal first shells (3, 2) of the two layers (angles in degrees, ε a fraction)."""
    cell0 = A * np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    cell1 = cell0 @ _rot(alpha + theta / 2).T
    cell2 = cell0 @ _rot(alpha - theta / 2).T @ (np.eye(2) + _strain(eps, phi)).T
    return _shell(cell1), _shell(cell2)


def true_wavelengths(theta, eps, phi, alpha=0.0):
    """The three shortest real-space moiré lattice vectors' lengths (Å), sorted."""
    G1, G2 = layers(theta, eps, phi, alpha)
    g = G1 - G2  # g_b1, g_b2, g_b1 + g_b2
    L = 2 * np.pi * np.linalg.inv(np.stack([g[0], g[1]])).T
    cand = [L[0], L[1], L[0] - L[1], L[0] + L[1]]
    return np.sort(np.hypot(*np.array(cand).T))[:3]


def tbg_map(n, px, theta, eps=0.0, phi=0.0, alpha=0.0, atomic=True, piezo=None, noise=0.0, seed=0):
    """Simulated topograph on n × n pixels of px Å; true position = piezo · nominal position."""
    x = (np.arange(n) + 0.5 - 0.5 * n) * px
    X, Y = np.meshgrid(x, x)
    r = np.stack([X, Y], -1)
    if piezo is not None:
        r = r @ np.asarray(piezo, float).T
    G1, G2 = layers(theta, eps, phi, alpha)
    if atomic:  # the top layer images stronger than the bottom one
        f1, f2 = np.cos(r @ G1.T).sum(-1), np.cos(r @ G2.T).sum(-1)
        z = f1 + 0.7 * f2 + 0.5 * f1 * f2
    else:
        z = np.cos(r @ (G1 - G2).T).sum(-1)
    if noise:
        z = z + noise * np.random.default_rng(seed).standard_normal(z.shape)
    return MapData(z, (px, px), {"source": "simulated"})


def _dphi(a, b):
    return (a - b + 90.0) % 180.0 - 90.0


def _dalpha(a, b):
    return (a - b + 30.0) % 60.0 - 30.0


CLEAN = [  # (θ°, ε, φ°, α°, atomic, pixels, pixel size Å)
    (1.1, 0.003, 20.0, 0.0, False, 512, 2.0),     # magic angle, 102 nm frame, 8 moiré periods
    (1.1, 0.0, 0.0, 12.0, False, 512, 1.2),       # pure twist
    (0.6, 0.001, 160.0, -7.0, False, 512, 4.0),
    (2.0, 0.002, 75.0, 5.0, False, 512, 1.6),
    (3.48, 0.002, 130.0, 0.0, True, 512, 0.25),   # atomically resolved, 128 Å frame
    (4.41, 0.004, 40.0, -18.0, True, 512, 0.25),
    (9.0, 0.003, 100.0, 22.0, True, 256, 0.3),
]


@pytest.mark.parametrize("theta,eps,phi,alpha,atomic,n,px", CLEAN)
def test_clean_maps_recover_twist_heterostrain_and_wavelengths(theta, eps, phi, alpha, atomic, n, px):
    r = measure_metrology(tbg_map(n, px, theta, eps, phi, alpha, atomic=atomic), keep_spectrum=False)
    assert r.atomic_resolved is atomic
    assert abs(r.twist_deg - theta) < 0.01, r.summary()
    assert abs(r.strain_percent - 100 * eps) < 0.02, r.summary()
    if eps >= 0.002:
        assert abs(_dphi(r.strain_angle_deg, phi)) < 3.0, r.summary()
    assert abs(_dalpha(r.lattice_angle_deg, alpha)) < 0.2
    np.testing.assert_allclose(np.sort(r.moire_wavelengths), true_wavelengths(theta, eps, phi, alpha), rtol=3e-3)
    # precise and honest: small, non-zero uncertainties; the fit closes
    assert 0 < r.twist_sigma_deg < 0.01 and 0 < r.strain_sigma_percent < 0.03
    assert r.dof == 2 and r.birge < 3
    if atomic:
        sc = r.scanner
        assert abs(sc.scale_x - 1) < 1e-3 and abs(sc.scale_y - 1) < 1e-3 and abs(sc.shear) < 1e-3
        # the imaged (stronger, top) layer sits at α + θ/2 on the reported branch
        assert abs(_dalpha(sc.lattice_angle_deg, alpha + theta / 2)) < 0.1


def test_strained_moire_wavelengths_differ_as_the_model_says():
    """1.1° with 0.3 % heterostrain: the three wavelengths spread by ∼ 15 % (the moiré magnifies ε by ∼ 1/θ)."""
    r = measure_metrology(tbg_map(512, 2.0, 1.1, 0.003, 20.0, atomic=False), keep_spectrum=False)
    lam = np.array(r.moire_wavelengths)
    assert lam.max() / lam.min() > 1.12
    unstrained = A / (2 * math.sin(math.radians(1.1) / 2))
    assert lam.min() < unstrained < lam.max()
    d = r.to_dict()
    assert d["scanner"] is None and len(d["moire_vectors"]) == 3 and len(d["peaks_nominal"]) == 6


def test_noisy_maps_have_larger_but_honest_uncertainties():
    """White noise (moiré peak SNR ≈ 20): every estimate within 3.5σ of the truth, σ neither tiny nor huge."""
    theta, eps, phi = 2.0, 0.003, 60.0
    clean = measure_metrology(tbg_map(256, 3.0, theta, eps, phi, atomic=False), keep_spectrum=False)
    pulls = []
    for seed in range(8):
        r = measure_metrology(tbg_map(256, 3.0, theta, eps, phi, atomic=False, noise=4.0, seed=seed),
                              keep_spectrum=False)
        assert 10 < np.mean(r.moire_snr) < 40
        assert r.twist_sigma_deg > 5 * clean.twist_sigma_deg and r.twist_sigma_deg < 0.02
        pulls.append([(r.twist_deg - theta) / r.twist_sigma_deg,
                      (r.strain_percent - 100 * eps) / r.strain_sigma_percent,
                      _dphi(r.strain_angle_deg, phi) / r.strain_angle_sigma_deg])
    pulls = np.array(pulls)
    assert np.abs(pulls).max() < 3.5, pulls
    rms = np.sqrt((pulls ** 2).mean(axis=0))
    assert np.all((rms > 0.3) & (rms < 2.0)), rms  # calibrated: neither over- nor under-confident


def test_noisy_atomic_map():
    theta, eps, phi = 4.41, 0.003, 30.0
    r = measure_metrology(tbg_map(384, 0.3, theta, eps, phi, noise=3.0, seed=3), keep_spectrum=False)
    assert r.atomic_resolved
    assert abs(r.twist_deg - theta) < 3 * r.twist_sigma_deg
    assert abs(r.strain_percent - 100 * eps) < 3 * r.strain_sigma_percent
    assert r.twist_sigma_deg > 0.005  # larger than on the clean map (≈ 0.003°)


@pytest.mark.parametrize("piezo,expect", [
    ([[1.02, 0.0], [0.0, 1.0]], (1.02, 1.0, 0.0)),         # x piezo 2 % off
    ([[1.0, 0.015], [0.0, 0.985]], (1.0, 0.985, 0.015)),   # drift along x during the slow scan, y 1.5 % short
])
def test_piezo_distortion_is_measured_on_the_atoms_and_corrected(piezo, expect):
    theta, eps, phi = 3.48, 0.002, 50.0
    r = measure_metrology(tbg_map(512, 0.25, theta, eps, phi, alpha=8.0, piezo=piezo), keep_spectrum=False)
    assert r.atomic_resolved
    sc = r.scanner
    np.testing.assert_allclose([sc.scale_x, sc.scale_y, sc.shear], expect, atol=5e-4)
    assert max(sc.scale_x_sigma, sc.scale_y_sigma, sc.shear_sigma) < 5e-4
    # the moiré read in the corrected frame is right; read in the nominal frame it is not
    assert abs(r.twist_deg - theta) < 0.01 and abs(r.twist_nominal_deg - theta) > 0.02
    assert abs(r.strain_percent - 100 * eps) < 0.02 and abs(_dphi(r.strain_angle_deg, phi)) < 3.0


def test_white_noise_and_bad_maps_are_refused():
    for seed in range(3):
        with pytest.raises(InputError, match="no moiré lattice found"):
            measure_metrology(MapData(np.random.default_rng(seed).standard_normal((256, 256)), 0.45))
    z = tbg_map(128, 2.0, 2.0, atomic=False).values
    z[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        measure_metrology(MapData(z, 2.0))
    with pytest.raises(InputError, match="constant"):
        measure_metrology(MapData(np.ones((64, 64)), 1.0))
    with pytest.raises(InputError, match="cannot resolve a moiré"):  # a 24 Å frame holds no 10° moiré
        measure_metrology(MapData(np.random.default_rng(0).standard_normal((48, 48)), 0.5))


def test_the_model_inverts_exactly_and_has_a_mirror_branch():
    """T(θ, ε, φ, α) → parameters on the branch θ > 0, ε ≥ 0; the mirror (−θ, ≈ φ + 90°) fits as well."""
    from scipy.optimize import least_squares

    from moireu.stm.metrology import _invert, moire_matrix, moire_vectors

    for th, e, ph, al in [(1.1, 0.003, 20.0, 0.0), (0.5, 0.0015, 170.0, 25.0), (10.0, 0.007, 95.0, -29.0),
                          (4.41, 0.0, 0.0, 3.0)]:
        T = moire_matrix(math.radians(th), e, math.radians(ph), math.radians(al))
        p = _invert(T, NU)
        assert abs(math.degrees(p[0]) - th) < 1e-9 and abs(math.hypot(p[1], p[2]) - e) < 1e-11
        if e:
            assert abs(_dphi(math.degrees(0.5 * math.atan2(p[2], p[1])), ph)) < 1e-6
        assert abs(_dalpha(math.degrees(p[3]), al)) < 1e-6
        # the module's moiré vectors are those of the test's (independent) construction, up to sign
        G1, G2 = layers(th, e, ph, al)
        ref = np.concatenate([G1 - G2, G2 - G1])
        for v in moire_vectors(th, e, ph, al):
            assert np.hypot(*(ref - v).T).min() < 1e-12
    # the other exact solutions of T (1.1°, 0.3 %, 20°, 0°): the mirror θ < 0 (strain axis ≈ 90° away)
    T = moire_matrix(math.radians(1.1), 0.003, math.radians(20.0), 0.0)

    def f(q):
        return (moire_matrix(q[0], q[1], q[2], q[3]) - T).ravel() / abs(T).max()

    mirror = min((least_squares(f, [-math.radians(1.1), 0.003, math.radians(p0), math.radians(a0)],
                                bounds=([-1, 0, -10, -10], [0, 1, 10, 10]), xtol=1e-15, ftol=1e-15, gtol=1e-15)
                  for p0 in range(0, 180, 30) for a0 in (-20, 0, 20)), key=lambda r: r.cost)
    assert mirror.cost < 1e-20 and abs(math.degrees(mirror.x[0]) + 1.1) < 1e-6
    assert abs(_dphi(math.degrees(mirror.x[2]), 110.0)) < 5.0
    # … and compression (ε < 0) with θ > 0, hence the reported convention θ > 0, ε ≥ 0
    comp = least_squares(f, [math.radians(1.1), 0.003, math.radians(110.0), math.radians(-7.5)], method="lm",
                         xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert comp.cost < 1e-20 and comp.x[0] > 0 and comp.x[1] < 0
