"""The reference FT-LDOS: no mean subtraction, the 1003² window grid, images from TB LDOS of a tiny cell."""

import math

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.stm.ft import FTWindow, ft_direct
from moireu.stm.paper import PAPER_GRID, PaperTransform, paper_amplitude, paper_image
from moireu.stm.patch import build_patch


def test_amplitude_has_no_mean_subtraction_and_matches_the_direct_sum(graphene_cell, rng):
    xy, cell = graphene_cell
    p = build_patch(xy, cell, rng.random(2) + 0.5, cells=6)
    n = 41
    amp = paper_amplitude(p.xy, p.values, n)
    # odd grid: the centre pixel is k = 0, where |F| = Σ LDOS (a mean-subtracted transform gives 0)
    assert math.isclose(amp[n // 2, n // 2], p.values.sum(), rel_tol=1e-9)
    kx, ky = FTWindow.reference().axes(n)
    idx = rng.integers(0, n, (6, 2))
    d = np.abs(ft_direct(p.xy, p.values, kx[idx[:, 1]], ky[idx[:, 0]]))
    assert np.allclose(amp[idx[:, 0], idx[:, 1]], np.diag(d) if d.ndim == 2 else d, rtol=1e-6, atol=1e-8)


def test_default_grid_and_window_are_the_references():
    t = PaperTransform()
    assert (PAPER_GRID, t.grid, t.size, t.dpi, t.figsize_in, t.cmap) == (1003, 1003, 256, 112, 8.0, "turbo")
    assert math.isclose(t.window.kx_max, 1.1 * 2 * math.pi / 2.46)
    assert math.isclose(t.window.ky_max, 1.1 * 4 * math.pi / (math.sqrt(3) * 2.46))
    assert t.to_dict()["subtract_mean"] is False and t.to_dict()["kind"] == "paper"
    with pytest.raises(InputError, match="grid"):
        PaperTransform(grid=4)


@pytest.fixture(scope="module")
def tiny_tbg_ldos():
    from moireu.lattice import build_tbg, kmesh
    from moireu.stm import ldos_from_spectrum

    m = build_tbg(2, 3.35, 6.0)
    kf, w = kmesh(m, (2, 2))
    e, v = np.linalg.eigh(m.hk_batch(kf))
    n = m.n_orb
    e0 = 0.5 * (e[:, n // 2 - 1].max() + e[:, n // 2].min())
    L = ldos_from_spectrum(e, v, w, [e0, e0 + 0.5], eta=0.05, kind="lorentzian")
    return m.positions, m.cell, L


def test_paper_image_of_tb_ldos_of_a_tiny_cell(tiny_tbg_ldos):
    pos, cell, L = tiny_tbg_ldos
    t = PaperTransform(grid=201, patch_cells=3, figsize_in=2.0, dpi=64, size=48)
    a = paper_image(pos, cell, L[0], t)
    assert a.shape == (48, 48) and a.dtype == np.float32 and np.isfinite(a).all()
    assert 0.0 <= a.min() < a.max() <= 1.0
    # a whole moiré lattice vector of patch offset selects the same atoms: the same image
    b = paper_image(pos, cell, L[0], t, offset=tuple(cell[0] + cell[1]))
    assert np.allclose(a, b, atol=1.5 / 255)
    # per-image automatic colour limits: a uniform gain of the LDOS leaves the image unchanged
    assert np.array_equal(paper_image(pos, cell, 3.0 * L[0], t), a)
    # the TB LDOS of this cell is nearly uniform, so without mean subtraction the image is the lattice
    # form factor (k = 0 and Bragg peaks): another bias changes it by less than 2 gray levels ...
    assert np.abs(paper_image(pos, cell, L[1], t) - a).max() < 2.5 / 255
    # ... while a layer-polarised LDOS (a strong modulation) changes it visibly
    top = pos[:, 2] > pos[:, 2].mean()
    assert np.abs(paper_image(pos, cell, L[0] * np.where(top, 1.5, 0.5), t) - a).max() > 0.05
    with pytest.raises(InputError, match="NaN"):
        paper_image(pos, cell, np.full(len(pos), np.nan), t)
