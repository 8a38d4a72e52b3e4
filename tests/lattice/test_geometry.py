import math

import numpy as np
import pytest

from moireu.constants import A_CC, A_LAT
from moireu.errors import InputError
from moireu.lattice import find_pairs, graphene_geometry, n_atoms, tbg_geometry, twist_angle


@pytest.mark.parametrize("i", range(1, 13))
def test_atom_count_and_angle(i):
    g = tbg_geometry(i, 3.35)
    m = 3 * i * i + 3 * i + 1
    assert g.n_orb == n_atoms(i) == 4 * m
    assert math.isclose(math.cos(math.radians(g.theta_deg)), (m - 0.5) / m, rel_tol=1e-12)
    # two layers, two sublattices, equal counts
    for lay in (0, 1):
        for s in (0, 1):
            assert np.sum((g.layer == lay) & (g.sublattice == s)) == m
    # moiré period L = a / (2 sin(θ/2)) equals |t1| = |t2|
    L = A_LAT / (2 * math.sin(math.radians(g.theta_deg) / 2))
    assert np.allclose(np.linalg.norm(g.cell, axis=1), L, rtol=1e-10)


def test_reference_angles():
    assert twist_angle(9) == pytest.approx(3.481, abs=5e-4)
    assert n_atoms(9) == 1084
    assert twist_angle(7) == pytest.approx(4.408, abs=5e-4)
    assert n_atoms(7) == 676


@pytest.mark.parametrize("i", [1, 2, 5])
def test_layers_are_commensurate_honeycombs(i):
    """Every atom has exactly three in-layer neighbours at a_cc under periodic boundary conditions."""
    g = tbg_geometry(i, 3.35)
    p = find_pairs(g.positions, g.cell, 1.05 * A_CC)
    same = g.layer[p.i] == g.layer[p.j]
    assert np.allclose(p.dist[same], A_CC, atol=2e-3)
    counts = np.bincount(p.i[same], minlength=g.n_orb)
    assert np.all(counts == 3)
    # no interlayer pair closer than d
    assert np.all(p.dist[~same] >= 3.35 - 1e-9) if np.any(~same) else True


def test_twist_is_the_commensurate_rotation():
    """Top-layer A sites rotated back by −θ are bottom-lattice points: the top layer is the bottom one
    rotated by θ, and the supercell is commensurate with both."""
    from moireu.lattice.geometry import graphene_vectors

    g = tbg_geometry(3, 3.35)
    th = -math.radians(g.theta_deg)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    top = g.positions[(g.layer == 1) & (g.sublattice == 0), :2]
    coords = (top @ rot.T) @ np.linalg.inv(graphene_vectors())
    assert np.allclose(coords, np.round(coords), atol=1e-9)
    # and the cell vectors are lattice vectors of the rotated layer too
    c = (g.cell @ rot.T) @ np.linalg.inv(graphene_vectors())
    assert np.allclose(c, np.round(c), atol=1e-9)


def test_stacking_centres():
    g = tbg_geometry(4, 3.35)
    assert np.allclose(g.aa_centers[0], 0.0)
    # at the AA centre both layers have an atom on top of each other
    on_top = np.linalg.norm(g.positions[:, :2], axis=1) < 1e-9
    assert set(g.layer[on_top]) == {0, 1}
    assert g.ab_centers.shape == (2, 2)


def test_graphene():
    g = graphene_geometry()
    assert g.n_orb == 2
    assert np.linalg.norm(g.positions[1] - g.positions[0]) == pytest.approx(A_LAT / math.sqrt(3))


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_index(bad):
    with pytest.raises(InputError, match="index"):
        tbg_geometry(bad, 3.35)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_bad_distance(bad):
    with pytest.raises(InputError, match="interlayer distance"):
        tbg_geometry(2, bad)
