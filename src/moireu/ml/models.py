"""Regression networks for FT-LDOS images: a registry of ``fc``, ``cnn`` and ``resnet18``.

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
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from moireu.errors import InputError

__all__ = ["FCNet", "ConvNet", "ResNet18", "BasicBlock", "create_model", "available_models", "gradcam_module"]


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(f"model input must have shape (n, 1, H, W), got {tuple(x.shape)}")


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


class ResNet18(nn.Module):
    """ResNet-18 layout (He et al. 2016) with a 1-channel stem and a scalar regression head.

    Layer names follow the usual convention (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool,
    fc``). ``width`` scales the stage widths (64 reproduces the standard network, 11.2 M parameters).
    Weights are initialised as in the reference implementation: Kaiming-normal (fan-out) for
    convolutions, BN weight 1 and bias 0, and the last BN of each residual branch zeroed when
    ``zero_init_residual`` (Goyal et al. 2017), which makes every block start as the identity.
    """

    gradcam_layer = "layer4"

    def __init__(self, width: int = 64, dropout: float = 0.2, layers: tuple[int, ...] = (2, 2, 2, 2),
                 zero_init_residual: bool = False) -> None:
        super().__init__()
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
        return self.fc(self.dropout(x)).squeeze(-1)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {"fc": FCNet, "cnn": ConvNet, "resnet18": ResNet18}


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build a regression network by name.

    Parameters
    ----------
    name : {"fc", "cnn", "resnet18"}
    **kw
        Constructor arguments of :class:`FCNet` (``image_size``, ``hidden``, ``dropout``),
        :class:`ConvNet` (``width``, ``dropout``, ``hidden``, ``coord_channels``) or
        :class:`ResNet18` (``width``, ``dropout``, ``layers``, ``zero_init_residual``).
        Keys a model does not take are ignored only if listed in ``_SHARED`` (``image_size``,
        ``dropout``), so one call site can build any model.
    """
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    import inspect

    cls = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    shared = {"image_size", "dropout"}
    unknown = [k for k in kw if k not in params and k not in shared]
    if unknown:
        raise InputError(f"model {name!r} takes no option(s) {unknown}; allowed: "
                         f"{', '.join(p for p in params if p != 'self')}")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items() if k in params}
    return cls(**kw)


def gradcam_module(model: nn.Module) -> nn.Module | None:
    """The module named by ``model.gradcam_layer`` (``None`` for models without convolutions)."""
    name = getattr(model, "gradcam_layer", None)
    return None if name is None else model.get_submodule(name)
