import numpy as np
import pytest
import torch
from torch import nn

from moireu.analysis.baselines import fit_baselines, regression_metrics
from moireu.analysis.interpret import attention_profile, attribution_maps, average_per_u_bin, sample_geometries
from moireu.analysis.kspace import peak_geometry, region_masks, twist_angle_deg
from moireu.errors import InputError

from .conftest import INDEX, PHI0, kgrid


class MaskedSum(nn.Module):
    """y = Σ_k relu(conv1x1(x))(k) · w(k): only pixels with w ≠ 0 matter (a known-answer 'model')."""

    gradcam_layer = "conv"

    def __init__(self, weight: np.ndarray):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.constant_(self.conv.weight, 1.0)
        self.relu = nn.ReLU(inplace=True)
        self.register_buffer("w", torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x):
        return (self.relu(self.conv(x))[:, 0] * self.w).sum(dim=(1, 2))


def _satellite_model():
    kx, ky = kgrid()
    masks = region_masks(kx, ky, peak_geometry(twist_angle_deg(INDEX), PHI0))
    return MaskedSum(masks["satellites"].astype(float)), masks, kx, ky


def test_guided_backprop_and_gradcam_known_answer():
    model, masks, kx, ky = _satellite_model()
    x = np.abs(np.random.default_rng(0).standard_normal((5,) + masks["other"].shape)).astype(np.float32) + 0.1
    gb = attribution_maps(model, x, "guided_backprop")
    # d y / d x = w on positive inputs: guided backprop is exactly the satellite mask
    assert np.allclose(gb, masks["satellites"][None].astype(np.float32))
    geom = [peak_geometry(twist_angle_deg(INDEX), PHI0)]
    prof = attention_profile(gb, np.arange(5.0), kx, ky, geom, np.zeros(5, int))
    assert np.allclose(prof["mean"][:, 2], 1.0) and np.allclose(prof["mean"][:, [0, 1, 3]], 0.0)
    assert np.isclose(prof["area_fraction"].sum(), 1.0)
    # Grad-CAM on the 1x1 conv: weights α = mean(w) > 0, map = relu(α · x) ∝ x
    gc = attribution_maps(model, x, "gradcam")
    alpha = masks["satellites"].mean()
    assert np.allclose(gc, alpha * x, rtol=1e-5)
    assert model.relu.inplace  # the caller's model is not modified
    with pytest.raises(InputError):
        attribution_maps(model, x, "saliency")


def test_attribution_on_ml_models(data):
    from moireu.ml.data import Preprocess
    from moireu.ml.models import create_model
    from moireu.ml.uncertainty import RunModel

    torch.manual_seed(0)
    for name in ("cnn", "resnet18"):
        kw = {"width": 4} if name == "cnn" else {"width": 4}
        run = RunModel(Preprocess(data.images.shape[1:], per_image="zscore"), [create_model(name, **kw)])
        imgs = data.images[:6]
        for method in ("gradcam", "guided_backprop"):
            a = attribution_maps(run, imgs, method)
            assert a.shape == imgs.shape and np.all(np.isfinite(a))
        b = average_per_u_bin(a, data.U[:6], 2)
        assert np.allclose(b.maps.sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_geometry_from_data(data):
    geoms, group, notes = sample_geometries(data.images, data.kx, data.ky, data.theta_deg, data.rotation_deg)
    assert len(geoms) == 1 and not notes
    assert abs(np.angle(np.exp(6j * (geoms[0].phi0_rad - PHI0)))) / 6 < np.radians(1.0)


def test_metrics_known_values():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3) and m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)


def test_baselines_learn_a_linear_signal_and_use_the_split():
    rng = np.random.default_rng(0)
    n, h = 120, 8
    U = np.repeat(np.linspace(0, 6, 12), 10)
    basis = rng.standard_normal((2, h, h))
    imgs = U[:, None, None] * basis[0] + rng.standard_normal(n)[:, None, None] * basis[1] \
        + 0.05 * rng.standard_normal((n, h, h))
    perm = rng.permutation(n)
    idx = {"train": perm[:70], "val": perm[70:90], "test": perm[90:]}
    res = fit_baselines(imgs, U, idx, (3,), ridge_alpha=1e-3, kernels=True, seed=0)
    names = [r.name for r in res]
    assert names == ["PCA(3)+ridge", "PCA(3)+kernel ridge"]
    assert res[0].metrics["test"]["r2"] > 0.99 and res[0].metrics["test"]["mae"] < 0.1
    assert res[1].metrics["test"]["r2"] > 0.95
    assert res[0].metrics["test"]["n"] == 30
    # pure noise labels: no skill
    bad = fit_baselines(imgs, rng.permutation(U), idx, (3,), kernels=False)
    assert bad[0].metrics["test"]["r2"] < 0.5
