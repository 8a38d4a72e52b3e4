"""Regression networks for FT-LDOS images and the model registry.

Every network is registered under a name with the arguments that make it a variant
(timm's ``register_model`` style): :func:`register_model` decorates a class (or factory) once per
variant, :func:`create_model` builds one by name, :func:`list_models` lists every variant with its
parameter count and the training recipe it belongs to. Registered variants:

``fc``, ``cnn``, ``cnn_mild``, ``resnet18`` (recipe ``ours``; ``cnn_mild`` is ``cnn`` trained with
the ``mild`` augmentation profile) and ``cnn_paper``, ``resnet18_paper`` (recipe ``paper``: the
networks of Tanksale & Stauber, arXiv:2602.18890, as described in their public code).

Every model maps a batch of single-channel images ``x`` of shape ``(n, 1, H, W)`` (float32) to one
scalar per image, shape ``(n,)``. Models know nothing about physics; they see tensors only.

Each model carries a ``gradcam_layer`` attribute: the dotted name (for ``model.get_submodule``) of
its last convolutional stage, whose activations Grad-CAM (Selvaraju et al., ICCV 2017) weights by
the pooled gradients of the output. The ``fc`` baseline has no convolution and stores ``None``.

References
----------
K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition", CVPR 2016
(ResNet-18: a 7×7/2 stem, 3×3/2 max-pool, four stages of two BasicBlocks with 64, 128, 256, 512
channels, stride 2 at the start of stages 2–4, 1×1/2 projection shortcuts, global average pool).
S. Ioffe, C. Szegedy, "Batch normalization", ICML 2015.
K. He, X. Zhang, S. Ren, J. Sun, "Delving deep into rectifiers", ICCV 2015 (Kaiming init).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from moireu.errors import InputError

__all__ = ["FCNet", "ConvNet", "PaperCNN", "ResNet18", "BasicBlock", "ModelSpec", "register_model", "create_model",
           "available_models", "list_models", "model_spec", "gradcam_module", "load_resnet18_weights",
           "count_parameters"]


@dataclass(frozen=True)
class ModelSpec:
    """One registered variant: what builds it, with which arguments, trained by which recipe.

    Attributes
    ----------
    name : str
        Registry name.
    builder : callable
        Class or factory called as ``builder(**defaults | kw)``.
    defaults : dict
        Constructor arguments that make this variant (the variant *is* these arguments).
    recipe : {"ours", "paper"}
        The training recipe the variant belongs to.
    train : dict
        Training settings the variant implies (``TrainConfig`` fields, e.g. ``{"augment": "mild"}``).
    summary : str
        One line for ``moireu models``.
    """

    name: str
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    recipe: str = "ours"
    train: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


#: training recipes (moireu.ml.train.resolve_recipe): ours, or the reference's fixed settings
RECIPES = ("ours", "paper")
_REGISTRY: dict[str, ModelSpec] = {}
# options one call site may pass to any model; dropped for models that do not take them
_SHARED = ("image_size", "dropout")


def register_model(name: str | None = None, *, recipe: str = "ours", train: dict[str, Any] | None = None,
                   summary: str = "", **defaults: Any) -> Callable[[Any], Any]:
    """Class/factory decorator that registers a model variant (stack it for several variants).

    Parameters
    ----------
    name : str, optional
        Registry name (default: the decorated object's ``__name__``).
    recipe : {"ours", "paper"}
    train : dict, optional
        Training settings the variant implies.
    summary : str
        One-line description (default: the first line of the builder's docstring).
    **defaults
        Constructor arguments that define the variant.

    Examples
    --------
    Stacked, one builder registers several variants (as :class:`ConvNet` does)::

        @register_model("cnn_mild", width=8, train={"augment": "mild"},
                        summary="cnn trained with the mild augmentation profile (robust to mild corruption)")
        @register_model("cnn", width=8)
        class ConvNet(nn.Module): ...
    """
    if recipe not in RECIPES:
        raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")

    def deco(builder: Any) -> Any:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise InputError(f"model {key!r} is registered twice")
        params = inspect.signature(builder).parameters
        bad = [k for k in defaults if k not in params]
        if bad:
            raise InputError(f"model {key!r}: {builder.__name__} takes no argument(s) {bad}")
        doc = summary or (inspect.getdoc(builder) or "").split("\n")[0]
        _REGISTRY[key] = ModelSpec(key, builder, dict(defaults), recipe, dict(train or {}), doc)
        return builder

    return deco



def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(f"model input must have shape (n, 1, H, W), got {tuple(x.shape)}")


@register_model("fc")
class FCNet(nn.Module):
    """Fully connected baseline: flatten → [Linear → ReLU → Dropout] × len(hidden) → Linear(·, 1).

    Parameters
    ----------
    image_size : (H, W)
        Input size (the first layer has ``H·W`` inputs).
    hidden : tuple of int
        Widths of the hidden layers.
    dropout : float
        Dropout probability after each hidden layer.
    """

    gradcam_layer: str | None = None

    def __init__(self, image_size: tuple[int, int] = (64, 64), hidden: tuple[int, ...] = (256, 64),
                 dropout: float = 0.2) -> None:
        super().__init__()
        h, w = (int(image_size[0]), int(image_size[1]))
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = h * w
        for n_out in hidden:
            layers += [nn.Linear(n_in, int(n_out)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            n_in = int(n_out)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(n_in, 1)
        self.image_size = (h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        if tuple(x.shape[-2:]) != self.image_size:
            raise InputError(f"fc model was built for {self.image_size[0]}×{self.image_size[1]} images, "
                             f"got {x.shape[-2]}×{x.shape[-1]}")
        return self.head(self.body(x)).squeeze(-1)


class ConvBlock(nn.Sequential):
    """(3×3 conv → ReLU → BatchNorm) × 2 → 2×2 max-pool (the reference CNN's block order)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out),
            nn.MaxPool2d(2),
        )


@register_model("cnn_mild", width=8, train={"augment": "mild"},
                summary="cnn trained with the mild augmentation profile (robust to mild corruption)")
@register_model("cnn", width=8)
class ConvNet(nn.Module):
    """Four conv blocks (widths ``w, 2w, 4w, 8w``), global average pool, dropout regression head.

    Parameters
    ----------
    width : int
        Channels of the first block (``w``); the blocks double it.
    dropout : float
        Dropout before the hidden and output linear layers of the head.
    hidden : int
        Width of the head's hidden layer.
    coord_channels : bool
        Append two fixed input channels holding the normalised pixel coordinates (CoordConv,
        Liu et al., NeurIPS 2018). FT-LDOS peaks sit at fixed wave vectors; the coordinates let the
        translation-equivariant convolutions tell peaks apart by where they are.
    pool_grid : int
        The final average pool keeps a ``g × g`` grid of cells (``1``: global average pool, the
        reference architecture). ``g > 1`` keeps coarse k-space position (which Bragg/satellite
        cluster a feature came from) at ``g²`` times the head's input width.
    linear_skip : tuple (H, W) or None
        "Wide & deep" (Cheng et al., DLRS 2016): add a linear read-out of the input pixels,
        ``y = head(conv(x)) + wᵀ vec(x)``, with ``w`` initialised to zero. FT-LDOS intensities at
        fixed wave vectors carry U almost linearly; the convolutional path models the rest.
        The tuple is the input size the linear layer is built for.
    """

    gradcam_layer = "features.3"

    def __init__(self, width: int = 16, dropout: float = 0.2, hidden: int = 64,
                 coord_channels: bool = False, pool_grid: int = 1,
                 linear_skip: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.coord_channels = bool(coord_channels)
        c_in = 3 if self.coord_channels else 1
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for c in widths:
            blocks.append(ConvBlock(c_in, c))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(int(pool_grid))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * int(pool_grid) ** 2, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.skip_size = None if not linear_skip else (int(linear_skip[0]), int(linear_skip[1]))
        self.skip: nn.Linear | None = None
        if self.skip_size is not None:
            self.skip = nn.Linear(self.skip_size[0] * self.skip_size[1], 1, bias=False)
            nn.init.zeros_(self.skip.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        lin = None
        if self.skip is not None:
            if tuple(x.shape[-2:]) != self.skip_size:
                raise InputError(f"cnn linear skip was built for {self.skip_size[0]}×{self.skip_size[1]} inputs, "
                                 f"got {x.shape[-2]}×{x.shape[-1]}")
            lin = self.skip(x.flatten(1)).squeeze(-1)
        if self.coord_channels:
            n, _, h, w = x.shape
            yy = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
            xx = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
            x = torch.cat([x, xx, yy], dim=1)
        y = self.head(self.pool(self.features(x))).squeeze(-1)
        return y if lin is None else y + lin


@register_model("cnn_paper", recipe="paper")
class PaperCNN(nn.Module):
    """Tanksale & Stauber's CNN: 3 conv blocks (32/64/128), GAP, L2-normalised features, MLP, U ≥ 0.

    ``x → [conv3×3 → ReLU → BN] × 2 → maxpool`` three times with widths ``w, 2w, 4w``, global
    average pool, ``f / ‖f‖₂`` (the pooled features on the unit sphere), Linear(4w → hidden) →
    ReLU → Dropout → Linear(hidden → 1), and ``max(y, 0)`` inside ``forward`` (so during training
    too: a negative prediction gets no gradient). Convolution and linear weights are
    Kaiming-normal with fan-out (ReLU gain), biases zero. With the defaults: 320,609 parameters.

    Parameters
    ----------
    width : int
        Channels of the first block.
    hidden : int
        Width of the head's hidden layer.
    dropout : float
        Dropout between the head's linear layers.
    """

    gradcam_layer = "features.2"

    def __init__(self, width: int = 32, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        self.features = nn.Sequential(*[ConvBlock(c_in, c) for c_in, c in zip([1] + widths[:-1], widths)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(widths[-1], hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        f = F.normalize(torch.flatten(self.pool(self.features(x)), 1), dim=1)
        return self.head(f).squeeze(-1).clamp(min=0.0)


class BasicBlock(nn.Module):
    """ResNet BasicBlock: out = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + shortcut(x)).

    The shortcut is the identity, or a 1×1 strided convolution + BN when the shape changes.
    """

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@register_model("resnet18_paper", recipe="paper", dropout=0.0, l2_features=True, clamp_min=0.0,
                summary="Tanksale & Stauber's ResNet-18: 1-channel stem, L2-normalised 512 features → "
                        "Linear(512→1) → U ≥ 0, no dropout")
@register_model("resnet18", width=16)
class ResNet18(nn.Module):
    """ResNet-18 layout (He et al. 2016) with a 1-channel stem and a scalar regression head.

    Layer names follow the usual convention (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool,
    fc``). ``width`` scales the stage widths (64 reproduces the standard network, 11.2 M parameters).
    Weights are initialised as in the reference implementation: Kaiming-normal (fan-out) for
    convolutions, BN weight 1 and bias 0, and the last BN of each residual branch zeroed when
    ``zero_init_residual`` (Goyal et al. 2017), which makes every block start as the identity.
    ``l2_features`` puts the pooled features on the unit sphere before ``fc``; ``clamp_min``
    clamps the output inside ``forward`` (the ``resnet18_paper`` variant: both, no dropout).
    Torchvision-format weights load with :func:`load_resnet18_weights`.
    """

    gradcam_layer = "layer4"

    def __init__(self, width: int = 64, dropout: float = 0.2, layers: tuple[int, ...] = (2, 2, 2, 2),
                 zero_init_residual: bool = False, l2_features: bool = False,
                 clamp_min: float | None = None) -> None:
        super().__init__()
        self.l2_features = bool(l2_features)
        self.clamp_min = None if clamp_min is None else float(clamp_min)
        self.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c = width
        stages = []
        for i, n_blocks in enumerate(layers):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c, c_out, stride)] + [BasicBlock(c_out, c_out) for _ in range(int(n_blocks) - 1)]
            stages.append(nn.Sequential(*blocks))
            c = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        if self.l2_features:
            x = F.normalize(x, dim=1)
        y = self.fc(self.dropout(x)).squeeze(-1)
        return y if self.clamp_min is None else y.clamp(min=self.clamp_min)


def available_models() -> list[str]:
    """Names accepted by :func:`create_model` (registration order)."""
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered name (``InputError`` naming the choices otherwise)."""
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build a registered variant by name.

    Parameters
    ----------
    name : str
        One of :func:`available_models`.
    **kw
        Constructor arguments on top of the variant's own (see the classes: :class:`FCNet`,
        :class:`ConvNet`, :class:`PaperCNN`, :class:`ResNet18`). ``image_size`` and ``dropout``
        are dropped for models that do not take them, so one call site can build any model;
        any other unknown key is an ``InputError``.
    """
    spec = model_spec(name)
    params = inspect.signature(spec.builder).parameters
    unknown = [k for k in kw if k not in params and k not in _SHARED]
    if unknown:
        raise InputError(f"model {name!r} takes no option(s) {unknown}; allowed: "
                         f"{', '.join(p for p in params if p != 'self')}")
    args = spec.defaults | {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items() if k in params}
    return spec.builder(**args)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def list_models() -> list[dict[str, Any]]:
    """Every registered variant with its parameter count (at the default arguments) and recipe.

    Returns
    -------
    list of dict
        ``name``, ``class``, ``recipe``, ``parameters``, ``arguments``, ``train``, ``summary``;
        ``fc`` is counted for 64×64 inputs (its first layer grows with the image).
    """
    out = []
    for spec in _REGISTRY.values():
        m = create_model(spec.name)
        out.append({"name": spec.name, "class": spec.builder.__name__, "recipe": spec.recipe,
                    "parameters": count_parameters(m),
                    "arguments": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.defaults.items()},
                    "train": dict(spec.train), "summary": spec.summary})
    return out


def load_resnet18_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a torchvision-format ``resnet18`` state dict (e.g. ImageNet weights) into a :class:`ResNet18`.

    ``conv1.weight`` of shape (64, 3, 7, 7) becomes the 1-channel stem by the mean over the RGB
    input channels (Tanksale & Stauber's conversion); ``fc.*`` (the 1000-way classifier) is not
    loaded, the regression head keeps its initialisation. Every other tensor must be present
    with the model's shape.

    Returns
    -------
    dict
        ``path``, ``loaded`` (number of tensors), ``skipped`` (names not loaded).

    Raises
    ------
    InputError
        Missing or unreadable file, not a state dict, a missing key or a shape mismatch.
    """
    path = Path(path)
    if not isinstance(model, ResNet18):
        raise InputError(f"pretrained weights are torchvision resnet18 weights; model is {type(model).__name__}")
    if not path.is_file():
        raise InputError(f"pretrained weights file {str(path)!r} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"pretrained weights {str(path)!r} cannot be read by torch.load "
                         f"({type(exc).__name__}: {exc})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"pretrained weights {str(path)!r} are not a state dict of tensors")
    own = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    w = sd.get("conv1.weight")
    if w is not None and w.ndim == 4 and w.shape[1] == 3:
        w = w.mean(dim=1, keepdim=True)
    sd = dict(sd) | ({"conv1.weight": w} if w is not None else {})
    missing = [k for k in own if not k.startswith("fc.") and k not in sd]
    if missing:
        raise InputError(f"pretrained weights {str(path)!r} lack {len(missing)} tensor(s) of resnet18, "
                         f"first {missing[:3]}")
    bad = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
           if not k.startswith("fc.") and tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        raise InputError(f"pretrained weights {str(path)!r} have wrong shapes ({len(bad)} tensor(s)): "
                         f"{'; '.join(bad[:3])}")
    for k, v in own.items():
        new[k] = v if k.startswith("fc.") else sd[k].to(v.dtype)
    model.load_state_dict(new)
    return {"path": str(path), "loaded": sum(not k.startswith("fc.") for k in own),
            "skipped": sorted(k for k in sd if k not in own or k.startswith("fc."))}


def gradcam_module(model: nn.Module) -> nn.Module | None:
    """The module named by ``model.gradcam_layer`` (``None`` for models without convolutions)."""
    name = getattr(model, "gradcam_layer", None)
    return None if name is None else model.get_submodule(name)
