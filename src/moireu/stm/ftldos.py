"""Fourier-transformed LDOS (FT-LDOS) images on the reference k window, with finufft.

The quantity is the structure factor of the LDOS-weighted atoms of a real-space patch,

.. math::  F(\\mathbf k) = \\sum_i w_i\\, e^{-i\\,\\mathbf k\\cdot\\mathbf r_i},
           \\qquad w_i = \\mathrm{LDOS}(\\mathbf r_i, E)\\ (-\\ \\overline{\\mathrm{LDOS}}\\ \\text{optionally}),

and the image is :math:`|F|` on the rectangular window
:math:`k_x \\in s\\,\\frac{2\\pi}{a}[-1, 1]`, :math:`k_y \\in s\\,\\frac{4\\pi}{\\sqrt3 a}[-1, 1]`
(s = 1.1, a = 2.46 Å), sampled on an N × N grid with both end points included
(``numpy.linspace``; for odd N the centre pixel is k = 0). For a graphene lattice with
:math:`\\mathbf a_1 = a(1, 0)` the six first-shell Bragg peaks lie at :math:`(0, \\pm 4\\pi/\\sqrt3 a)`
and :math:`(\\pm 2\\pi/a, \\pm 2\\pi/\\sqrt3 a)`, i.e. inside the window with a 10 % margin.

The transforms themselves (finufft type 1 on the window grid, type 3 at scattered k, the direct
sum) are in :mod:`moireu.stm.ft`.

Images are ``float32`` :class:`xarray.DataArray` (ky, kx) with coordinates in Å⁻¹ and the
transform options in their attributes, so that training and prediction apply the *same*
transform (:class:`ImageTransform`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from moireu.constants import A_LAT
from moireu.errors import InputError
from moireu.stm.ft import DEFAULT_EPS, FTWindow, check_n, check_points, ft_grid
from moireu.stm.geometry import reference_lattice

NORMALIZE = ("zscore", "minmax", "none")
#: relative floor of the log scaling: log10(A + LOG_FLOOR·max A)
LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class ImageTransform:
    """Everything that turns weighted points into a stored image; stored as JSON with every dataset.

    Attributes
    ----------
    n_pixels : int
        N of the N × N image.
    window : FTWindow
    subtract_mean : bool
        Subtract the mean weight before the transform (removes the lattice form factor, i.e. the
        Bragg peaks of a uniform LDOS, leaving the LDOS modulation).
    log : bool
        Image ← log10(A + LOG_FLOOR · max A) instead of A.
    normalize : {"zscore", "minmax", "none"}
        Per-image normalisation applied last.
    amplitude_scale : {"per_point", "none"}
        A = ``|F|`` / (number of points) (``per_point``: makes A independent of the patch size) or ``|F|``.
    eps : float
        finufft tolerance.
    moire_period : float or None
        Moiré period (Å) of the training lattice; used to refuse user maps whose field of view
        cannot resolve moiré satellites.
    apodize : {"none", "hann"}
        Window applied to a real-space map before its transform (:mod:`moireu.stm.align`): a radial
        Hann window :math:`\\cos^2(\\pi\\rho/2R)` on the inscribed disc of the frame, or of radius
        ``window_radius``.
    window_radius : float or None
        Radius R (Å, training frame) of the Hann window when fixed (``None``: the inscribed disc of
        each map). A fixed R gives every map the same k resolution, so the FT peaks have one shape
        whatever the field of view; a map larger than the window is covered by overlapping windows
        whose power spectra are averaged (Welch), a map smaller is refused.
    align : bool
        Measure the lattice of every map and bring it to the training frame (:mod:`moireu.stm.align`).
    lattice_constant : float
        Graphene lattice constant a (Å) used to turn a measured moiré period into a twist angle.
    twist_deg, twist_tolerance_deg : float or None, float
        Twist angle of the training lattice and the tolerance beyond which a map is out of range.
    reciprocal : ((b1x, b1y), (b2x, b2y)) or None
        Reciprocal vectors of the training moiré cell (Å⁻¹): the reference frame of the alignment.
    bragg_indices : tuple of (m1, m2) or None
        First-shell Bragg peaks of both layers as integer combinations m1 b1 + m2 b2.

    Transforms stored before the measurement model (no ``align``/``apodize`` keys) load with
    ``align=False, apodize="none"``: maps are then transformed on their own pixel frame.
    """

    n_pixels: int = 256
    window: FTWindow = field(default_factory=FTWindow.reference)
    subtract_mean: bool = True
    log: bool = False
    normalize: str = "zscore"
    amplitude_scale: str = "per_point"
    eps: float = DEFAULT_EPS
    moire_period: float | None = None
    apodize: str = "none"
    align: bool = False
    lattice_constant: float = A_LAT
    twist_deg: float | None = None
    twist_tolerance_deg: float = 0.25
    window_radius: float | None = None
    reciprocal: tuple[tuple[float, float], tuple[float, float]] | None = None
    bragg_indices: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        check_n(self.n_pixels)
        if self.apodize not in ("none", "hann"):
            raise InputError(f"apodize={self.apodize!r} is not allowed; use none or hann")
        if self.window_radius is not None and not (math.isfinite(self.window_radius) and self.window_radius > 0):
            raise InputError(f"window_radius must be a positive number of Å (or None), got {self.window_radius!r}")
        if self.align and (self.reciprocal is None or self.bragg_indices is None):
            raise InputError("align=True needs the training lattice (reciprocal, bragg_indices)")
        if self.reciprocal is not None:
            object.__setattr__(self, "reciprocal", tuple(tuple(float(x) for x in r) for r in self.reciprocal))
        if self.bragg_indices is not None:
            object.__setattr__(self, "bragg_indices", tuple(tuple(int(x) for x in m) for m in self.bragg_indices))
        if self.normalize not in NORMALIZE:
            raise InputError(f"normalize={self.normalize!r} is not allowed; use one of {', '.join(NORMALIZE)}")
        if self.amplitude_scale not in ("per_point", "none"):
            raise InputError(f"amplitude_scale={self.amplitude_scale!r}; allowed: per_point, none")
        if not (1e-15 <= self.eps < 1e-1):
            raise InputError(f"finufft tolerance eps must be in [1e-15, 0.1), got {self.eps!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-native dict (tuples as lists), the inverse of :meth:`from_dict`."""
        d = asdict(self)
        d["window"] = self.window.to_dict()
        return json.loads(json.dumps(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | str) -> "ImageTransform":
        """Rebuild from :meth:`to_dict` output or its JSON (e.g. a store's ``image_transform`` attr)."""
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except json.JSONDecodeError as exc:
                raise InputError(f"image_transform is not valid JSON: {exc}") from None
        d = dict(d)  # type: ignore[arg-type]
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown image_transform keys {sorted(unknown)}; allowed: {sorted(known)}")
        w = d.get("window")
        if isinstance(w, dict):
            d["window"] = FTWindow(float(w["kx_max"]), float(w["ky_max"]))
        elif w is None:
            d["window"] = FTWindow.reference()
        return cls(**d)

    @classmethod
    def from_config(cls, stm: Any, moire_period: float | None = None, geom: Any = None) -> "ImageTransform":
        """From an :class:`moireu.config.STMConfig` section; with ``geom`` (the training cell) the
        transform of the measurement model (alignment reference, Hann apodisation, twist range)."""
        base = dict(n_pixels=int(stm.n_pixels), window=FTWindow.reference(float(stm.window_scale)),
                    subtract_mean=bool(stm.subtract_mean), log=bool(stm.log_scale),
                    normalize=str(stm.normalize), moire_period=moire_period)
        if geom is None:
            return cls(**base)
        ref = reference_lattice(geom, base["window"])
        m = stm.measurement
        radius = float(m.window_radius) * ref["moire_period"] if m.window_radius > 0 else None
        return cls(**(base | {"moire_period": ref["moire_period"], "apodize": "hann", "align": bool(m.align),
                              "window_radius": radius,
                              "twist_deg": ref["twist_deg"], "twist_tolerance_deg": float(m.twist_tolerance_deg),
                              "reciprocal": ref["reciprocal"], "bragg_indices": ref["bragg_indices"]}))


# ------------------------------------------------------------------------------------------------
# images


def amplitude_to_image(F: np.ndarray, n_points: int, transform: ImageTransform) -> tuple[np.ndarray, dict[str, float]]:
    """``|F|`` → (optional per-point scaling, log, normalisation) → float32 image, and the stats used."""
    A = np.abs(F)
    if transform.amplitude_scale == "per_point":
        A = A / float(n_points)
    stats: dict[str, float] = {"amplitude_max": float(A.max())}
    if transform.log:
        floor = LOG_FLOOR * float(A.max()) if A.max() > 0 else LOG_FLOOR
        A = np.log10(A + floor)
        stats["log_floor"] = floor
    if transform.normalize == "zscore":
        mu, sd = float(A.mean()), float(A.std())
        stats |= {"norm_mean": mu, "norm_std": sd}
        A = (A - mu) / sd if sd > 0 else A - mu
    elif transform.normalize == "minmax":
        lo, hi = float(A.min()), float(A.max())
        stats |= {"norm_min": lo, "norm_max": hi}
        A = (A - lo) / (hi - lo) if hi > lo else A - lo
    return A.astype(np.float32), stats


def ftldos(xy: np.ndarray, w: np.ndarray, n: int | None = None, window: FTWindow | None = None, *,
           subtract_mean: bool | None = None, log: bool | None = None, normalize: str | None = None,
           transform: ImageTransform | None = None, attrs: dict[str, Any] | None = None,
           return_complex: bool = False, n_norm: float | None = None) -> Any:
    """FT-LDOS image of weighted points: float32 ``xarray.DataArray`` (ky, kx), coordinates in Å⁻¹.

    Parameters
    ----------
    xy : ndarray (M, 2)
        Point positions (Å), e.g. from :func:`moireu.stm.patch_points`.
    w : ndarray (M,)
        Weights (LDOS per atom, or pixel values of a map). With lists of T position and T weight
        arrays (T windows of one map, :func:`moireu.stm.align.map_to_image`) the image is the RMS
        over windows of ``|F_t| / n_norm_t`` (Welch's averaged periodogram, amplitude form); with
        ``return_complex`` F is then that RMS amplitude.
    n, window, subtract_mean, log, normalize :
        Override the corresponding fields of ``transform`` (default :class:`ImageTransform`).
    transform : ImageTransform, optional
        The full transform (what the dataset stores in ``image_transform``).
    attrs : dict, optional
        Extra metadata (U, ν, bias, η, patch, seed …) stored in the image attributes (JSON-able).
    return_complex : bool
        Also return the complex F (ky, kx) before any scaling.
    n_norm : float or array (T,), optional
        Divisor of the ``per_point`` amplitude scale (default: the number of points; a map passes
        the sum of its apodisation window, one per row of ``w``).

    Returns
    -------
    xarray.DataArray
        ``attrs`` hold every option (``image_transform`` JSON included) and the normalisation
        statistics; with ``return_complex`` a tuple (image, F).
    """
    import xarray as xr

    t = transform or ImageTransform()
    upd: dict[str, Any] = {}
    if n is not None:
        upd["n_pixels"] = check_n(n)
    if window is not None:
        upd["window"] = window
    if subtract_mean is not None:
        upd["subtract_mean"] = bool(subtract_mean)
    if log is not None:
        upd["log"] = bool(log)
    if normalize is not None:
        upd["normalize"] = normalize
    if upd:
        t = ImageTransform(**(t.__dict__ | upd))
    if isinstance(w, (list, tuple)):  # T windows of one map: (positions, weights) per window
        if not isinstance(xy, (list, tuple)) or len(xy) != len(w) or len(w) == 0:
            raise InputError("windowed weights need one position array per weight array")
        segs = [check_points(a, b) for a, b in zip(xy, w)]
    else:
        segs = [check_points(xy, w)]
    segs = [(a, np.asarray(b, dtype=float)) for a, b in segs]
    n_pts = sum(a.shape[0] for a, _ in segs)
    mean_weight = float(np.concatenate([b for _, b in segs]).mean())
    segs = [(a, b - b.mean() if t.subtract_mean else b) for a, b in segs]
    norms = np.broadcast_to(np.asarray(n_pts if n_norm is None else n_norm, dtype=float), (len(segs),))
    if len(segs) == 1:
        F = ft_grid(*segs[0], t.n_pixels, t.window, eps=t.eps)
        img, stats = amplitude_to_image(F, float(norms[0]), t)
    else:  # Welch: the RMS over windows of the (per-window scaled) amplitudes
        scale = norms if t.amplitude_scale == "per_point" else np.ones_like(norms)
        power = np.zeros((t.n_pixels, t.n_pixels))
        for (a, b), sc in zip(segs, scale):
            power += np.abs(ft_grid(a, b, t.n_pixels, t.window, eps=t.eps) / sc) ** 2
        F = np.sqrt(power / len(segs))
        img, stats = amplitude_to_image(F, 1.0, t)
    kx, ky = t.window.axes(t.n_pixels)
    meta: dict[str, Any] = {
        "quantity": "FT-LDOS |F(k)|, F(k) = sum_i w_i exp(-i k.r_i)",
        "n_pixels": t.n_pixels, "kx_max": t.window.kx_max, "ky_max": t.window.ky_max,
        "subtract_mean": int(t.subtract_mean), "log": int(t.log), "normalize": t.normalize,
        "amplitude_scale": t.amplitude_scale, "finufft_eps": t.eps, "n_points": int(n_pts),
        "mean_weight": mean_weight, "n_windows": len(segs),
        "image_transform": t.to_json(),
    } | stats
    for key, v in (attrs or {}).items():
        meta[key] = _attr_value(v)
    da = xr.DataArray(img, dims=("ky", "kx"),
                      coords={"ky": ("ky", ky, {"units": "1/Angstrom"}), "kx": ("kx", kx, {"units": "1/Angstrom"})},
                      name="ftldos", attrs=meta)
    return (da, F) if return_complex else da


def _attr_value(v: Any) -> Any:
    """Make a metadata value storable in NetCDF/Zarr attributes (numbers, strings, 1-D lists)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, str, np.integer, np.floating)):
        return v.item() if isinstance(v, np.generic) else v
    if v is None:
        return "none"
    if isinstance(v, (list, tuple, np.ndarray)):
        arr = np.asarray(v)
        if arr.dtype.kind in "biuf" and arr.ndim == 1:
            return arr.tolist()
    return json.dumps(v, default=str)
