"""The measurement model: rendering, acquisition draws, distortions, noise, corruptions."""

import math

import numpy as np
import pytest

from moireu.config import load_config
from moireu.errors import InputError
from moireu.stm.geometry import CellGeometry
from moireu.stm.measure import (CORRUPTIONS, MeasurementSpec, ScanParams, _atoms_near,
                                corrupted_spec, draw_scan, scan_rng, simulate_map)
from moireu.stm.patch import render_map


def test_render_matches_direct_spot_sum(tbg2):
    """Undistorted scan: the convolution renderer equals Σ_i w_i s(|R − r_i|) summed directly."""
    g, ldos = tbg2
    scan = ScanParams(pixels=64, pixel_size=0.3, origin=(1.3, -0.7), tip_height=2.5)
    m = simulate_map(g, ldos, scan)
    pts, atom = _atoms_near(CellGeometry.of(g), np.array(scan.origin), 40.0)
    L = 64 * 0.3
    ox, oy = scan.origin
    ref = render_map(pts, ldos[atom], pixels=64, extent=(ox - L / 2, ox + L / 2, oy - L / 2, oy + L / 2),
                     tip_height=2.5, rel_cutoff=1e-7)
    np.testing.assert_allclose(m.values, ref.values, rtol=0, atol=2e-4 * float(np.abs(ref.values).max()))
    assert m.pixel_size == (0.3, 0.3) and m.meta["scan"]["origin"] == [1.3, -0.7]


def test_rotation_and_piezo_scale_move_the_sample(tbg2):
    """A frame rotated by 90° shows the same sample rotated: the nominal point u samples R(90°)u, so
    map(90°)[iy, ix] = map(0)[ix, n − 1 − iy] (pixel centres are symmetric about the frame centre)."""
    g, ldos = tbg2
    a = simulate_map(g, ldos, ScanParams(pixels=48, pixel_size=0.3)).values
    b = simulate_map(g, ldos, ScanParams(pixels=48, pixel_size=0.3, rotation_deg=90.0)).values
    # nominal u ↦ sample R(90°) u: b[u] = a[R u]; on the grid that is a transpose + flip
    np.testing.assert_allclose(b, np.rot90(a, 1), atol=1e-9 * np.abs(a).max())
    # a piezo scale s: the map of pixel p with scale s equals the map of pixel s·p
    c = simulate_map(g, ldos, ScanParams(pixels=48, pixel_size=0.3, scale=(1.02, 1.02))).values
    d = simulate_map(g, ldos, ScanParams(pixels=48, pixel_size=0.306)).values
    np.testing.assert_allclose(c, d, atol=1e-6 * np.abs(d).max())


def test_draw_scan_reproducible_and_in_range(tbg2):
    g, _ = tbg2
    spec = MeasurementSpec.from_config(load_config("demo").stm, g.cell)
    s1 = draw_scan(scan_rng(0, 123, 0, 5), spec)
    assert s1 == draw_scan(scan_rng(0, 123, 0, 5), spec)
    others = [draw_scan(scan_rng(0, 123, 0, v), spec) for v in range(20)] + [draw_scan(scan_rng(913, 123, 0, 5), spec)]
    assert len({s.origin for s in others}) == len(others)  # no two acquisitions share a crop
    for s in others:
        assert 0.40 <= s.pixel_size <= 0.50 and 0 <= s.rotation_deg < 360 and 2.8 <= s.tip_height <= 3.2
        assert max(abs(s.scale[0] - 1), abs(s.scale[1] - 1)) <= 0.01 and abs(s.twist_delta_deg) <= 0.02
        f = np.asarray(s.origin) @ np.linalg.inv(g.cell)
        assert np.all((f >= 0) & (f < 1))  # anywhere in one moiré cell
        assert set(s.columns()) == {"scan_origin_x", "scan_origin_y", "scan_rotation_deg", "scan_pixel_size",
                                    "scan_tip_height", "scan_scale_x", "scan_scale_y", "scan_heterostrain",
                                    "scan_twist_delta_deg", "scan_noise_white"}


def test_store_scan_columns_match_contract():
    from moireu.data.schema import SCAN_COLUMNS

    assert set(SCAN_COLUMNS) == set(ScanParams().columns()) | {"measured_twist_deg", "align_quality"}


def test_noise_levels_and_spectra(tbg2):
    g, ldos = tbg2
    base = dict(pixels=128, pixel_size=0.3)
    clean = simulate_map(g, ldos, ScanParams(**base)).values
    sig = clean.std()
    w = simulate_map(g, ldos, ScanParams(**base, noise_white=0.1, noise_seed=3)).values - clean
    assert abs(w.std() / sig - 0.1) < 0.005
    lines = simulate_map(g, ldos, ScanParams(**base, noise_lines=0.2, noise_seed=3)).values - clean
    assert np.allclose(lines, lines[:, :1])  # one offset per scan line
    assert abs(lines[:, 0].std() / sig - 0.2) < 0.05
    pink = (simulate_map(g, ldos, ScanParams(**base, noise_pink=0.2, noise_seed=3)).values - clean).ravel()
    assert abs(pink.std() / sig - 0.2) < 1e-6
    # power ∝ 1/f in scan time: log-log slope of the periodogram ≈ −1
    P = np.abs(np.fft.rfft(pink)) ** 2
    f = np.fft.rfftfreq(pink.size)
    sel = (f > 1e-4) & (f < 1e-1)
    slope = np.polyfit(np.log(f[sel]), np.log(P[sel]), 1)[0]
    assert -1.15 < slope < -0.85
    # the noise draw is the scan's: same seed, same map; another seed, another map
    a = simulate_map(g, ldos, ScanParams(**base, noise_white=0.1, noise_seed=4)).values
    assert not np.allclose(a - clean, w)


def test_local_stacking_distortion(tbg2):
    """No distortion = the ideal values exactly; the twist deviation scales the moiré by θ0/θ."""
    g, ldos = tbg2
    cg = CellGeometry.of(g)
    assert cg.moire_distortion_inverse(0.0, 0.0, 0.0) is None
    atoms = np.arange(cg.n_atoms)
    np.testing.assert_allclose(cg.equivalent_values(atoms, cg.positions + cg.cell[0] - cg.cell[1], ldos), ldos,
                               atol=1e-12)
    Minv = cg.moire_distortion_inverse(0.2, 0.0, 0.0)
    th0 = cg.theta0_deg
    assert abs(th0 - 13.1736) < 1e-3
    # M scales the moiré lattice by sin(θ0/2)/sin(θ/2) and rotates it by δθ/2
    M = np.linalg.inv(Minv)
    s = np.linalg.svd(M, compute_uv=False)
    np.testing.assert_allclose(s, math.sin(math.radians(th0 / 2)) / math.sin(math.radians((th0 + 0.2) / 2)), rtol=1e-9)
    # heterostrain ε distorts the moiré by ~ε/θ (amplified)
    Mh = np.linalg.inv(cg.moire_distortion_inverse(0.0, 0.003, 30.0))
    sv = np.linalg.svd(Mh, compute_uv=False)
    assert sv[0] / sv[1] - 1 > 0.5 * 0.003 / math.radians(th0)


def test_corruptions_table(tbg2):
    spec = MeasurementSpec.from_config(load_config("demo").stm, tbg2[0].cell)
    assert {"white_snr10", "white_snr3", "pink_1f", "scan_lines", "drift", "piezo_3pct", "heterostrain_0.3pct",
            "twist_0.1deg", "tip_height_1A"} <= set(CORRUPTIONS)
    for name in CORRUPTIONS:
        s = corrupted_spec(spec, name)
        draw_scan(np.random.default_rng(0), s)  # every corrupted spec draws valid scans
    assert corrupted_spec(spec, "white_snr3").noise_white == (1 / 3, 1 / 3)
    assert corrupted_spec(spec, "piezo_3pct").scale_error_max == 0.03
    t = corrupted_spec(spec, "tip_height_1A").tip_height
    assert t[1] - t[0] == pytest.approx(spec.tip_height[1] - spec.tip_height[0] + 2.0)
    with pytest.raises(InputError, match="unknown corruption"):
        corrupted_spec(spec, "cosmic_rays")


def test_bad_input(tbg2):
    g, ldos = tbg2
    with pytest.raises(InputError, match="one value per atom"):
        simulate_map(g, ldos[:-1], ScanParams())
    with pytest.raises(InputError, match="NaN"):
        simulate_map(g, np.full_like(ldos, np.nan), ScanParams())
    with pytest.raises(InputError, match="finite"):
        ScanParams(rotation_deg=float("inf"))
    with pytest.raises(InputError, match="positive"):
        ScanParams(pixel_size=0.0)
    with pytest.raises(InputError, match="integer ≥ 8"):
        ScanParams(pixels=4)


def test_acquire_is_simulate_then_align(tbg2, tbg2_transform):
    from moireu.stm.align import map_to_image
    from moireu.stm.measure import acquire

    g, ldos = tbg2
    scan = ScanParams(pixels=128, pixel_size=0.3, rotation_deg=12.0, noise_white=0.05, noise_seed=1)
    img, cols = acquire(g, ldos, scan, tbg2_transform)
    ref, info = map_to_image(simulate_map(g, ldos, scan), tbg2_transform)
    np.testing.assert_array_equal(img, ref.values)
    assert cols["scan_rotation_deg"] == 12.0
    # the fit runs through threaded LAPACK: the same map gives the same twist to rounding, not to the bit
    assert cols["measured_twist_deg"] == pytest.approx(info.twist_deg, rel=1e-12)
