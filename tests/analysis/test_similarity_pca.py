import numpy as np
import pytest

from moireu.analysis.pca import fit_pca, projections_vs_u, variance_maps
from moireu.analysis.similarity import cosine_similarity_matrix, mean_per_u
from moireu.errors import InputError


def test_similarity_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 8))
    b = rng.standard_normal((8, 8))
    b -= (b * a).sum() / (a * a).sum() * a  # b ⟂ a
    b -= b.mean()
    a -= a.mean()
    b -= (b * a).sum() / (a * a).sum() * a
    imgs = np.stack([a, 3 * a + 1.0, b, -a])  # affine copies of a are identical after z-scoring
    U = np.array([0.0, 1.0, 2.0, 3.0])
    res = cosine_similarity_matrix(imgs, U)
    S = res.matrix
    assert np.allclose(S, S.T)
    assert S[0, 1] == pytest.approx(1.0)
    assert S[0, 2] == pytest.approx(0.0, abs=1e-9)
    assert S[0, 3] == pytest.approx(-1.0)
    assert res.minimum == pytest.approx(-1.0)
    assert sorted(res.argmin) in ([0.0, 3.0], [1.0, 3.0])
    with pytest.raises(InputError):
        mean_per_u(imgs[0], U)


def test_pca_recovers_rank2_structure():
    rng = np.random.default_rng(0)
    n, h = 200, 6
    v1, v2 = np.zeros((h, h)), np.zeros((h, h))
    v1[1, 1], v2[4, 2] = 1.0, 1.0
    c1, c2 = 3 * rng.standard_normal(n), rng.standard_normal(n)
    imgs = c1[:, None, None] * v1 + c2[:, None, None] * v2 + 0.01 * rng.standard_normal((n, h, h))
    res = fit_pca(imgs, 4, seed=0)
    r = res.explained_variance_ratio
    assert r[0] == pytest.approx(9 / 10, abs=0.03) and r[1] == pytest.approx(1 / 10, abs=0.03)
    flat = res.components.reshape(len(r), -1)
    assert np.allclose(flat @ flat.T, np.eye(len(r)), atol=1e-8)
    assert abs(res.components[0][1, 1]) == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(res.transform(imgs), res.projections, atol=1e-8)
    U = np.repeat(np.arange(4.0), n // 4)
    st = projections_vs_u(res.projections[:, :2], U)
    assert st["mean"].shape == (4, 2)
    vu, vm = variance_maps(imgs, U)
    assert vm.shape == (4, h, h) and np.all(vm >= 0)
    assert vm[:, 1, 1].mean() > 10 * vm[:, 0, 0].mean()
