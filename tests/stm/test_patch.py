import numpy as np
import pytest

from moireu.errors import InputError
from moireu.stm import build_patch, patch_points, reciprocal_peaks, render_map, spot_profile


@pytest.mark.parametrize("offset", [(0.0, 0.0), (1.1, -0.37), (-13.2, 40.5)])
def test_patch_holds_p2_cells_and_tiles_periodically(graphene_cell, offset):
    xy, cell = graphene_cell
    vals = np.array([2.0, 5.0])
    p = build_patch(xy, cell, vals, cells=5, offset=offset)
    assert len(p.xy) == 25 * 2
    # values follow the atom they were tiled from
    np.testing.assert_array_equal(p.values, vals[p.atom])
    # positions (shifted back by the centre) are lattice translates of the cell atoms
    f = (p.xy + p.center - xy[p.atom]) @ np.linalg.inv(cell)
    np.testing.assert_allclose(f, np.round(f), atol=1e-9)
    # the patch is centred
    np.testing.assert_allclose(p.xy.mean(axis=0), 0.0, atol=cell.max())


def test_patch_rotation_and_crop(graphene_cell):
    xy, cell = graphene_cell
    a = build_patch(xy, cell, cells=6)
    b = build_patch(xy, cell, cells=6, rotation_deg=17.0)
    c, s = np.cos(np.radians(17)), np.sin(np.radians(17))
    np.testing.assert_allclose(b.xy, a.xy @ np.array([[c, -s], [s, c]]).T, atol=1e-12)
    d = build_patch(xy, cell, cells=6, crop=5.0)
    assert np.all(np.linalg.norm(d.xy, axis=1) <= 5.0) and 0 < len(d.xy) < len(a.xy)
    r = build_patch(xy, cell, cells=6, crop=(6.0, 4.0))
    assert np.all(np.abs(r.xy[:, 0]) <= 3.0) and np.all(np.abs(r.xy[:, 1]) <= 2.0)
    x2, w2 = patch_points(xy, cell, np.array([1.0, 3.0]), cells=2)
    assert x2.shape == (8, 2) and w2.sum() == 16.0


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_patch_of_zero_cells_refused(graphene_cell, bad):
    xy, cell = graphene_cell
    with pytest.raises(InputError, match="at least one moiré cell"):
        build_patch(xy, cell, cells=bad)


def test_crop_leaving_nothing_refused(graphene_cell):
    xy, cell = graphene_cell
    with pytest.raises(InputError, match="leaves no atoms"):
        build_patch(xy, cell, cells=1, crop=1e-3, offset=(0.3, 0.3))


def test_render_single_atom_spot():
    img = render_map(np.array([[0.0, 0.0]]), np.array([2.0]), pixels=41, extent=(-5, 5, -5, 5), tip_height=3.0)
    a = img.values
    assert img.dims == ("y", "x") and a.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(a), a.shape)
    assert (iy, ix) == (20, 20)
    np.testing.assert_allclose(a, a[::-1, :], rtol=1e-5)
    np.testing.assert_allclose(a, a.T, rtol=1e-5)
    # the Slater p_z spot at the pixel centre
    rho = np.hypot(img.x.values[25], img.y.values[20])
    assert a[20, 25] == pytest.approx(2.0 * spot_profile(rho, 3.0), rel=1e-5)
    # a higher tip blurs the spot
    assert spot_profile(1.0, 6.0) > spot_profile(1.0, 3.0)
    g = render_map(np.array([[0.0, 0.0]]), np.array([1.0]), pixels=41, extent=(-5, 5, -5, 5),
                   orbital="gaussian", spot_width=1.0).values
    assert g[20, 20] == pytest.approx(1.0, rel=1e-6)  # pixel (20, 20) is centred on the atom
    assert g[20, 24] == pytest.approx(np.exp(-0.5 * (4 * 10 / 41) ** 2), rel=1e-5)


def test_render_is_linear_in_weights(rng):
    xy = rng.uniform(-10, 10, (50, 2))
    w1, w2 = rng.random(50), rng.random(50)
    kw = dict(pixels=32, extent=(-8, 8, -8, 8))
    np.testing.assert_allclose(render_map(xy, w1 + 2 * w2, **kw).values,
                               render_map(xy, w1, **kw).values + 2 * render_map(xy, w2, **kw).values,
                               rtol=1e-5, atol=1e-6)


def test_tbg_reciprocal_peaks():
    from moireu.lattice import build_tbg

    m = build_tbg(7, 2.85, 6.0)
    rp = reciprocal_peaks(m.positions, m.cell, m.layer, m.sublattice)
    b = 4 * np.pi / (np.sqrt(3) * 2.46)
    assert len(rp["bragg"]) == 12 and np.bincount(rp["bragg_layer"]).tolist() == [6, 6]
    np.testing.assert_allclose(np.linalg.norm(rp["bragg"], axis=1), b, rtol=1e-9)
    # layer-1 peaks are rotated by θ from layer-0 peaks
    ang = np.degrees(np.arctan2(rp["bragg"][:, 1], rp["bragg"][:, 0]))
    d = (ang[rp["bragg_layer"] == 1][:, None] - ang[rp["bragg_layer"] == 0][None]) % 60
    assert np.isclose(np.minimum(d, 60 - d).min(axis=1), m.theta_deg, atol=1e-6).all()
    bm = np.linalg.norm(m.reciprocal, axis=1).max()
    dist = np.linalg.norm(rp["moire"][:, None] - np.vstack([rp["bragg"], [[0, 0]]])[None], axis=2).min(axis=1)
    assert len(rp["moire"]) > 12 and np.all(dist <= 1.01 * bm)
