"""Alignment and the map → image path shared by training and predict."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moireu.errors import InputError
from moireu.io import MapData
from moireu.stm.align import map_to_image
from moireu.stm.ftldos import ImageTransform
from moireu.stm.measure import ScanParams, simulate_map, user_map_image

PIX = dict(pixels=128, pixel_size=0.3)  # 38 Å frame: 3.6 moiré periods of i = 2


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_alignment_recovers_rotation_scale_period_twist(tbg2, tbg2_transform):
    g, ldos = tbg2
    t = tbg2_transform
    ref, info0 = map_to_image(simulate_map(g, ldos, ScanParams(**PIX)), t)
    assert info0.atomic_resolved and info0.in_range and info0.quality > 0.8
    assert abs(info0.twist_deg - 13.1736) < 0.03 and abs(info0.moire_period - 10.723) < 0.03
    # (twist deviations are checked at i = 7 below: at i = 2 the moiré spans only 4.4 atoms and the
    # local-stacking interpolation of the renderer is coarse)
    for phi, s in [(37.0, (1.01, 0.99)), (211.3, (0.985, 1.0)), (-95.0, (1.0, 1.0))]:
        dth = 0.0
        scan = ScanParams(**PIX, rotation_deg=phi, scale=s, origin=(2.0, 3.0))
        img, info = map_to_image(simulate_map(g, ldos, scan), t)
        expect = (-phi + 30.0) % 60.0 - 30.0  # a frame rotated by φ shows the lattice rotated by −φ
        assert abs(info.angle_deg - expect) < 0.05, (phi, info.angle_deg)
        np.testing.assert_allclose(sorted(info.scale), sorted(s), atol=1.5e-3)  # piezo scale from the Bragg lattice
        assert abs(info.twist_deg - (13.1736 + dth)) < 0.04
        assert info.in_range
        assert _corr(img.values, ref.values) > 0.98


def test_alignment_on_tbg_i7_tight_binding_ldos(request):
    """TB LDOS at E_F of TBG i = 7 (θ = 4.41°): rotation, twist and period from a demo-size map."""
    from moireu.config import load_config
    from moireu.lattice import build_tbg, kmesh
    from moireu.stm.ldos import ldos_from_spectrum

    model = build_tbg(7, 2.85)
    kf, w = kmesh(model, (2, 2))
    e, v = np.linalg.eigh(model.hk_batch(kf))
    ef = float(np.median(e))  # neutrality: half of the states filled
    ldos = ldos_from_spectrum(e, v, w, [ef], 0.004)[0]
    t = ImageTransform.from_config(load_config("demo").stm, geom=model)
    assert t.twist_deg == pytest.approx(4.4085, abs=1e-3) and len(t.bragg_indices) == 12
    for phi, dth in [(0.0, 0.0), (123.4, 0.05)]:
        img, info = map_to_image(simulate_map(model, ldos, ScanParams(pixel_size=0.45, rotation_deg=phi,
                                                                      twist_delta_deg=dth)), t)
        assert info.atomic_resolved and info.in_range
        assert abs(info.angle_deg - ((-phi + 30) % 60 - 30)) < 0.05
        assert abs(info.twist_deg - (4.4085 + dth)) < 0.01
        assert abs(info.moire_period - 2.46 / (2 * math.sin(math.radians(4.4085 + dth) / 2))) < 0.1


def test_user_map_equals_simulated_map(tmp_path, tbg2, tbg2_transform):
    """The predict path (file → moireu.io → user_map_image) gives exactly the training image."""
    g, ldos = tbg2
    scan = ScanParams(**PIX, rotation_deg=71.0, scale=(1.005, 0.995), noise_white=0.05, noise_seed=9)
    m = simulate_map(g, ldos, scan)
    f = tmp_path / "scan.npy"
    np.save(f, m.values)
    (tmp_path / "scan.npy.json").write_text(json.dumps({"pixel_size": m.pixel_size[0]}))
    img_user, info_user = user_map_image(f, tbg2_transform.to_json())
    img_sim, info_sim = map_to_image(m, tbg2_transform)
    np.testing.assert_allclose(img_user.values, img_sim.values, atol=1e-5)
    assert info_user == info_sim
    # float32 export and a PNG-like 16-bit quantisation still give the same image up to that noise
    np.save(f, m.values.astype(np.float32))
    assert _corr(user_map_image(f, tbg2_transform)[0].values, img_sim.values) > 0.9999
    q = np.round(65535 * (m.values - m.values.min()) / np.ptp(m.values))
    assert _corr(user_map_image(q, tbg2_transform, pixel_size=m.pixel_size)[0].values, img_sim.values) > 0.999


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 5), f1=st.floats(0, 1), f2=st.floats(0, 1))
def test_image_invariant_under_60deg_rotations_and_translations(tbg2, tbg2_transform, n, f1, f2):
    """|FT| of the aligned map is invariant (up to apodisation) under frame rotations by 60°·n
    (a symmetry of the lattice's |FT|) and any shift of the frame origin in the moiré cell."""
    g, ldos = tbg2
    ref, _ = map_to_image(simulate_map(g, ldos, ScanParams(**PIX)), tbg2_transform)
    origin = tuple(float(x) for x in np.array([f1, f2]) @ g.cell)
    img, info = map_to_image(simulate_map(g, ldos, ScanParams(**PIX, rotation_deg=60.0 * n, origin=origin)),
                             tbg2_transform)
    assert abs(info.angle_deg) < 0.05
    assert _corr(img.values, ref.values) > 0.97


def test_out_of_range_maps_are_flagged(tbg2, tbg2_transform, rng):
    from moireu.lattice.geometry import tbg_geometry

    # another twist angle (i = 3, θ = 9.43°) against the i = 2 training lattice
    g3 = tbg_geometry(3, 3.35)
    rec = 2 * np.pi * np.linalg.inv(g3.cell).T
    shell = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, -1], [-1, -1]]) @ rec
    l3 = 1.0 + 0.3 * np.cos(g3.positions[:, :2] @ shell.T).sum(axis=1)
    _, info = map_to_image(simulate_map(g3, l3, ScanParams(pixels=160, pixel_size=0.3)), tbg2_transform)
    assert not info.in_range and abs(info.twist_deg - 9.43) < 0.1
    # white noise: no lattice
    _, info = map_to_image(MapData(rng.standard_normal((128, 128)), 0.3), tbg2_transform)
    assert not info.in_range and info.quality < 0.5


def test_legacy_transform_and_refusals(tbg2, tbg2_transform, rng):
    g, ldos = tbg2
    m = simulate_map(g, ldos, ScanParams(**PIX))
    old = {"n_pixels": 32, "moire_period": 10.72, "normalize": "zscore"}  # stored before the measurement model
    t_old = ImageTransform.from_dict(old)
    assert not t_old.align and t_old.apodize == "none"
    img, info = map_to_image(m, t_old)
    assert img.shape == (32, 32) and info.in_range and math.isnan(info.twist_deg)
    with pytest.raises(InputError, match="training lattice"):
        ImageTransform(align=True)
    t = tbg2_transform
    with pytest.raises(InputError, match="too coarse.*Nyquist"):
        map_to_image(MapData(rng.random((64, 64)), 1.2), t)
    with pytest.raises(InputError, match="field of view .* too small"):
        map_to_image(MapData(rng.random((32, 32)), 0.3), t)  # 9.6 Å < 2 L_M
    bad = m.values.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        map_to_image(MapData(bad, 0.3), t)
    with pytest.raises(InputError, match="constant"):
        map_to_image(MapData(np.ones((128, 128)), 0.3), t)
    with pytest.raises(InputError, match="pixel size"):
        user_map_image(m.values, t)
    # round trip of the new fields through JSON
    assert ImageTransform.from_dict(t.to_json()) == t


def test_atom_table_goes_through_the_same_map_path(tmp_path, tbg2, tbg2_transform):
    """A per-atom LDOS table is rendered as a map first, then aligned like any map."""
    from moireu.stm.patch import build_patch

    g, ldos = tbg2
    p = build_patch(g.positions, g.cell, ldos, cells=5, rotation_deg=23.0)
    f = tmp_path / "atoms.csv"
    f.write_text("x,y,ldos\n" + "\n".join(f"{float(x)!r},{float(y)!r},{float(v)!r}" for (x, y), v in zip(p.xy, p.values)))
    img, info = user_map_image(f, tbg2_transform, table_pixel_size=0.3)
    assert info.in_range and abs(info.twist_deg - 13.1736) < 0.05
    assert abs(info.angle_deg - ((23.0 + 30) % 60 - 30)) < 0.1  # the patch, not a frame, is rotated by +23°
    assert img.shape == (48, 48) and img.attrs["map_rendered_from"] == "atom table"


def test_fixed_window_radius_tiles_and_refusals(tbg2, tbg2_transform):
    from moireu.stm.align import MAX_WINDOWS_AXIS, window_tiles

    t = tbg2_transform
    R = t.window_radius
    assert R == pytest.approx(1.4 * t.moire_period)  # the demo preset's radius, in moiré periods
    small = MapData(np.random.default_rng(0).normal(size=(64, 64)), (0.4, 0.4))  # 25.6 Å < 2R
    with pytest.raises(InputError, match="too small for this model's FT window"):
        window_tiles(small, t)
    for n in (76, 128, 256, 1024):
        m = MapData(np.zeros((n, n)), (0.4, 0.4))
        radius, c = window_tiles(m, t)
        assert radius == R
        # every window lies inside the frame; neighbouring centres are ¼–½ radius apart, or spread
        # evenly over the frame when that would exceed MAX_WINDOWS_AXIS per axis
        assert np.all(np.abs(c) + R <= 0.5 * n * 0.4 + 1e-9)
        xs = np.unique(np.round(c[:, 0], 9))
        assert len(xs) <= MAX_WINDOWS_AXIS and len(c) == len(xs) ** 2
        if 1 < len(xs) < MAX_WINDOWS_AXIS:
            assert 0.25 * R - 1e-9 <= np.diff(xs).min() and np.diff(xs).max() <= 0.5 * R + 1e-9
    assert len(window_tiles(MapData(np.zeros((76, 76)), (0.4, 0.4)), t)[1]) == 1
    inscribed = ImageTransform(**(t.__dict__ | {"window_radius": None}))
    radius, c = window_tiles(MapData(np.zeros((100, 80)), (0.5, 0.5)), inscribed)
    assert radius == pytest.approx(20.0) and c.tolist() == [[0.0, 0.0]]


def test_fixed_window_makes_the_image_independent_of_the_field_of_view(tbg2, tbg2_transform):
    """The same state seen through frames of 34–58 Å: one peak shape with a fixed window (the
    inscribed disc changes the k resolution with the frame)."""
    g, ldos = tbg2
    t = tbg2_transform
    inscribed = ImageTransform(**(t.__dict__ | {"window_radius": None}))
    imgs = {"fixed": [], "inscribed": []}
    for n, origin in [(85, (0.0, 0.0)), (110, (3.1, -2.2)), (145, (-4.0, 1.3))]:
        m = simulate_map(g, ldos, ScanParams(pixels=n, pixel_size=0.4, rotation_deg=23.0, origin=origin))
        imgs["fixed"].append(map_to_image(m, t)[0].values)
        imgs["inscribed"].append(map_to_image(m, inscribed)[0].values)
    spread = {k: 1.0 - min(_corr(v[0], x) for x in v[1:]) for k, v in imgs.items()}
    assert spread["fixed"] < 0.01
    assert spread["fixed"] < 0.5 * spread["inscribed"]
