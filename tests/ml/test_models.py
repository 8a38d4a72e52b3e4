"""Model registry: shapes, layouts, Grad-CAM layer names, an overfit check."""

import math

import pytest
import torch

from moireu.errors import InputError
from moireu.ml import augment, create_model, gradcam_module, profile_names
from moireu.ml.models import BasicBlock, ResNet18


@pytest.mark.parametrize("name,kw", [("fc", {"image_size": (32, 32)}), ("cnn", {"width": 4}),
                                     ("cnn", {"width": 4, "coord_channels": True}),
                                     ("cnn", {"width": 4, "pool_grid": 2, "linear_skip": (32, 32)}),
                                     ("resnet18", {"width": 8})])
def test_shapes_and_gradcam_layer(name, kw):
    torch.manual_seed(0)
    m = create_model(name, **kw)
    y = m(torch.randn(3, 1, 32, 32))
    assert y.shape == (3,) and y.dtype == torch.float32
    layer = gradcam_module(m)
    if name == "fc":
        assert layer is None
    else:
        acts = {}
        layer.register_forward_hook(lambda mod, i, o: acts.setdefault("a", o))
        m(torch.randn(2, 1, 32, 32))
        assert acts["a"].ndim == 4  # a conv feature map


def test_resnet18_layout_matches_reference_parameter_count():
    # torchvision's resnet18 has 11,689,512 parameters with a 3-channel stem and a 1000-way fc;
    # ours: stem 1×64×7×7 instead of 3×64×7×7 (−6272) and fc 512→1 instead of 512→1000 (−512,487).
    m = ResNet18(width=64)
    n = sum(p.numel() for p in m.parameters())
    assert n == 11_689_512 - 2 * 64 * 49 - (512 * 1000 + 1000) + (512 + 1)
    blocks = [b for b in m.modules() if isinstance(b, BasicBlock)]
    assert len(blocks) == 8
    assert [b.downsample is not None for b in blocks] == [False, False, True, False, True, False, True, False]
    assert m(torch.randn(2, 1, 64, 64)).shape == (2,)


def test_cnn_has_four_blocks_of_two_convs():
    m = create_model("cnn", width=8)
    convs = [x for x in m.features.modules() if isinstance(x, torch.nn.Conv2d)]
    assert len(m.features) == 4 and len(convs) == 8
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 64, 64]


def test_bad_names_and_options():
    with pytest.raises(InputError, match="unknown model"):
        create_model("vgg")
    with pytest.raises(InputError, match="takes no option"):
        create_model("cnn", depth=3)
    with pytest.raises(InputError, match="built for"):
        create_model("fc", image_size=(16, 16))(torch.randn(1, 1, 32, 32))
    with pytest.raises(InputError, match=r"\(n, 1, H, W\)"):
        create_model("cnn")(torch.randn(1, 2, 32, 32))


def test_cnn_overfits_a_handful_of_images():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 16, 16)
    y = torch.linspace(-1, 1, 8)
    m = create_model("cnn", width=8, dropout=0.0, coord_channels=True)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = ((m(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        # BN running stats (eval mode) differ slightly from batch stats; the fit must still be tight
        assert float(((m(x) - y) ** 2).mean()) < 0.02


@pytest.mark.parametrize("profile", profile_names())
def test_augment_profiles_deterministic_and_shape(profile):
    x = torch.randn(4, 1, 24, 24)
    a = augment(x, profile, torch.Generator().manual_seed(1))
    b = augment(x, profile, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and torch.isfinite(a).all()
    if profile == "clean":
        assert torch.equal(a, x)
    else:
        assert not torch.allclose(a, x)


def test_scan_lines_land_on_kx_zero_column_and_strain_breaks_symmetry():
    from moireu.ml.augment import AugmentProfile

    x = torch.zeros(2, 1, 17, 17)
    y = augment(x, AugmentProfile("lines", scan_lines=1.0), torch.Generator().manual_seed(0))
    # only the k_x = 0 column (index 8 of an odd grid) receives scan-line weight
    mask = torch.ones(17, dtype=torch.bool)
    mask[8] = False
    assert (y[..., mask] == 0).all() and (y[..., 8] > 0).any()
    # a centrosymmetric hexagon of peaks stays symmetric under 180° rotation without strain, not with it
    k = torch.linspace(-1, 1, 33)
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    img = sum(torch.exp(-((kx - 0.6 * torch.cos(torch.tensor(a))) ** 2 + (ky - 0.6 * torch.sin(torch.tensor(a))) ** 2) / 0.005)
              for a in [j * 3.14159265 / 3 for j in range(6)])[None, None]
    s = augment(img, AugmentProfile("s", strain=0.05), torch.Generator().manual_seed(3))
    rot60 = lambda t: torch.rot90(t, 2, dims=(2, 3))  # noqa: E731
    assert torch.allclose(s, rot60(s), atol=1e-3)  # inversion symmetry survives a linear strain
    radius = lambda t: float((t[0, 0] * (kx**2 + ky**2).sqrt()).sum() / t[0, 0].sum())  # noqa: E731
    peaks_x = s[0, 0, 16, :]  # a row through the centre: strain moves the peaks along it
    assert abs(radius(s) - radius(img)) > 1e-3 or not torch.allclose(peaks_x, img[0, 0, 16, :], atol=1e-2)


def test_linear_skip_starts_at_zero_and_is_linear_in_the_pixels():
    torch.manual_seed(0)
    m = create_model("cnn", width=4, linear_skip=(16, 16)).eval()
    base = create_model("cnn", width=4).eval()
    base.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("skip")})
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), base(x))  # zero-initialised skip: the plain cnn
        m.skip.weight.fill_(0.5)
        torch.testing.assert_close(m(x) - base(x), 0.5 * x.flatten(1).sum(1))
    with pytest.raises(InputError, match="linear skip"):
        m(torch.randn(1, 1, 8, 8))


def test_registry_lists_every_variant_with_counts_and_recipes():
    from moireu.ml.models import available_models, list_models, model_spec

    rows = {r["name"]: r for r in list_models()}
    assert list(rows) == available_models()
    assert {"fc", "cnn", "cnn_mild", "resnet18", "cnn_paper", "resnet18_paper"} <= set(rows)
    assert rows["cnn_paper"]["parameters"] == 320_609 and rows["cnn_paper"]["recipe"] == "paper"
    assert rows["resnet18_paper"]["recipe"] == "paper" and rows["resnet18"]["recipe"] == "ours"
    # cnn_mild is the cnn class with arguments, not a copy
    assert model_spec("cnn_mild").builder is model_spec("cnn").builder and rows["cnn_mild"]["train"] == {"augment": "mild"}
    # the full-width resnet18_paper has torchvision's count less the RGB stem and the 1000-way fc
    assert rows["resnet18_paper"]["parameters"] == 11_689_512 - 2 * 64 * 49 - (512 * 1000 + 1000) + (512 + 1)


def test_register_model_refuses_duplicates_and_unknown_arguments():
    from moireu.ml.models import register_model

    with pytest.raises(InputError, match="registered twice"):
        register_model("cnn")(ConvNetLike)
    with pytest.raises(InputError, match="takes no argument"):
        register_model("x_new", depth=3)(ConvNetLike)


class ConvNetLike(torch.nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()


def test_config_model_choices_come_from_the_registry():
    from moireu.config import load_config

    assert load_config("demo", None, ['train.model="cnn_paper"']).train.model == "cnn_paper"
    with pytest.raises(InputError, match="cnn_paper"):  # the message lists the registry's names
        load_config("demo", None, ['train.model="vgg"'])


def test_cnn_paper_layout_parameter_count_and_init():
    from moireu.ml.models import PaperCNN

    torch.manual_seed(0)
    m = create_model("cnn_paper")
    assert isinstance(m, PaperCNN) and sum(p.numel() for p in m.parameters()) == 320_609
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    # Kaiming-normal, fan-out: std = sqrt(2 / (c_out · 3 · 3)); biases zero
    w = convs[-1].weight.detach()
    assert abs(float(w.std()) - math.sqrt(2 / (128 * 9))) < 0.05 * math.sqrt(2 / (128 * 9))
    assert all(float(c.bias.detach().abs().max()) == 0 for c in convs)
    lin = [x for x in m.modules() if isinstance(x, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(128, 256), (256, 1)]
    assert abs(float(lin[0].weight.detach().std()) - math.sqrt(2 / 256)) < 0.05 * math.sqrt(2 / 256)


def test_paper_models_clamp_inside_forward_and_use_unit_features():
    for name, kw in (("cnn_paper", {"width": 4, "hidden": 8}), ("resnet18_paper", {"width": 4})):
        torch.manual_seed(1)
        m = create_model(name, **kw)
        last = m.head[-1] if name == "cnn_paper" else m.fc
        with torch.no_grad():
            last.bias.fill_(-100.0)  # every pre-clamp output negative
        m.train()
        x = torch.randn(4, 1, 32, 32, requires_grad=True)
        y = m(x)
        assert torch.equal(y, torch.zeros(4))  # clamped in training mode too
        y.sum().backward()
        assert float(x.grad.abs().max()) == 0.0  # a clamped prediction carries no gradient
        # L2-normalised features: scaling the last feature map does not change the output
        mod = m.features if name == "cnn_paper" else m.layer4
        h = mod.register_forward_hook(lambda _m, _i, o: o * 7.0)
        with torch.no_grad():
            last.bias.fill_(5.0)
            m.eval()
            a = m(x.detach())
            h.remove()
            b = m(x.detach())
        assert torch.allclose(a, b, atol=1e-5)
    assert create_model("resnet18_paper").dropout.p == 0.0


def _torchvision_resnet18_state(seed=0):
    """A state dict with torchvision's resnet18 names and shapes (3-channel stem, 1000-way fc)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in ResNet18(width=64).state_dict().items():
        shape = tuple(v.shape)
        if k == "conv1.weight":
            shape = (64, 3, 7, 7)
        elif k == "fc.weight":
            shape = (1000, 512)
        elif k == "fc.bias":
            shape = (1000,)
        sd[k] = v.clone() if v.dtype == torch.long else torch.randn(shape, generator=g)
    return sd


def test_pretrained_resnet18_weights_load_with_rgb_mean_stem(tmp_path):
    from moireu.ml.models import load_resnet18_weights

    sd = _torchvision_resnet18_state()
    torch.save(sd, tmp_path / "r18.pth")
    torch.manual_seed(0)
    m = create_model("resnet18_paper")
    fc_before = m.fc.weight.clone()
    rep = load_resnet18_weights(m, tmp_path / "r18.pth")
    assert torch.allclose(m.conv1.weight, sd["conv1.weight"].mean(1, keepdim=True))
    assert torch.equal(m.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"])
    assert torch.equal(m.fc.weight, fc_before) and "fc.weight" in rep["skipped"]
    assert rep["loaded"] == len(m.state_dict()) - 2
    # errors: missing file, not a state dict, wrong shapes, missing keys, wrong model
    with pytest.raises(InputError, match="does not exist"):
        load_resnet18_weights(m, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot be read"):
        load_resnet18_weights(m, tmp_path / "junk.pth")
    with pytest.raises(InputError, match="wrong shapes"):
        load_resnet18_weights(create_model("resnet18_paper", width=32), tmp_path / "r18.pth")
    del sd["layer4.1.bn2.running_var"]
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(InputError, match="lack 1 tensor"):
        load_resnet18_weights(m, tmp_path / "short.pth")
    with pytest.raises(InputError, match="torchvision resnet18"):
        load_resnet18_weights(create_model("cnn_paper"), tmp_path / "r18.pth")
