"""What do the regressors look at? Grad-CAM, guided backpropagation and k-space attention profiles.

Attribution maps (captum, Kokhlikyan et al., arXiv:2009.07896):

* Grad-CAM (Selvaraju et al., ICCV 2017) on the model's last convolutional stage
  (``model.gradcam_layer``): the activations :math:`A^c` weighted by their spatially pooled
  gradients, :math:`L = \\mathrm{ReLU}(\\sum_c \\alpha_c A^c)`,
  :math:`\\alpha_c = \\frac{1}{Z}\\sum_{ij} \\partial y / \\partial A^c_{ij}`, bilinearly upsampled to
  the image size. Because the output is a regression value, the map shows where evidence for a
  *larger* U sits.
* Guided backpropagation (Springenberg et al., ICLR workshop 2015): the input gradient with
  negative gradients clipped at every ReLU.

Each map is normalised to unit total :math:`\\sum_k |A(k)| = 1` before averaging per U bin, and
the attention profile is the share of :math:`|A|` in the central peak, the graphene Bragg peaks
and the moiré satellites (:mod:`moireu.analysis.kspace`), per sample and per U.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from moireu.errors import InputError

from .kspace import PeakGeometry, estimate_orientation, peak_geometry, region_masks, region_shares
from .similarity import unique_u

METHODS = ("gradcam", "guided_backprop")


def _resolve_layer(model, layer):
    import torch

    if isinstance(layer, torch.nn.Module):
        return layer
    name = layer if layer is not None else getattr(model, "gradcam_layer", None)
    if name is None:
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        return convs[-1] if convs else None
    return model.get_submodule(name)


def _prepare(model):
    """Deep copy in eval mode with out-of-place ReLUs (captum's hooks reject in-place ones)."""
    import torch

    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.ReLU):
            mod.inplace = False
        for p in mod.parameters(recurse=False):
            p.requires_grad_(False)
    return m


def attribution_maps(model, images: np.ndarray, method: str = "gradcam", layer=None, batch_size: int = 16,
                     preprocess: Callable | None = None) -> np.ndarray:
    """Attribution maps (n, H, W) of a regressor for images (n, H, W).

    Parameters
    ----------
    model : torch.nn.Module mapping (n, 1, H, W) → (n,).
    images : FT-LDOS images as stored (float).
    method : ``"gradcam"`` (needs a convolutional layer) or ``"guided_backprop"``.
    layer : module or dotted name for Grad-CAM; default ``model.gradcam_layer``, else the last Conv2d.
    preprocess : callable on the (n, 1, H, W) tensor applied before the model (e.g. the checkpoint's
        normalisation / resizing). Maps are returned at the preprocessed size.
    """
    import torch
    from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam

    if method not in METHODS:
        raise InputError(f"unknown attribution method {method!r}; allowed: {', '.join(METHODS)}")
    images = np.asarray(images, np.float32)
    if images.ndim != 3:
        raise InputError(f"images must be (n, H, W), got shape {images.shape}")
    m = _prepare(model)
    if method == "gradcam":
        lay = _resolve_layer(m, layer)
        if lay is None:
            raise InputError("Grad-CAM needs a convolutional layer; this model has none")
        explainer = LayerGradCam(m, lay)
    else:
        explainer = GuidedBackprop(m)
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s:s + batch_size, None].copy())
        if preprocess is not None:
            with torch.no_grad():
                x = preprocess(x)
        x = x.detach().clone().requires_grad_(True)
        if method == "gradcam":
            a = explainer.attribute(x, relu_attributions=True)
            a = LayerAttribution.interpolate(a.sum(dim=1, keepdim=True), tuple(x.shape[-2:]),
                                             interpolate_mode="bilinear")
        else:
            a = explainer.attribute(x)
        out.append(a.detach().sum(dim=1).cpu().numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:], np.float32)


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its total :math:`\\sum_k |A(k)|` (all-zero maps stay zero)."""
    a = np.abs(np.asarray(maps, np.float64))
    tot = a.sum(axis=(1, 2), keepdims=True)
    return (a / np.where(tot > 0, tot, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class BinnedMaps:
    """Maps averaged in U bins: edges (b+1,), centres (b,), counts (b,), maps (b, H, W)."""

    edges: np.ndarray
    centers: np.ndarray
    counts: np.ndarray
    maps: np.ndarray


def average_per_u_bin(maps: np.ndarray, U: np.ndarray, n_bins: int = 4) -> BinnedMaps:
    """Average the normalised maps over equal-width U bins spanning [min U, max U]; empty bins dropped."""
    U = np.asarray(U, float)
    if n_bins < 1:
        raise InputError(f"n_bins must be ≥ 1, got {n_bins}")
    nm = normalize_maps(maps)
    lo, hi = float(U.min()), float(U.max())
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, U, side="right") - 1, 0, n_bins - 1)
    keep = [b for b in range(n_bins) if np.any(idx == b)]
    return BinnedMaps(edges, 0.5 * (edges[:-1] + edges[1:])[keep], np.array([np.sum(idx == b) for b in keep]),
                      np.stack([nm[idx == b].mean(axis=0) for b in keep]))


def sample_geometries(images: np.ndarray, kx: np.ndarray, ky: np.ndarray, theta_deg: float,
                      rotation_deg: np.ndarray | None = None) -> tuple[list[PeakGeometry], np.ndarray, list[str]]:
    """Peak geometry per patch rotation: the orientation is measured from each rotation group's mean image.

    Returns (geometries, group index per sample, notes).
    """
    n = len(images)
    rot = np.zeros(n) if rotation_deg is None else np.asarray(rotation_deg, float)
    vals, inv = unique_u(rot, decimals=6)
    geoms, notes = [], []
    for j, r in enumerate(vals):
        mean = np.abs(images[inv == j]).mean(axis=0)
        try:
            phi0 = estimate_orientation(mean, kx, ky, theta_deg)
        except InputError as exc:
            phi0 = np.pi / 6.0 + np.radians(r)
            notes.append(f"rotation {r:g}°: {exc}; assumed Bragg directions at 30° + 60°n")
        geoms.append(peak_geometry(theta_deg, phi0))
    return geoms, inv, notes


def attention_profile(maps: np.ndarray, U: np.ndarray, kx: np.ndarray, ky: np.ndarray,
                      geometries: list[PeakGeometry], group: np.ndarray,
                      radius_fraction: float = 0.3) -> dict:
    """Per-sample and per-U shares of ``|attribution|`` in central / Bragg / satellite / other regions.

    Returns a dict with ``regions``, ``shares`` (n, 4), ``U`` (distinct), ``mean``/``std`` (m, 4) and
    ``area_fraction`` (4,) (share of pixels; a featureless map would have shares equal to it).
    """
    maps = np.asarray(maps)
    regions = ("central", "bragg", "satellites", "other")
    shares = np.zeros((len(maps), 4))
    area = np.zeros(4)
    for j, geom in enumerate(geometries):
        masks = region_masks(kx, ky, geom, radius_fraction)
        sel = group == j
        if sel.any():
            s = region_shares(maps[sel], masks)
            shares[sel] = np.stack([s[r] for r in regions], axis=1)
        area += np.array([masks[r].mean() for r in regions]) * sel.mean()
    vals, inv = unique_u(U)
    mean = np.stack([shares[inv == j].mean(axis=0) for j in range(len(vals))])
    std = np.stack([shares[inv == j].std(axis=0) for j in range(len(vals))])
    return {"regions": list(regions), "shares": shares, "U": vals, "mean": mean, "std": std, "area_fraction": area}
