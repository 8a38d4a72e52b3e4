"""Reciprocal-space geometry of FT-LDOS images: Bragg peaks, moiré satellites and region masks.

All wave vectors are Cartesian, in Å⁻¹, on the image's own ``kx``/``ky`` coordinates; no pixel
position is ever hard-coded.

Geometry
--------
Graphene (lattice constant ``a``) has its first Bragg shell at

.. math:: |G| = \\frac{4\\pi}{\\sqrt{3}\\,a},

(2.949 Å⁻¹ for a = 2.46 Å), six peaks 60° apart. In twisted bilayer graphene the two layers are
rotated by ±θ/2, so every Bragg peak splits into two peaks separated by a moiré reciprocal vector
of length

.. math:: |g_M| = 2|G|\\sin(\\theta/2),

perpendicular to the mean peak direction. The moiré reciprocal lattice (six shortest vectors
``g_M``, rotated by 90° relative to the mean graphene Bragg directions) decorates the central peak
and every Bragg peak with satellites ``G + g_M``. For a commensurate structure of index *i*
(Lopes dos Santos, Peres & Castro Neto, PRB 86, 155449 (2012))

.. math:: \\cos\\theta = \\frac{3i^2 + 3i + 1/2}{3i^2 + 3i + 1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moireu.constants import A_LAT
from moireu.errors import InputError

REGIONS = ("central", "bragg", "satellites", "other")


def twist_angle_deg(index: int) -> float:
    """Commensurate twist angle θ (degrees) of index ``i``: cos θ = (3i²+3i+1/2)/(3i²+3i+1).

    i = 1 gives 21.79°, i = 7 gives 4.41°, i = 31 gives 1.05°.
    """
    if int(index) < 1:
        raise InputError(f"lattice index must be a positive integer, got {index!r}")
    i = int(index)
    c = (3 * i * i + 3 * i + 0.5) / (3 * i * i + 3 * i + 1)
    return math.degrees(math.acos(c))


def bragg_radius(a: float = A_LAT) -> float:
    """``|G|`` = 4π/(√3 a) (Å⁻¹) of the first graphene Bragg shell."""
    return 4.0 * math.pi / (math.sqrt(3.0) * a)


def moire_radius(theta_deg: float, a: float = A_LAT) -> float:
    """``|g_M|`` = 2 ``|G|`` sin(θ/2) (Å⁻¹), length of the shortest moiré reciprocal vectors."""
    return 2.0 * bragg_radius(a) * math.sin(math.radians(theta_deg) / 2.0)


def _ring(radius: float, phase_rad: float) -> np.ndarray:
    ang = phase_rad + np.arange(6) * np.pi / 3.0
    return radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)


def estimate_orientation(image: np.ndarray, kx: np.ndarray, ky: np.ndarray, theta_deg: float,
                         a: float = A_LAT, step_deg: float = 0.1, radius_fraction: float = 0.3) -> float:
    """Orientation φ₀ (radians, in [0, π/3)) of the mean graphene Bragg directions in an image.

    Template match: for every trial φ on a grid of ``step_deg`` the 12 layer Bragg peaks
    (:func:`peak_geometry`) are placed and the score is the Gaussian-weighted mean
    (σ = r/2, r = ``max(radius_fraction·|g_M|, Δk)``) of the background-subtracted intensity
    :math:`w = \\max(|I| - \\mathrm{median}|I|, 0)` on the Bragg ring around them; φ₀ maximises it. Averaging over the discs inside the k
    window keeps peaks cut by the window from biasing the angle. Used to place the peaks of the
    data itself rather than assume the lattice builder's orientation convention.

    Raises
    ------
    InputError
        When the window does not reach the Bragg ring ``|k|`` = ``|G|``.
    """
    kx = np.asarray(kx, float)
    ky = np.asarray(ky, float)
    KX, KY = np.meshgrid(kx, ky)
    G = bragg_radius(a)
    dk = max(abs(kx[1] - kx[0]), abs(ky[1] - ky[0]))
    r = max(radius_fraction * moire_radius(theta_deg, a), dk)
    ring = np.abs(np.hypot(KX, KY) - G) < r
    if ring.sum() < 6:
        raise InputError(f"the k window (|k| ≤ {float(np.hypot(KX, KY).max()):.3f} Å⁻¹) does not contain the "
                         f"Bragg ring |k| = {G:.3f} Å⁻¹; cannot locate the Bragg peaks")
    w = np.abs(np.asarray(image, float))
    w = np.clip(w - np.median(w[ring]), 0.0, None)
    ys, xs = np.nonzero(ring)  # only ring pixels can be inside a Bragg disc
    px, py, pw = KX[ys, xs], KY[ys, xs], w[ys, xs]
    sig = 0.5 * r
    half = math.radians(theta_deg) / 2.0

    def score(phi: float) -> float:
        pk = np.concatenate([_ring(G, phi - half), _ring(G, phi + half)])
        d2 = ((px[:, None] - pk[None, :, 0]) ** 2 + (py[:, None] - pk[None, :, 1]) ** 2).min(axis=1)
        g = np.exp(-d2 / (2.0 * sig * sig))
        return float(np.sum(g * pw) / np.sum(g)) if g.sum() > 1e-12 else -np.inf

    # coarse scan (1°), then a fine one (step_deg) around the best coarse angle
    coarse = np.radians(np.arange(0.0, 60.0, 1.0))
    c0 = coarse[int(np.argmax([score(p) for p in coarse]))]
    fine = c0 + np.radians(np.arange(-1.0, 1.0 + 1e-9, step_deg))
    best = fine[int(np.argmax([score(p) for p in fine]))]
    return float(np.mod(best, np.pi / 3.0))


@dataclass(frozen=True)
class PeakGeometry:
    """Peak centres (Å⁻¹) of one image orientation.

    Attributes
    ----------
    central : (1, 2) the Γ point.
    bragg : (12, 2) Bragg peaks of both layers (mean direction φ₀ ± θ/2).
    satellites : (m, 2) moiré satellites: first moiré shell around Γ and around every Bragg peak,
        excluding points that coincide with a Bragg peak of the other layer.
    g_bragg, g_moire : ``|G|`` and ``|g_M|`` (Å⁻¹).
    theta_deg, phi0_rad : twist angle and orientation of the mean Bragg directions.
    """

    central: np.ndarray
    bragg: np.ndarray
    satellites: np.ndarray
    g_bragg: float
    g_moire: float
    theta_deg: float
    phi0_rad: float


def peak_geometry(theta_deg: float, phi0_rad: float, a: float = A_LAT) -> PeakGeometry:
    """Centres of the central peak, the 12 layer Bragg peaks and the moiré satellites."""
    if not 0.0 < theta_deg < 60.0:
        raise InputError(f"twist angle must be in (0°, 60°), got {theta_deg}")
    G = bragg_radius(a)
    gm = moire_radius(theta_deg, a)
    half = math.radians(theta_deg) / 2.0
    bragg = np.concatenate([_ring(G, phi0_rad - half), _ring(G, phi0_rad + half)])
    gvec = _ring(gm, phi0_rad + math.pi / 2.0)
    cand = np.concatenate([gvec] + [b + gvec for b in bragg])
    taken = np.concatenate([np.zeros((1, 2)), bragg])
    d = np.linalg.norm(cand[:, None, :] - taken[None, :, :], axis=2).min(axis=1)
    cand = cand[d > 0.25 * gm]
    # drop duplicates (satellites shared by both layers' peaks)
    keep: list[np.ndarray] = []
    for p in cand:
        if all(np.linalg.norm(p - q) > 0.25 * gm for q in keep):
            keep.append(p)
    return PeakGeometry(np.zeros((1, 2)), bragg, np.array(keep).reshape(-1, 2), G, gm, float(theta_deg),
                        float(phi0_rad))


def region_masks(kx: np.ndarray, ky: np.ndarray, geom: PeakGeometry,
                 radius_fraction: float = 0.3, min_radius_px: float = 0.75) -> dict[str, np.ndarray]:
    """Boolean (ny, nx) masks of the regions ``central``, ``bragg``, ``satellites`` and ``other``.

    Every region is a union of discs of radius ``r = max(radius_fraction·|g_M|, min_radius_px·Δk)``
    (Δk the pixel spacing) around the centres of :func:`peak_geometry`. All centres lie on the moiré
    reciprocal lattice (spacing ``|g_M|``), so for ``radius_fraction < 0.5`` the discs are disjoint.
    ``other`` is the complement; the four masks partition the image.
    """
    if not 0.0 < radius_fraction < 0.5:
        raise InputError(f"radius_fraction must be in (0, 0.5) so that peak discs do not overlap, "
                         f"got {radius_fraction}")
    kx = np.asarray(kx, float)
    ky = np.asarray(ky, float)
    dk = max(abs(kx[1] - kx[0]) if kx.size > 1 else 0.0, abs(ky[1] - ky[0]) if ky.size > 1 else 0.0)
    r = max(radius_fraction * geom.g_moire, min_radius_px * dk)
    KX, KY = np.meshgrid(kx, ky)

    def discs(pts: np.ndarray) -> np.ndarray:
        m = np.zeros(KX.shape, bool)
        for px, py in pts:
            m |= (KX - px) ** 2 + (KY - py) ** 2 <= r * r
        return m

    central = discs(geom.central)
    bragg = discs(geom.bragg) & ~central
    sat = discs(geom.satellites) & ~central & ~bragg
    other = ~(central | bragg | sat)
    return {"central": central, "bragg": bragg, "satellites": sat, "other": other}


def region_shares(maps: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Share of attribution in each region: ``Σ_{k∈R} |A(k)| / Σ_k |A(k)|`` per map.

    ``maps`` is (n, ny, nx) or (ny, nx); returns arrays (n,) (or scalars) per region that sum to 1.
    """
    a = np.abs(np.asarray(maps, float))
    single = a.ndim == 2
    if single:
        a = a[None]
    tot = a.sum(axis=(1, 2))
    tot = np.where(tot > 0, tot, 1.0)
    out = {k: (a * m[None]).sum(axis=(1, 2)) / tot for k, m in masks.items()}
    return {k: (v[0] if single else v) for k, v in out.items()}
