import math

import numpy as np
import pytest

from moireu.analysis.kspace import (bragg_radius, estimate_orientation, moire_radius, peak_geometry, region_masks,
                                    region_shares, twist_angle_deg)
from moireu.errors import InputError

from .conftest import INDEX, kgrid, synth_image


def test_twist_angles_known_values():
    # i = 1: 21.787°, i = 31: 1.05° (magic angle), i = 7: 4.41°
    assert twist_angle_deg(1) == pytest.approx(21.7868, abs=1e-3)
    assert twist_angle_deg(31) == pytest.approx(1.0502, abs=1e-3)
    assert twist_angle_deg(7) == pytest.approx(4.4085, abs=1e-3)
    with pytest.raises(InputError):
        twist_angle_deg(0)


def test_bragg_and_moire_radii():
    G = bragg_radius(2.46)
    assert G == pytest.approx(2.9493, abs=1e-4)
    th = twist_angle_deg(7)
    # moiré period L = a / (2 sin(θ/2)) and |g_M| = 4π/(√3 L)
    L = 2.46 / (2 * math.sin(math.radians(th) / 2))
    assert moire_radius(th) == pytest.approx(4 * math.pi / (math.sqrt(3) * L), rel=1e-12)


def test_peak_geometry_is_on_moire_lattice():
    geom = peak_geometry(twist_angle_deg(INDEX), 0.3)
    G, gm = geom.g_bragg, geom.g_moire
    assert np.allclose(np.linalg.norm(geom.bragg, axis=1), G)
    # the two layers' Bragg peaks of one direction differ by exactly one moiré vector
    assert np.allclose(np.linalg.norm(geom.bragg[:6] - geom.bragg[6:], axis=1), gm)
    pts = np.concatenate([geom.central, geom.bragg, geom.satellites])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(len(pts)) * 1e9
    assert d.min() == pytest.approx(gm, rel=1e-6)  # distinct points, nearest neighbours |g_M| apart
    assert len(geom.satellites) > 6


def test_orientation_recovered_and_masks_partition():
    kx, ky = kgrid()
    rng = np.random.default_rng(1)
    # orientations whose whole Bragg ring lies inside the training k window (|kx| <= 1.1 * 2pi/a)
    # (and one that the window cuts)
    for phi in (np.pi / 6 - 0.06, np.pi / 6, np.pi / 6 + 0.07, 0.1):
        img = synth_image(0.0, rng, kx, ky, phi0=phi, noise=0.05)
        est = estimate_orientation(img, kx, ky, twist_angle_deg(INDEX))
        assert abs(np.angle(np.exp(6j * (est - phi)))) / 6 < math.radians(1.0)
    geom = peak_geometry(twist_angle_deg(INDEX), np.pi / 6)
    masks = region_masks(kx, ky, geom)
    total = sum(m.astype(int) for m in masks.values())
    assert np.all(total == 1)
    # the brightest pixel of a clean synthetic image is a peak, inside one of the peak regions
    img = synth_image(0.0, rng, kx, ky, noise=0.0)
    j = np.unravel_index(np.argmax(img), img.shape)
    assert not masks["other"][j]
    # a map that is 1 on the satellites only puts 100 % of its share there
    shares = region_shares(masks["satellites"].astype(float), masks)
    assert shares["satellites"] == pytest.approx(1.0)
    assert shares["bragg"] == 0.0
    with pytest.raises(InputError):
        region_masks(kx, ky, geom, radius_fraction=0.6)
