"""Augmentation of FT-LDOS images, in pure torch, with named profiles.

The images are magnitudes of the Fourier transform of a real-space LDOS map, so each imperfection
of a real STM measurement is modelled by what it does *in k-space*:

* **gain/offset** — the unknown scale and baseline of the image: ``x → g·x + o`` with
  ``ln g ~ N(0, σ_g²)``, ``o ~ N(0, σ_o²)``.
* **Gaussian noise** — white noise in real space has a flat power spectrum, i.e. a random floor on
  every FT pixel: ``x → x + σ_n·ξ``, ``ξ ~ N(0, 1)`` per pixel.
* **scan-line noise** — a random offset per scan line ``y`` of the real-space map,
  ``δρ(x, y) = c(y)``, has a transform ``δ̂(k_x, k_y) = ĉ(k_y)·δ(k_x)``: its weight lies on the
  ``k_x = 0`` column. Modelled as ``|N(0, σ_s²)|`` added to the central column(s).
* **anisotropic tip blur** — a real-space convolution with an anisotropic Gaussian tip of widths
  (s₁, s₂) at angle φ multiplies the FT by ``exp(−½ kᵀ Rᵀ diag(s₁², s₂²) R k)``; applied to the
  image above its minimum (the FT magnitude is ≥ 0), with ``k`` in units of the half-window.
* **symmetry-breaking strain** — a small real-space affine strain ``r → (1 + ε) r`` maps
  reciprocal space by ``(1 + ε)^{-T} ≈ 1 − εᵀ``; a random symmetric ε (uniaxial strain of
  magnitude ``ε_max`` at a random angle plus shear) breaks the six-fold symmetry of the pattern.
  Implemented with ``affine_grid``/``grid_sample`` (bilinear, zero outside the window).

Profiles (strengths in the units of a z-scored image; the image is left in the same scale):

================  =========  =========  =========  ===========  ==========
profile           gain/off   noise σ    lines σ    blur s_max   strain max
================  =========  =========  =========  ===========  ==========
``clean``         –          –          –          –            –
``mild``          0.05/0.05  0.05       0.1        0.15         0.005
``symb``          –          –          –          0.3 (aniso)  0.03
``noisy``         0.2/0.2    0.35       1.0        0.3          0.01
================  =========  =========  =========  ===========  ==========

Every random draw comes from the ``torch.Generator`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moireu.errors import InputError

__all__ = ["AugmentProfile", "PROFILES", "get_profile", "augment", "profile_names"]


@dataclass(frozen=True)
class AugmentProfile:
    """Strengths of each perturbation (0 switches it off); ``p`` is the per-image probability."""

    name: str
    gain: float = 0.0
    offset: float = 0.0
    noise: float = 0.0
    scan_lines: float = 0.0
    blur: float = 0.0
    blur_anisotropic: bool = True
    strain: float = 0.0
    p: float = 1.0

    @property
    def is_identity(self) -> bool:
        return not any((self.gain, self.offset, self.noise, self.scan_lines, self.blur, self.strain))


PROFILES: dict[str, AugmentProfile] = {
    "clean": AugmentProfile("clean"),
    "mild": AugmentProfile("mild", gain=0.05, offset=0.05, noise=0.05, scan_lines=0.1, blur=0.15, strain=0.005),
    "symb": AugmentProfile("symb", blur=0.3, strain=0.03),
    "noisy": AugmentProfile("noisy", gain=0.2, offset=0.2, noise=0.35, scan_lines=1.0, blur=0.3, strain=0.01),
}


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str | AugmentProfile) -> AugmentProfile:
    if isinstance(name, AugmentProfile):
        return name
    if name not in PROFILES:
        raise InputError(f"unknown augmentation profile {name!r}; available: {', '.join(PROFILES)}")
    return PROFILES[name]


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _strain_matrices(n: int, eps_max: float, g: torch.Generator | None) -> torch.Tensor:
    """(n, 2, 3) affine matrices ``(1 − εᵀ)`` for random uniaxial strains |ε| ≤ eps_max + shear."""
    mag = _uniform(n, -eps_max, eps_max, g)
    ang = _uniform(n, 0.0, math.pi, g)
    poisson = _uniform(n, 0.1, 0.3, g)  # graphene-like Poisson ratio for the transverse contraction
    c, s = torch.cos(ang), torch.sin(ang)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (n, 2, 2)
    diag = torch.diag_embed(torch.stack([mag, -poisson * mag], -1))
    eps = rot @ diag @ rot.transpose(1, 2)
    a = torch.eye(2).expand(n, 2, 2) - eps.transpose(1, 2)
    # grid_sample maps output coords to input coords: input = A^{-1} output for a forward map A
    theta = torch.linalg.inv(a)
    return torch.cat([theta, torch.zeros(n, 2, 1)], dim=2)


@torch.no_grad()
def augment(x: torch.Tensor, profile: str | AugmentProfile, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a profile to a batch ``x`` of shape ``(n, 1, H, W)``; returns a new tensor.

    Parameters
    ----------
    x : torch.Tensor
        FT-LDOS images (any scale; strengths are relative to each image's standard deviation).
    profile : str or AugmentProfile
        ``clean``, ``mild``, ``symb``, ``noisy`` or a custom :class:`AugmentProfile`.
    generator : torch.Generator, optional
        Source of every random draw (CPU generator).
    """
    prof = get_profile(profile)
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(f"augment expects (n, 1, H, W), got {tuple(x.shape)}")
    if prof.is_identity or x.shape[0] == 0:
        return x.clone()
    n, _, h, w = x.shape
    x = x.float().clone()
    scale = x.flatten(1).std(1).clamp_min(1e-8).view(n, 1, 1, 1)
    apply = (torch.rand(n, generator=generator) < prof.p).view(n, 1, 1, 1).float()
    x0 = x.clone()

    if prof.strain > 0:
        theta = _strain_matrices(n, prof.strain, generator).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        base = x.amin(dim=(2, 3), keepdim=True)
        x = F.grid_sample(x - base, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + base
    if prof.blur > 0:
        s1 = _uniform(n, 0.0, prof.blur, generator)
        s2 = _uniform(n, 0.0, prof.blur, generator) if prof.blur_anisotropic else s1
        phi = _uniform(n, 0.0, math.pi, generator)
        ky = torch.linspace(-1.0, 1.0, h).view(1, h, 1)
        kx = torch.linspace(-1.0, 1.0, w).view(1, 1, w)
        c, s = torch.cos(phi).view(n, 1, 1), torch.sin(phi).view(n, 1, 1)
        k1 = c * kx + s * ky
        k2 = -s * kx + c * ky
        # widths s in units of the inverse half-window: envelope exp(-½ (s1² k1² + s2² k2²)) × (2π)²
        env = torch.exp(-0.5 * (2 * math.pi) ** 2 * ((s1.view(n, 1, 1) * k1) ** 2 + (s2.view(n, 1, 1) * k2) ** 2))
        base = x.amin(dim=(2, 3), keepdim=True)
        x = (x - base) * env[:, None] + base
    if prof.scan_lines > 0:
        amp = torch.randn(n, 1, h, 1, generator=generator).abs() * prof.scan_lines * scale
        col = torch.zeros(1, 1, 1, w)
        col[..., w // 2] = 1.0
        if w % 2 == 0:
            col[..., w // 2 - 1] = 0.5  # an even grid puts k_x = 0 between two columns
            col[..., w // 2] = 0.5
        x = x + amp * col
    if prof.noise > 0:
        x = x + prof.noise * scale * torch.randn(x.shape, generator=generator)
    if prof.gain > 0 or prof.offset > 0:
        g = torch.exp(prof.gain * torch.randn(n, generator=generator)).view(n, 1, 1, 1)
        o = prof.offset * torch.randn(n, generator=generator).view(n, 1, 1, 1) * scale
        x = g * x + o
    return apply * x + (1 - apply) * x0

