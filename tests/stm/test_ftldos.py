import numpy as np
import pytest

from moireu.errors import InputError
from moireu.stm import FTWindow, ImageTransform, build_patch, ft_direct, ft_grid, ft_points, ftldos, reciprocal_peaks


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("n", [8, 9, 16, 31, 64])
def test_finufft_matches_direct_sum_on_random_inputs(rng, n):
    m = 700
    xy = rng.uniform(-60.0, 80.0, (m, 2))
    w = rng.normal(size=m) + 0.3
    win = FTWindow.reference()
    kx, ky = win.axes(n)
    F = ft_grid(xy, w, n, win)
    D = ft_direct(xy, w, kx, ky)
    assert F.shape == (n, n)
    assert _rel(F, D) <= 1e-6
    # and the direct reference itself agrees with a naive loop at a few points
    for j, l in [(0, 0), (n - 1, 2), (n // 2, n // 3)]:
        naive = np.sum(w * np.exp(-1j * (kx[j] * xy[:, 0] + ky[l] * xy[:, 1])))
        assert abs(D[l, j] - naive) <= 1e-9 * np.abs(D).max()


def test_type3_points_match_direct(rng):
    xy = rng.uniform(-30, 30, (300, 2))
    w = rng.random(300)
    k = rng.uniform(-3, 3, (40, 2))
    ref = np.exp(-1j * k @ xy.T) @ w
    assert _rel(ft_points(xy, w, k), ref) <= 1e-6


def test_single_atom_is_flat():
    for pos in ([0.0, 0.0], [3.7, -1.2]):
        img = ftldos(np.array([pos]), np.array([2.5]), n=16, subtract_mean=False, normalize="none")
        assert img.dtype == np.float32
        np.testing.assert_allclose(img.values, 2.5, rtol=1e-6)  # |F|/M = |w| everywhere


def test_graphene_patch_peaks_at_reciprocal_lattice(graphene_cell):
    xy, cell = graphene_cell
    p = build_patch(xy, cell, cells=24)
    img = ftldos(p.xy, p.values, n=129, subtract_mean=False, normalize="none")
    a = img.values
    kx, ky = img.kx.values, img.ky.values
    # local maxima above 0.3 of the maximum (the Γ peak is 2× the first-shell ones: |1 + e^{-iG·δ}| = 1 vs 2;
    # sinc side lobes stay below 0.22)
    pad = np.pad(a, 1, constant_values=-np.inf)
    nb = np.stack([pad[1 + dy:1 + dy + a.shape[0], 1 + dx:1 + dx + a.shape[1]]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    peaks = np.argwhere((a > nb.max(axis=0)) & (a > 0.3 * a.max()))
    found = np.array([[kx[j], ky[i]] for i, j in peaks])
    rec = 2 * np.pi * np.linalg.inv(cell).T
    G = np.array([m1 * rec[0] + m2 * rec[1] for m1 in range(-3, 4) for m2 in range(-3, 4)])
    G = G[(np.abs(G[:, 0]) <= kx.max()) & (np.abs(G[:, 1]) <= ky.max())]
    assert len(G) == 7  # Γ + the six first-shell Bragg peaks fit the reference window
    assert len(found) == len(G)
    dk = np.hypot(kx[1] - kx[0], ky[1] - ky[0])
    for g in G:
        assert np.min(np.linalg.norm(found - g, axis=1)) <= dk
    # the tabulated peaks agree
    rp = reciprocal_peaks(xy, cell, sublattice=np.array([0, 1]))
    assert len(rp["bragg"]) == 6
    np.testing.assert_allclose(np.linalg.norm(rp["bragg"], axis=1), 4 * np.pi / (np.sqrt(3) * 2.46), rtol=1e-12)


def _disc_about(xy_cell, cell, values, centre, radius):
    p = build_patch(xy_cell, cell, values, cells=30)
    # move a symmetry centre of the infinite lattice to the origin, then cut a disc
    a_atoms = p.xy[p.atom == 0]
    shift = a_atoms[np.argmin(np.linalg.norm(a_atoms, axis=1))]  # an A atom near the patch centre
    pts = p.xy - shift - centre
    keep = np.linalg.norm(pts, axis=1) <= radius
    return pts[keep], p.values[keep]


def _rot(deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s], [s, c]])


def test_c3_and_c6_symmetry(graphene_cell, rng):
    xy, cell = graphene_cell
    k = rng.uniform(-3, 3, (60, 2))
    # staggered sublattice (hBN-like), disc centred on an A atom: point group C3v, not C6
    pts, w = _disc_about(xy, cell, np.array([1.0, 0.4]), np.zeros(2), 25.0)
    F = ft_points(pts, w, k)
    F120 = ft_points(pts, w, k @ _rot(120).T)
    F60 = ft_points(pts, w, k @ _rot(60).T)
    assert _rel(F120, F) <= 1e-8                      # C3 of the complex F
    assert _rel(F60, F) > 1e-2                        # F itself is not C6 …
    np.testing.assert_allclose(np.abs(F60), np.abs(F), rtol=1e-7, atol=1e-8 * np.abs(F).max())  # … but |F| is (Friedel)
    # uniform graphene about a hexagon centre: C6 already in F
    pts, w = _disc_about(xy, cell, np.array([1.0, 1.0]), -(cell[0] + cell[1]) / 3, 25.0)  # hexagon centre
    F = ft_points(pts, w, k)
    assert _rel(ft_points(pts, w, k @ _rot(60).T), F) <= 1e-8
    # on the image grid: mirror symmetries of the C6v patch
    img = ftldos(pts, w, n=33, subtract_mean=False, normalize="none").values
    np.testing.assert_allclose(img, img[::-1, :], rtol=1e-5, atol=1e-6 * img.max())
    np.testing.assert_allclose(img, img[:, ::-1], rtol=1e-5, atol=1e-6 * img.max())


def test_friedel_symmetry_of_random_weights(rng):
    xy = rng.uniform(-20, 20, (200, 2))
    img = ftldos(xy, rng.random(200), n=17, subtract_mean=True, normalize="none").values
    np.testing.assert_allclose(img, img[::-1, ::-1], rtol=1e-5, atol=1e-6 * img.max())


def test_transform_options_and_metadata(rng):
    xy = rng.uniform(-20, 20, (300, 2))
    w = 1.0 + 0.1 * rng.random(300)
    z = ftldos(xy, w, n=32, normalize="zscore", attrs={"U": 4.0, "nu": 0.0, "bias": 0.002, "patch": [6, 0]})
    assert z.dims == ("ky", "kx") and z.dtype == np.float32
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4
    assert z.attrs["U"] == 4.0 and z.attrs["normalize"] == "zscore" and z.attrs["subtract_mean"] == 1
    t = ImageTransform.from_dict(z.attrs["image_transform"])
    assert t.n_pixels == 32 and t.subtract_mean and t.normalize == "zscore"
    mm = ftldos(xy, w, n=32, normalize="minmax", log=True)
    assert float(mm.min()) == 0.0 and float(mm.max()) == 1.0 and mm.attrs["log"] == 1
    # subtracting the mean removes the k = 0 peak of a nearly uniform LDOS
    raw = ftldos(xy, w, n=33, subtract_mean=False, normalize="none")
    sub = ftldos(xy, w, n=33, subtract_mean=True, normalize="none")
    assert float(raw.sel(kx=0, ky=0)) > 0.9 and float(sub.sel(kx=0, ky=0)) < 1e-6
    assert raw.kx.attrs["units"] == "1/Angstrom"
    np.testing.assert_allclose([raw.kx.max(), raw.ky.max()], [1.1 * 2 * np.pi / 2.46, 1.1 * 4 * np.pi / (np.sqrt(3) * 2.46)])


@pytest.mark.parametrize("bad", [7, 0, -3, 8.5, "x"])
def test_bad_image_size(bad, rng):
    with pytest.raises(InputError, match="N must be an integer"):
        ftldos(rng.random((5, 2)), rng.random(5), n=bad)


def test_empty_and_nan_points():
    with pytest.raises(InputError, match="no points"):
        ftldos(np.zeros((0, 2)), np.zeros(0), n=8)
    with pytest.raises(InputError, match="finite"):
        ftldos(np.zeros((2, 2)), np.array([1.0, np.nan]), n=8)
