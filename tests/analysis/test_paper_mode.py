"""The reference analysis, piece by piece: per-U mean PCA, high-pass, the 80/20 split, the baselines."""

import numpy as np
import pytest

from moireu.analysis.paper import (highpass_zscore, paper_baselines, paper_pca, paper_split,
                                   per_u_mean_images)
from moireu.errors import InputError


def test_per_u_mean_images_and_pca_on_the_means():
    rng = np.random.default_rng(0)
    U = np.repeat([0.0, 1.0, 2.0, 3.0], 5)
    a, b = rng.standard_normal((2, 8, 8))
    # the mean image moves along a with U; within each U the crops scatter along b with zero mean
    c = np.tile([-2.0, -1.0, 0.0, 1.0, 2.0], 4)
    imgs = U[:, None, None] * a + c[:, None, None] * b
    vals, means = per_u_mean_images(imgs, U)
    assert np.array_equal(vals, [0, 1, 2, 3])
    assert np.allclose(means[2], imgs[10:15].mean(0))
    pca, uv = paper_pca(imgs, U, 2)
    # the within-U scatter averages out: the means vary along a only, PC1 = a with 100 % of the variance
    ev = pca.explained_variance_ratio
    cos = abs(np.dot(pca.components[0].ravel(), a.ravel())) / np.linalg.norm(a)
    assert ev[0] > 1 - 1e-9 and cos > 1 - 1e-9
    # projections are of every image, on the components of the means
    assert pca.projections.shape == (20, 2)
    assert np.allclose(pca.projections, pca.transform(imgs))
    # PCA of every image sees the scatter along b as well
    from moireu.analysis.pca import fit_pca

    assert fit_pca(imgs, 2).explained_variance_ratio[1] > 0.2
    with pytest.raises(InputError, match="2 distinct U"):
        paper_pca(imgs[:5], U[:5])


def test_highpass_removes_a_smooth_background_and_keeps_a_peak():
    n = 64
    y, x = np.mgrid[:n, :n]
    smooth = 5 + 0.1 * x + 0.05 * y  # a ramp: the blur reproduces it away from the edges
    peak = np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / 2.0)
    h = highpass_zscore((smooth + 3 * peak)[None])[0]
    hs = highpass_zscore(smooth[None])[0]
    # a linear ramp is a fixed point of the (symmetric, truncated at 4σ = 16 px) blur away from the edges
    assert np.abs(hs[17:-17, 17:-17]).max() < 1e-9
    assert h[32, 32] > 5 * np.abs(h[8:20, 8:20]).max()  # the peak survives
    # z-scoring first: a gain and an offset do not change the result
    assert np.allclose(highpass_zscore((7 * smooth + 3 * peak * 7 + 2)[None]), h[None], atol=1e-10)


def test_paper_split_is_sklearn_80_20_seed_101():
    from sklearn.model_selection import train_test_split

    tr, te = paper_split(50)
    want_tr, want_te = train_test_split(np.arange(50), test_size=0.2, random_state=101)
    assert np.array_equal(tr, want_tr) and np.array_equal(te, want_te) and len(te) == 10


def test_paper_baselines_fit_a_linear_signal():
    rng = np.random.default_rng(3)
    n = 60
    U = np.repeat(np.linspace(0, 6, 12), 5)
    basis = rng.standard_normal((3, 16, 16))
    # a fixed pattern plus a U-proportional one (survive the per-image z-score and the high-pass), weak noise
    imgs = basis[0] + 0.05 * U[:, None, None] * basis[1] + 0.01 * rng.standard_normal((n, 16, 16))
    hU = np.array([1.25, 4.75])
    himg = basis[0] + 0.05 * hU[:, None, None] * basis[1]
    res = paper_baselines(imgs + 10, U, himg + 10, hU)
    names = [r.name for r in res]
    assert names == ["paper PCA(3)+ridge", "paper PCA(3)+kernel ridge"]
    ridge = res[0]
    assert ridge.params["alpha"] == 1.0 and res[1].params["gamma"] == 1e-3
    assert ridge.metrics["test"]["n"] == 12 and ridge.metrics["heldout"]["n"] == 2
    assert ridge.metrics["test"]["r2"] > 0.95 and ridge.metrics["heldout"]["mae"] < 0.5


def test_analyze_in_paper_mode(data, tmp_path):
    from moireu.analysis.run import analyze
    from moireu.config import AnalysisConfig

    res = analyze(data, tmp_path / "a", [], AnalysisConfig(mode="paper", n_bootstrap=10), seed=0, progress=False)
    assert res["pca"]["fitted_on"] == "per-U mean images"
    n_u = len(np.unique(np.round(data.U, 6)))
    assert len(res["pca"]["explained_variance_ratio"]) <= n_u
    assert [b["name"] for b in res["baselines"]] == ["paper PCA(3)+ridge", "paper PCA(3)+kernel ridge"]
    n_grid = int(data.grid.sum())
    assert res["split_sizes"]["test"] == len(paper_split(n_grid)[1])
    assert (tmp_path / "a" / "parity_paper_pca3_ridge.png").is_file()
