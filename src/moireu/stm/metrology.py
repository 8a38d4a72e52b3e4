"""Moiré metrology of an STM map: moiré wave vectors and wavelengths, twist angle, uniaxial heterostrain
and, when the atoms are resolved, the scanner's calibration.

Any map of twisted bilayer graphene (TBG) with twist 0.5°–10°, simulated or read by
:func:`moireu.io.read_map`, atomically resolved or not. No training lattice is needed (compare
:mod:`moireu.stm.align`, which measures a map against the lattice a model was trained on).

Peaks
-----
The FFT amplitude of the mean-subtracted, radially Hann-apodised map and the sub-bin refinement of
its peaks are those of the alignment (:class:`moireu.stm.align._Spectrum`), refined in two passes
(half-bin then eighth-bin grid of exact finufft transforms).

1. **Moiré shell.** In the annulus of moiré wave vectors of twists 0.5°–10°,
   :math:`|\\mathbf g| = 2|\\mathbf G|\\sin(\\theta/2)` (≥ 2.5 FFT bins, below Nyquist), the strongest
   peak :math:`\\mathbf k_1`; the second, :math:`\\mathbf k_2`, is the strongest peak outside ±30° of
   :math:`\\pm\\mathbf k_1` (or the grid maximum near :math:`\\mathbf k_1` rotated by 60° or 120°,
   whichever hexagon scores best); the third follows from the closure of a first shell under *any*
   linear distortion, :math:`\\mathbf k_3 = \\mathbf k_2 \\mp \\mathbf k_1` (heterostrain distorts the
   moiré hexagon by ∼ ε/θ, tens of per cent near the magic angle, so the 60° rotations of
   :math:`\\mathbf k_1` that the alignment uses are not enough). The three peaks (and their
   antipodes: the map is real, :math:`|F(-\\mathbf k)| = |F(\\mathbf k)|`) are refined. The map is refused
   (``InputError``, "no moiré lattice found") when the weakest of the three stands less than
   ``CONTRAST_LO`` = 5 times above the median of the annulus (white noise reaches 3–4) or the
   refined shell does not close (:math:`|\\mathbf g_1 - \\mathbf g_2 + \\mathbf g_3| > 0.1\\,|\\mathbf g|`, the
   three consecutive counter-clockwise peaks).
2. **Bragg shell** (when the pixels resolve ``|G|`` = 4π/(√3 a), a = :data:`moireu.constants.A_LAT`):
   the same search in the annulus 0.9–1.1 ``|G|`` (piezo errors up to 10 %). The atoms count as resolved
   when all three Bragg peaks stand ``BRAGG_CONTRAST`` = 6 times above the annulus median (the
   alignment's threshold) and the shell closes within 1 %.

Peak-position uncertainty
-------------------------
Two terms per peak, added in quadrature: σ_j² = (κ/SNR_j)² + b_j².

*Noise.* For a peak of the windowed transform
:math:`F(\\mathbf k) = \\sum_u w_u (v_u - \\bar v) e^{-i\\mathbf k\\cdot\\mathbf u}` of a plane wave in white
noise, the shift of the maximum of ``|F|`` is the noise's slope over the peak's curvature (first order):

.. math::
    \\sigma_{k_x} = \\frac{\\kappa_x}{\\mathrm{SNR}},\\quad
    \\kappa_x = \\frac{\\sum_u w_u\\,\\sqrt{\\tfrac12\\sum_u x_u^2 w_u^2}}{\\sqrt{\\sum_u w_u^2}\\,\\sum_u w_u x_u^2},
    \\qquad \\mathrm{SNR} = \\frac{|F(\\mathbf k_\\mathrm{peak})|}{\\langle|F_\\mathrm{noise}|^2\\rangle^{1/2}}

(κ is the FFT resolution 2π/L times a window constant; κ² averaged over x and y gives an isotropic
σ). The noise level is the median of ``|F|`` in an annulus around the shell (0.5–2 ``|g|``, or the Bragg
annulus), with discs of radius 3π/R (R the Hann radius) around the shell and its harmonics left out,
divided by √ln 2 (Rayleigh statistics).

*Leakage.* The window tails of the other peaks (the rest of the shell, and any other local maximum
within 12π/R standing above the peak's own side lobes, e.g. the other layer's Bragg peak) tilt the
peak; b_j bounds the shift they cause (:func:`_leakage`). This is what limits a clean map.

Both are propagated linearly through the fits (and, atoms resolved, through the scanner
calibration), and the moiré fit's covariance is scaled by the Birge ratio² max(1, χ²/dof) when its
residual exceeds what σ_j explain. On simulated maps with white noise (moiré SNR 10–30) the
normalised errors (estimate − truth)/σ of θ, ε and φ have standard deviations 0.6–1.05.

Twist and heterostrain (Kerelsky et al., Nature 572, 95 (2019); Huder et al., PRL 120, 156405 (2018))
-------------------------------------------------------------------------------------------------------
Layer 1 is rotated by +θ/2, layer 2 by −θ/2 and strained by the uniaxial tensor of graphene
(Poisson ratio ν = 0.16) along φ, the bilayer oriented by α (zigzag direction of the unrotated
lattice, :math:`\\mathbf a_1 = a(1, 0)` for α = 0):

.. math::
    \\mathcal E = \\varepsilon\\,(\\hat c\\hat c^{T} - \\nu\\,\\hat n\\hat n^{T}),\\quad
    \\hat c = (\\cos\\varphi, \\sin\\varphi),\\ \\hat n \\perp \\hat c,

    \\mathbf G^{(1)}_j = R(\\alpha + \\theta/2)\\,\\mathbf G^0_j,\\qquad
    \\mathbf G^{(2)}_j = (1 + \\mathcal E)^{-1} R(\\alpha - \\theta/2)\\,\\mathbf G^0_j,

    \\mathbf g_j = \\mathbf G^{(1)}_j - \\mathbf G^{(2)}_j = T\\,\\mathbf G^0_j,\\qquad
    T(\\theta, \\varepsilon, \\varphi, \\alpha) = \\left[R(\\theta/2) - (1 + \\mathcal E)^{-1}R(-\\theta/2)\\right]R(\\alpha),

with :math:`\\mathbf G^0_j` the first shell of graphene (``|G⁰|`` = 4π/√3a, at 30° + 60° j) (real-space
vectors of layer 2 are :math:`(1+\\mathcal E)R\\,\\mathbf a_i`, hence the inverse on the reciprocal
ones). Without strain :math:`|\\mathbf g| = 2|\\mathbf G^0|\\sin(\\theta/2)` and the moiré period is
λ = a / (2 sin(θ/2)).

The model is linear in :math:`\\mathbf G^0_j`, so the fit has two steps: (i) the 2 × 2 matrix T of
the three measured vectors, :math:`\\mathbf g_j = T\\mathbf G^0_j` (paired counter-clockwise), by
weighted linear least squares (weights 1/σ_j²; six numbers, four unknowns: two degrees of freedom,
the closure of the shell), giving χ²; (ii) the four parameters from the four entries of T, solved
exactly (Levenberg–Marquardt from the first-order solution :math:`T \\approx (\\theta J + \\mathcal E)R(\\alpha)`).
Since (ii) is a local bijection, this is the least-squares solution on the moiré reciprocal
vectors. Covariance: :math:`C_p = (\\partial T/\\partial p)^{-1} C_T (\\partial T/\\partial p)^{-T}` with
:math:`C_T` from the peak-position σ_j, multiplied by the Birge ratio² max(1, χ²/dof) when the
residual exceeds what the peak noise explains (systematics then count too). ε and φ are fitted
as :math:`(e_c, e_s) = \\varepsilon(\\cos2\\varphi, \\sin2\\varphi)` (regular at ε = 0);
σ_φ = σ_⊥ / 2ε.

**Branches.** Four numbers determine four parameters, and the equations have four exact
solutions. For θ = 1.1°, ε = 0.3 %, φ = 20°, α = 0 the others are (−1.1°, 0.3 %, 106.8°, −7.5°) — the
mirror image: the moiré alone does not fix the handedness of the twist —, (1.0986°, −0.2985 %,
106.3°, −7.5°) and (−1.0986°, −0.2985 %, 20.6°, 0°) (compression instead of tension: at first order the
isotropic part of the strain only rotates the moiré with respect to the atoms, by ≈ ε(1 − ν)/θ).
We report the branch θ > 0, ε ≥ 0 (uniaxial tension), the convention of both references, with φ in the
(corrected) image frame, x axis = fast scan axis, counter-clockwise, in [0°, 180°), and φ − α relative
to the bilayer's zigzag direction in [0°, 60°) (0°: zigzag, 30°: armchair). The branches differ in α by
≈ ε(1 − ν)/θ (7.5° here); the atomic lattice's measured orientation could pick one, which is not done:
``scanner.lattice_angle_deg`` is reported next to ``lattice_angle_deg`` (α ± θ/2 on this branch).

Scanner calibration (atoms resolved)
------------------------------------
A nominal position u maps to the true one by the upper-triangular :math:`A` (x the fast axis):
:math:`x_\\mathrm{true} = s_x x + \\gamma y,\\ y_\\mathrm{true} = s_y y` — piezo scales s_x, s_y (true Å
per nominal Å) and the shear γ of a linear drift along x during the slow scan (or a skew of the
piezo axes); drift along y is a change of s_y. A plane wave then shows
:math:`\\mathbf k_\\mathrm{meas} = A^{T}\\mathbf k_\\mathrm{true}`. The three Bragg vectors fit
:math:`\\mathbf b_j = F\\mathbf G^0_j` (weighted least squares as above), :math:`F = A^{T}R(\\alpha_b)`, so
:math:`A^{T}A = FF^{T}` and :math:`A^{T}` is its Cholesky factor (three numbers: a rotation of the scan
frame cannot be told from a rotation of the sample). The moiré vectors are then read in the
corrected frame, :math:`\\mathbf g = A^{-T}\\mathbf k_\\mathrm{meas}`, and the uncertainty of A is
propagated to every result. Reference: the resolved atomic lattice is taken as undistorted graphene
of lattice constant a. In a real map that is the top layer; where both layers show, the fitted peaks
are those of the stronger layer, or their blend when they are not resolved — with heterostrain ε this
puts an error of order ε on the scales (not on θ and ε: a deformation common to both layers changes
the moiré only at order θε).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from moireu.constants import A_LAT, POISSON_GRAPHENE
from moireu.errors import InputError
from moireu.io.base import MapData
from moireu.stm.align import BRAGG_CONTRAST, CONTRAST_LO, _first_shell, _Spectrum
from moireu.lattice.geometry import rotation
from moireu.stm.ft import ft_points

#: twist angles (deg) whose moiré the search covers, and the margin on ``|g|`` around them
TWIST_RANGE_DEG = (0.5, 10.0)
SEARCH_MARGIN = 0.2
#: the moiré shell must close within this fraction of ``|g|`` (the Bragg shell within BRAGG_CLOSURE)
MOIRE_CLOSURE = 0.1
BRAGG_CLOSURE = 0.01
#: the lowest moiré wave vector searched, in FFT bins 2π/L (L the smaller side of the frame)
MIN_BINS = 2.5
#: refinement passes of the peaks (see ``_Spectrum.refine``)
PASSES = 2

_SZ = np.array([[1.0, 0.0], [0.0, -1.0]])
_SX = np.array([[0.0, 1.0], [1.0, 0.0]])


def graphene_shell(a: float = A_LAT) -> np.ndarray:
    """The three first-shell reciprocal vectors :math:`\\mathbf G^0_j` (3, 2) Å⁻¹ of graphene with
    :math:`\\mathbf a_1 = a(1, 0)`, :math:`\\mathbf a_2 = a(1/2, \\sqrt3/2)`, at 30°, 90°, 150°
    (:math:`\\mathbf G^0_0 - \\mathbf G^0_1 + \\mathbf G^0_2 = 0`)."""
    cell = a * np.array([[1.0, 0.0], [0.5, math.sqrt(3.0) / 2]])
    return _first_shell(2 * np.pi * np.linalg.inv(cell).T)[:3]


def strain_tensor(eps: float, phi: float, nu: float = POISSON_GRAPHENE) -> np.ndarray:
    """Uniaxial strain :math:`\\varepsilon(\\hat c\\hat c^T - \\nu\\hat n\\hat n^T)` along φ (rad)."""
    c = np.array([math.cos(phi), math.sin(phi)])
    n = np.array([-c[1], c[0]])
    return eps * (np.outer(c, c) - nu * np.outer(n, n))


def moire_matrix(theta: float, eps: float, phi: float, alpha: float, nu: float = POISSON_GRAPHENE) -> np.ndarray:
    """T of :math:`\\mathbf g_j = T\\mathbf G^0_j` (module docstring); angles in rad."""
    E = strain_tensor(eps, phi, nu)
    return (rotation(theta / 2) - np.linalg.solve(np.eye(2) + E, rotation(-theta / 2))) @ rotation(alpha)


def moire_vectors(theta_deg: float, eps: float, phi_deg: float, alpha_deg: float = 0.0, a: float = A_LAT,
                  nu: float = POISSON_GRAPHENE) -> np.ndarray:
    """The three first-shell moiré vectors (3, 2) Å⁻¹ of the model; ε as a fraction (0.003 = 0.3 %)."""
    T = moire_matrix(math.radians(theta_deg), eps, math.radians(phi_deg), math.radians(alpha_deg), nu)
    return graphene_shell(a) @ T.T


def _t_of(p: np.ndarray, nu: float) -> np.ndarray:
    """T of the fit parameters p = (θ, e_c, e_s, α): ε = ``|e|``, φ = ½ atan2(e_s, e_c)."""
    th, ec, es, al = p
    en = math.hypot(ec, es)
    E = 0.5 * (1 - nu) * en * np.eye(2) + 0.5 * (1 + nu) * (ec * _SZ + es * _SX)
    return (rotation(th / 2) - np.linalg.solve(np.eye(2) + E, rotation(-th / 2))) @ rotation(al)


def _first_order(T: np.ndarray, nu: float) -> np.ndarray:
    """Parameters (θ, e_c, e_s, α) of T ≈ (θJ + E) R(α), branch θ > 0, ε ≥ 0 (the Newton start)."""
    a, b = 0.5 * (T[0, 0] + T[1, 1]), 0.5 * (T[1, 0] - T[0, 1])
    c1, c2 = 0.5 * (T[0, 0] - T[1, 1]), 0.5 * (T[0, 1] + T[1, 0])
    eps = 2 * math.hypot(c1, c2) / (1 + nu)
    s = 0.5 * (1 - nu) * eps
    rho = math.hypot(a, b)
    th = math.sqrt(max(rho ** 2 - s ** 2, (0.01 * rho) ** 2))
    alpha = math.atan2(b, a) - math.atan2(th, s)
    two_phi = math.atan2(c2, c1) + alpha
    return np.array([2 * math.asin(min(1.0, th / 2)), eps * math.cos(two_phi), eps * math.sin(two_phi), alpha])


def _invert(T: np.ndarray, nu: float) -> np.ndarray:
    """The parameters (θ, e_c, e_s, α) with T(p) = T exactly (branch θ > 0, ε ≥ 0)."""
    from scipy.optimize import least_squares

    p0 = _first_order(T, nu)
    scale = float(np.abs(T).max())
    sol = least_squares(lambda p: (_t_of(p, nu) - T).ravel() / scale, p0, method="lm",
                        xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=400)
    p = sol.x
    if p[0] < 0:  # crossed to the mirror branch: restart from its image
        p = least_squares(lambda q: (_t_of(q, nu) - T).ravel() / scale, np.abs(p0), method="trf",
                          bounds=([0, -np.inf, -np.inf, -np.inf], np.inf), xtol=1e-15, ftol=1e-15,
                          gtol=1e-15).x
    return p


def _dt_dp(p: np.ndarray, nu: float) -> np.ndarray:
    """∂ vec T / ∂p (4 × 4) by central differences."""
    J = np.empty((4, 4))
    for i in range(4):
        h = 1e-7 * max(1.0, abs(p[i])) if i != 0 else 1e-7 * max(abs(p[0]), 1e-3)
        d = np.zeros(4)
        d[i] = h
        J[:, i] = (_t_of(p + d, nu) - _t_of(p - d, nu)).ravel() / (2 * h)
    return J


def fit_shell(k: np.ndarray, sigma: np.ndarray, G0: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted least squares of :math:`\\mathbf k_j = M\\mathbf G^0_j` over three vector pairs.

    Returns M (2, 2), the covariance of vec M (4, 4) from the isotropic σ_j, and χ² (2 degrees of freedom).
    """
    W = 1.0 / np.asarray(sigma, float) ** 2
    N = G0.T @ (W[:, None] * G0)
    Ninv = np.linalg.inv(N)
    M = np.stack([Ninv @ (G0.T @ (W * k[:, r])) for r in range(2)])
    cov = np.zeros((4, 4))
    cov[:2, :2] = cov[2:, 2:] = Ninv
    chi2 = float((W * ((k - G0 @ M.T) ** 2).sum(axis=1)).sum())
    return M, cov, chi2


def _propagate(f, x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and its covariance J C Jᵀ (central differences)."""
    y0 = np.atleast_1d(np.asarray(f(x), float))
    J = np.empty((y0.size, x.size))
    for i in range(x.size):
        h = 1e-6 * max(abs(x[i]), 1e-6)
        d = np.zeros(x.size)
        d[i] = h
        J[:, i] = (np.atleast_1d(f(x + d)) - np.atleast_1d(f(x - d))) / (2 * h)
    return y0, J @ cov @ J.T


def real_space_moire(g: np.ndarray) -> np.ndarray:
    """The three shortest moiré lattice vectors (3, 2) Å (AA–AA, up to sign) of the first-shell
    reciprocal vectors g (3, 2) (g₀ − g₁ + g₂ = 0): the dual basis of (g₀, g₂) and its difference,
    sorted by direction in [0°, 180°)."""
    B = np.stack([g[0], g[2]])
    L = 2 * np.pi * np.linalg.inv(B).T  # rows L_i with L_i · g_j = 2π δ_ij
    cand = [L[0], L[1], L[0] - L[1], L[0] + L[1]]
    cand = sorted(cand, key=lambda v: float(np.hypot(*v)))[:3]
    ang = [math.atan2(v[1], v[0]) % math.pi for v in cand]
    return np.array([cand[i] * (1 if math.atan2(cand[i][1], cand[i][0]) >= 0 else -1)
                     for i in np.argsort(ang)])


# ------------------------------------------------------------------------------------------------
# peak search


def _window_kappa(sp: _Spectrum) -> float:
    """κ of σ_k = κ / SNR (module docstring), averaged over x and y (Å⁻¹)."""
    w = sp.w
    out = []
    for c in (sp.u[:, 0], sp.u[:, 1]):
        out.append(w.sum() * math.sqrt(0.5 * float((c ** 2 * w ** 2).sum()))
                   / (math.sqrt(float((w ** 2).sum())) * float((w * c ** 2).sum())))
    return float(math.sqrt(0.5 * (out[0] ** 2 + out[1] ** 2)))


def _leakage(sp: _Spectrum, six: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Bound on the shift of each peak (Å⁻¹) by the window tails of the other peaks of the spectrum.

    A peak of amplitude a_j at k_j adds a_j Ŵ(k − k_j) to the transform, Ŵ the window's transform
    (Ŵ(0) = Σ w); its slope at k_i, over the curvature a_i Σ_u w_u ρ_u²/2 of peak i, moves the maximum
    by at most :math:`\\sum_j (a_j/a_i)\\,|\\nabla\\hat W(\\mathbf k_i - \\mathbf k_j)| / \\sum_u w_u\\rho_u^2/2`
    (phases unknown, hence a bound). The sources j: the other five peaks of the shell, and the local
    maxima of ``|F|`` between 3π/R and 12π/R of peak i (R the Hann radius) that stand above five times
    peak i's own window tail there (e.g. the other layer's Bragg peak, moiré satellites).
    Returns the bound of the three independent peaks (3,) (the larger of each ± pair).
    """
    from scipy.ndimage import maximum_filter

    u, w = sp.u_nz, sp.w[sp.c != 0]
    w0 = float(w.sum())
    curv = 0.5 * float((w * (u ** 2).sum(axis=1)).sum())
    r_in, r_out = 3 * math.pi / sp.radius, 12 * math.pi / sp.radius
    lm = (maximum_filter(sp.A, size=5) == sp.A) & (sp.A > 0)
    # candidate sources near each peak (a bounding box of the grid), outside every shell peak's main lobe
    cand_i, cand_k, cand_a = [], [], []
    for i in range(6):
        ix = np.searchsorted(sp.kx, [six[i, 0] - r_out, six[i, 0] + r_out])
        iy = np.searchsorted(sp.ky, [six[i, 1] - r_out, six[i, 1] + r_out])
        sl = (slice(iy[0], iy[1]), slice(ix[0], ix[1]))
        KX, KY, A, L = sp.KX[sl], sp.KY[sl], sp.A[sl], lm[sl]
        near = L & (np.hypot(KX - six[i, 0], KY - six[i, 1]) < r_out)
        for q in six:
            near &= np.hypot(KX - q[0], KY - q[1]) > r_in
        cand_i.append(np.full(int(near.sum()), i))
        cand_k.append(np.column_stack([KX[near], KY[near]]))
        cand_a.append(A[near])
    ci, ck, ca = np.concatenate(cand_i), np.concatenate(cand_k), np.concatenate(cand_a)
    if len(ck):  # keep those above five times peak i's own window tail there (not its side lobes)
        tail = amp[ci] * np.abs(ft_points(u, w, ck - six[ci], eps=1e-9)) / w0
        keep = ca > 5 * tail
        ci, ck, ca = ci[keep], ck[keep], ca[keep]
    # plus the other five peaks of the shell
    pi, pj = np.nonzero(~np.eye(6, dtype=bool))
    ci, ca = np.concatenate([ci, pi]), np.concatenate([ca, amp[pj]])
    dk = six[ci] - np.concatenate([ck, six[pj]])
    gx = np.abs(ft_points(u, -1j * u[:, 0] * w, dk, eps=1e-9))
    gy = np.abs(ft_points(u, -1j * u[:, 1] * w, dk, eps=1e-9))
    out = np.bincount(ci, weights=ca * np.hypot(gx, gy), minlength=6) / (amp * curv)
    return np.maximum(out[:3], out[3:])


def _amp_at(sp: _Spectrum, k: np.ndarray) -> float:
    return sp.local_max(k, 0.75 * max(sp.dk))[1]


def _noise_rms(sp: _Spectrum, six: np.ndarray, k_lo: float, k_hi: float) -> float:
    """rms ``|F|`` of the noise (median / √ln 2, Rayleigh) in ``k_lo ≤ |k| ≤ k_hi`` away from the shell ``six``
    and its harmonics (k_i + k_{i+1}, 2k_i): discs of radius 3π/R (the window's main lobe and first
    side lobe; R the Hann radius) left out; the whole spectrum beyond ``k_lo`` when too little is left."""
    excl = np.concatenate([six, six + np.roll(six, -1, axis=0), 2 * six])
    r_ex = 3 * math.pi / sp.radius
    sel = (sp.K >= k_lo) & (sp.K <= k_hi)
    far = np.ones_like(sel)
    for p in excl:
        far &= np.hypot(sp.KX - p[0], sp.KY - p[1]) > r_ex
    if (sel & far).sum() < 200:
        sel = sp.K >= k_lo
    return float(np.median(sp.A[sel & far])) / math.sqrt(math.log(2))


def _find_shell(sp: _Spectrum, k_lo: float, k_hi: float, radius_frac: float) -> np.ndarray:
    """A coarse first shell (6, 2) in the annulus: three peaks and their opposites, counter-clockwise.

    k₁: the annulus maximum; k₂: the best of (the maximum outside ±30° of ±k₁, the grid maxima near
    k₁ rotated by 60° and 120°); k₃: the closure k₂ ∓ k₁ (the one of length nearer ``|k₁|``), its grid
    maximum within ``radius_frac`` ``|k₁|``. The best hexagon has the largest weakest peak.
    """
    ann = (sp.K >= k_lo) & (sp.K <= k_hi)
    k1 = sp.argmax_in(ann)
    r1 = float(np.hypot(*k1))
    cosang = np.abs(sp.KX * k1[0] + sp.KY * k1[1]) / (np.maximum(sp.K, 1e-30) * r1)
    off = ann & (cosang < math.cos(math.radians(30.0)))
    hexa = sp.hexagon(k1, radius_frac * r1)
    cands = ([sp.argmax_in(off)] if off.any() else []) + [hexa[1], hexa[2]]
    best, score = None, -1.0
    a1 = _amp_at(sp, k1)
    for k2 in cands:
        r2 = float(np.hypot(*k2))
        guess = min((k2 - k1, k2 + k1), key=lambda v: abs(float(np.hypot(*v)) - 0.5 * (r1 + r2)))
        k3, a3 = sp.local_max(guess, radius_frac * r1)
        s = min(a1, _amp_at(sp, k2), a3)
        if s > score:
            best, score = (k1, k2, k3), s
    six = np.array([*best, *(-np.array(best))])
    six = six[np.argsort(np.mod(np.arctan2(six[:, 1], six[:, 0]), 2 * np.pi))]
    return six


def _three(six: np.ndarray, amp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six refined peaks sorted counter-clockwise → three (k_j − k_{j+3})/2, their amplitudes and the
    six back in order. The start is the peak whose angle is nearest above 0°."""
    ang = np.mod(np.arctan2(six[:, 1], six[:, 0]), 2 * np.pi)
    o = np.argsort(ang)
    six, amp = six[o], amp[o]
    k = 0.5 * (six[:3] - six[3:])
    return k, np.minimum(amp[:3], amp[3:]), six


def _twist_k(theta_deg: float, gabs: float) -> float:
    return 2 * gabs * math.sin(math.radians(theta_deg) / 2)


# ------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ScannerCalibration:
    """The scanner's distortion measured on the atomic lattice (see the module docstring).

    Attributes
    ----------
    scale_x, scale_y : float
        Piezo calibration factors s_x, s_y (true Å per nominal Å) along x (fast) and y (slow).
    shear : float
        γ: x displacement (Å) per Å of y (linear drift along x during the slow scan, or axis skew).
    shear_deg : float
        atan(γ / s_y): the tilt of the slow axis.
    matrix : ((float, float), (float, float))
        A, true = A · nominal.
    *_sigma : float
        1σ uncertainties from the Bragg peaks' positions.
    lattice_angle_deg : float
        Orientation of the imaged lattice's zigzag direction in the corrected frame, in [−30°, 30°).
    bragg_vectors : ((float, float), ...)
        The three refined Bragg vectors as measured (nominal frame, Å⁻¹).
    bragg_snr : (float, float, float)
        Their peak / noise-rms ratios.
    closure : float
        ``|b₀ − b₁ + b₂|`` / ``|b|`` of the refined shell.
    """

    scale_x: float
    scale_y: float
    shear: float
    shear_deg: float
    matrix: tuple[tuple[float, float], tuple[float, float]]
    scale_x_sigma: float
    scale_y_sigma: float
    shear_sigma: float
    lattice_angle_deg: float
    bragg_vectors: tuple[tuple[float, float], ...]
    bragg_snr: tuple[float, ...]
    closure: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matrix"] = [list(r) for r in self.matrix]
        d["bragg_vectors"] = [list(v) for v in self.bragg_vectors]
        d["bragg_snr"] = list(self.bragg_snr)
        return d


@dataclass(frozen=True)
class LatticeMetrology:
    """What :func:`measure_metrology` measured on a map (Å, Å⁻¹, degrees; ε in per cent).

    Attributes
    ----------
    moire_vectors : three (g_x, g_y), Å⁻¹
        First-shell moiré wave vectors g₁, g₂, g₃ in the corrected frame, counter-clockwise
        (g₁ − g₂ + g₃ = 0 up to the noise).
    moire_vector_sigma : three floats, Å⁻¹
        Their isotropic 1σ position uncertainty (peak noise, and the scanner calibration when used).
    moire_vector_angles_deg : three floats
        Directions of the g_j in [0°, 360°).
    moire_snr : three floats
        Peak / noise-rms of the moiré peaks.
    moire_wavelengths : (λ₁, λ₂, λ₃), Å
        Lengths of the three shortest real-space moiré lattice vectors (AA–AA distances), with
        ``moire_wavelength_sigma`` and their directions ``moire_directions_deg`` in [0°, 180°).
    twist_deg, strain_percent, strain_angle_deg : float
        θ > 0, ε ≥ 0 and φ (image frame, [0°, 180°)) of the fit, with their ``*_sigma``
        (``strain_angle_sigma_deg`` = 90 means φ undetermined: ε within its noise).
    strain_angle_lattice_deg : float
        φ − α in [0°, 60°): 0° zigzag, 30° armchair.
    lattice_angle_deg : float
        α, the bilayer's mean zigzag direction in the image, in [−30°, 30°), from the moiré fit.
    chi2, dof, birge : float, int, float
        χ² of the shell fit, its degrees of freedom (2) and the factor max(1, √(χ²/dof)) applied
        to the uncertainties. ``residual`` is the rms vector residual (Å⁻¹).
    atomic_resolved : bool
        The Bragg lattice was found and fixed the frame (``scanner``).
    twist_nominal_deg : float
        θ from the moiré read in the nominal frame (pixel size trusted): differs from ``twist_deg``
        by the scanner correction.
    peaks_nominal : six (k_x, k_y)
        The refined moiré peaks in the map's nominal frame (for figures); ``fit_peaks_nominal`` the
        fitted model's, :math:`A^{T}T\\mathbf G^0_j` and their opposites; ``bragg_peaks_nominal`` the
        refined Bragg peaks (empty without atomic resolution).
    warnings : tuple of str
    spectrum : (k_x, k_y, ``|F|``) or None
        The FFT amplitude grid (not serialised).
    """

    source: str
    shape: tuple[int, int]
    pixel_size: tuple[float, float]
    moire_vectors: tuple[tuple[float, float], ...]
    moire_vector_sigma: tuple[float, ...]
    moire_vector_angles_deg: tuple[float, ...]
    moire_snr: tuple[float, ...]
    moire_wavelengths: tuple[float, ...]
    moire_wavelength_sigma: tuple[float, ...]
    moire_directions_deg: tuple[float, ...]
    twist_deg: float
    twist_sigma_deg: float
    strain_percent: float
    strain_sigma_percent: float
    strain_angle_deg: float
    strain_angle_sigma_deg: float
    strain_angle_lattice_deg: float
    lattice_angle_deg: float
    lattice_angle_sigma_deg: float
    chi2: float
    dof: int
    birge: float
    residual: float
    atomic_resolved: bool
    scanner: ScannerCalibration | None
    twist_nominal_deg: float
    poisson_ratio: float
    lattice_constant: float
    uncertainty: str
    peaks_nominal: tuple[tuple[float, float], ...]
    bragg_peaks_nominal: tuple[tuple[float, float], ...]
    fit_peaks_nominal: tuple[tuple[float, float], ...] = ()
    warnings: tuple[str, ...] = ()
    spectrum: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("spectrum", "scanner")}
        for k, v in list(d.items()):
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        d["scanner"] = None if self.scanner is None else self.scanner.to_dict()
        return d

    def summary(self) -> str:
        """One line for humans."""
        phi = (f"φ = {format_pm(self.strain_angle_deg, self.strain_angle_sigma_deg, '°')}"
               if self.strain_angle_sigma_deg < 90 else "φ undetermined")
        s = (f"θ = {format_pm(self.twist_deg, self.twist_sigma_deg, '°')}   "
             f"ε = {format_pm(self.strain_percent, self.strain_sigma_percent, ' %')}   {phi}   λ = "
             + ", ".join(f"{v:.2f}" for v in self.moire_wavelengths) + " Å")
        if self.scanner is not None:
            c = self.scanner
            s += f"   piezo s_x = {c.scale_x:.4f}, s_y = {c.scale_y:.4f}, shear {c.shear_deg:.3f}°"
        return s


def format_pm(value: float, sigma: float, unit: str = "") -> str:
    """``value ± sigma`` with two significant digits of sigma (4 significant digits without one)."""
    if not (sigma > 0 and math.isfinite(sigma)):
        return f"{value:.4g}{unit}"
    dec = max(0, min(8, 1 - math.floor(math.log10(sigma))))
    return f"{value:.{dec}f} ± {sigma:.{dec}f}{unit}"


def check_map(m: MapData) -> None:
    """Refuse maps that cannot hold a moiré lattice (InputError): NaN/inf, fewer than 32 × 32 pixels,
    a constant map."""
    v = m.values
    if not np.all(np.isfinite(v)):
        raise InputError(f"{m.source}: the map contains {int((~np.isfinite(v)).sum())} NaN/inf value(s); "
                         "fill or crop them first")
    ny, nx = m.shape
    if min(nx, ny) < 32:
        raise InputError(f"{m.source}: map of {nx}×{ny} pixels is too small for moiré metrology (at least 32×32)")
    if float(np.ptp(v)) == 0.0:
        raise InputError(f"{m.source}: the map is constant; it holds no moiré lattice")


def _wrap(x: float, period: float, lo: float = 0.0) -> float:
    return (x - lo) % period + lo


def measure_metrology(m: MapData, a: float = A_LAT, nu: float = POISSON_GRAPHENE,
                      keep_spectrum: bool = True) -> LatticeMetrology:
    """Moiré wave vectors, wavelengths, twist, heterostrain and (atoms resolved) scanner calibration.

    Parameters
    ----------
    m : MapData
        The map (pixel size in Å).
    a : float
        Graphene lattice constant (Å), default :data:`moireu.constants.A_LAT`.
    nu : float
        Poisson ratio of the uniaxial heterostrain (graphene: 0.16).
    keep_spectrum : bool
        Keep the FFT amplitude grid in the result (for :func:`moireu.plot.metrology.plot_metrology`).

    Returns
    -------
    LatticeMetrology

    Raises
    ------
    InputError
        NaN/inf, a map smaller than 32 × 32 pixels or constant, a frame that cannot resolve a moiré
        of 0.5°–10°, or no moiré lattice found (see the module docstring).
    """
    check_map(m)
    sp = _Spectrum(m)
    Lmin = min(m.field_of_view)
    nyq = min(abs(sp.kx[0]), abs(sp.ky[0]))
    G0 = graphene_shell(a)
    gabs = float(np.hypot(*G0[0]))
    bin_k = 2 * math.pi / Lmin
    k_lo = max(_twist_k(TWIST_RANGE_DEG[0], gabs) * (1 - SEARCH_MARGIN), MIN_BINS * bin_k)
    k_hi = min(_twist_k(TWIST_RANGE_DEG[1], gabs) * (1 + SEARCH_MARGIN), 0.9 * nyq)
    if k_hi <= k_lo * 1.2:
        raise InputError(f"{m.source}: a frame of {m.field_of_view[0]:.4g} × {m.field_of_view[1]:.4g} Å with "
                         f"pixels of {m.pixel_size[0]:.4g} × {m.pixel_size[1]:.4g} Å cannot resolve a moiré of "
                         f"{TWIST_RANGE_DEG[0]:g}°–{TWIST_RANGE_DEG[1]:g}° (wave vectors "
                         f"{_twist_k(TWIST_RANGE_DEG[0], gabs):.3g}–{_twist_k(TWIST_RANGE_DEG[1], gabs):.3g} Å⁻¹; "
                         f"the frame resolves {k_lo:.3g}–{k_hi:.3g} Å⁻¹)")
    kappa = _window_kappa(sp)
    warnings: list[str] = []

    # 1. moiré shell
    six0 = _find_shell(sp, k_lo, k_hi, 0.3)
    six_m, amp6 = sp.refine(six0, passes=PASSES)
    km, amp_m, six_m = _three(six_m, amp6)
    amp6 = np.concatenate([amp_m, amp_m])
    gm_abs = float(np.hypot(km[:, 0], km[:, 1]).mean())
    med = sp.annulus_median(k_lo, k_hi)
    contrast = float(amp_m.min() / med) if med > 0 else 0.0
    closure = float(np.hypot(*(km[0] - km[1] + km[2])) / gm_abs)
    if contrast < CONTRAST_LO or closure > MOIRE_CLOSURE:
        why = (f"the weakest of the three first-shell peaks stands {contrast:.2g}× above the median of the "
               f"spectrum (need ≥ {CONTRAST_LO:g}; white noise reaches 3–4)" if contrast < CONTRAST_LO else
               f"the three strongest peaks do not close into a moiré shell (|g₀ − g₁ + g₂| = "
               f"{closure:.2g} |g|, need ≤ {MOIRE_CLOSURE:g})")
        raise InputError(f"{m.source}: no moiré lattice found in {k_lo:.3g}–{k_hi:.3g} Å⁻¹ (twist "
                         f"{TWIST_RANGE_DEG[0]:g}°–{TWIST_RANGE_DEG[1]:g}°): {why}")
    noise_m = _noise_rms(sp, six_m, 0.5 * gm_abs, 2.0 * gm_abs)
    snr_m = amp_m / noise_m
    sig_m = np.hypot(kappa / snr_m, _leakage(sp, six_m, amp6))

    # 2. Bragg shell: the scanner calibration when the atoms are resolved
    cal = _calibrate(sp, G0, kappa, warnings) if 1.15 * gabs < nyq else None
    atomic = cal is not None
    scanner, F, cov_F, bragg6 = cal if atomic else (None, None, None, np.zeros((0, 2)))
    A = _scanner_of(F) if atomic else np.eye(2)

    # 3. the shell fit: T in the nominal frame, then T_true = A⁻ᵀ T with A's uncertainty, then θ, ε, φ, α
    Tm, cov_Tm, chi2 = fit_shell(km, sig_m, G0)
    dof = 2
    birge = max(1.0, math.sqrt(chi2 / dof))
    twist_nominal = math.degrees(_invert(Tm, nu)[0])
    x, cov_x = Tm.ravel(), cov_Tm * birge ** 2
    if atomic:
        x = np.concatenate([x, F.ravel()])
        cov_x = np.block([[cov_x, np.zeros((4, 4))], [np.zeros((4, 4)), cov_F]])

    def corrected(z: np.ndarray) -> np.ndarray:
        return np.linalg.solve(_scanner_of(z[4:].reshape(2, 2)).T, z[:4].reshape(2, 2)).ravel() if atomic else z

    T, cov_T = _propagate(corrected, x, cov_x)
    p = _invert(T.reshape(2, 2), nu)
    Jp = np.linalg.inv(_dt_dp(p, nu))
    cov_p = Jp @ cov_T @ Jp.T

    th, ec, es, al = p
    eps = math.hypot(ec, es)
    phi = 0.5 * math.atan2(es, ec)
    var_eps = ((ec * ec * cov_p[1, 1] + 2 * ec * es * cov_p[1, 2] + es * es * cov_p[2, 2]) / eps ** 2
               if eps > 0 else 0.5 * (cov_p[1, 1] + cov_p[2, 2]))
    var_perp = ((es * es * cov_p[1, 1] - 2 * ec * es * cov_p[1, 2] + ec * ec * cov_p[2, 2]) / eps ** 2
                if eps > 0 else 0.5 * (cov_p[1, 1] + cov_p[2, 2]))
    # φ is an axis (mod 180°): 90° means undetermined (ε within its noise)
    sig_phi = min(90.0, math.degrees(math.sqrt(var_perp) / (2 * eps))) if eps > 0 else 90.0

    # moiré vectors and wavelengths in the corrected frame
    g = km @ np.linalg.inv(A)  # rows: (A⁻ᵀ k)ᵀ
    smax = float(np.linalg.svd(np.linalg.inv(A), compute_uv=False).max())
    sig_g = sig_m * birge * smax
    if atomic:  # the calibration's share, as the rms shift of the vectors over the F covariance
        _, cg = _propagate(lambda f: (km @ np.linalg.inv(_scanner_of(f.reshape(2, 2)))).ravel(), F.ravel(), cov_F)
        sig_g = np.sqrt(sig_g ** 2 + 0.5 * np.diag(cg).reshape(3, 2).sum(axis=1))
    cov_g = np.diag(np.repeat(sig_g ** 2, 2))
    lam_vec = real_space_moire(g)
    lam, cov_lam = _propagate(lambda z: np.hypot(*real_space_moire(z.reshape(3, 2)).T), g.ravel(), cov_g)
    lam_dir = [_wrap(math.degrees(math.atan2(v[1], v[0])), 180.0) for v in lam_vec]

    theta_deg = math.degrees(th)
    if not 0.99 * TWIST_RANGE_DEG[0] <= theta_deg <= 1.01 * TWIST_RANGE_DEG[1]:
        warnings.append(f"twist {theta_deg:.3f}° outside the range {TWIST_RANGE_DEG[0]:g}°–{TWIST_RANGE_DEG[1]:g}° "
                        "this metrology is made for")
    method = ("peak positions: σ_j² = (κ/SNR_j)² + b_j² (white-noise level from the FFT background; b_j the bound "
              "of the other peaks' window leakage), propagated linearly through the shell fit"
              + (" and the Bragg calibration" if atomic else "") + ", times the Birge ratio max(1, √(χ²/dof))")
    spectrum = (sp.kx, sp.ky, sp.A) if keep_spectrum else None
    fit3 = G0 @ (A.T @ _t_of(p, nu)).T  # the model's peaks back in the nominal frame
    fit6 = np.concatenate([fit3, -fit3])
    return LatticeMetrology(
        source=m.source, shape=(m.shape[1], m.shape[0]), pixel_size=tuple(m.pixel_size),
        moire_vectors=tuple(map(tuple, g.tolist())), moire_vector_sigma=tuple(map(float, sig_g)),
        moire_vector_angles_deg=tuple(_wrap(math.degrees(math.atan2(v[1], v[0])), 360.0) for v in g),
        moire_snr=tuple(map(float, snr_m)), moire_wavelengths=tuple(map(float, lam)),
        moire_wavelength_sigma=tuple(float(math.sqrt(max(v, 0.0))) for v in np.diag(cov_lam)),
        moire_directions_deg=tuple(lam_dir),
        twist_deg=theta_deg, twist_sigma_deg=math.degrees(math.sqrt(cov_p[0, 0])),
        strain_percent=100 * eps, strain_sigma_percent=100 * math.sqrt(var_eps),
        strain_angle_deg=_wrap(math.degrees(phi), 180.0), strain_angle_sigma_deg=sig_phi,
        strain_angle_lattice_deg=_wrap(math.degrees(phi - al), 60.0),
        lattice_angle_deg=_wrap(math.degrees(al), 60.0, -30.0),
        lattice_angle_sigma_deg=math.degrees(math.sqrt(cov_p[3, 3])),
        chi2=chi2, dof=dof, birge=birge, residual=float(math.sqrt(((km - G0 @ Tm.T) ** 2).sum(axis=1).mean())),
        atomic_resolved=atomic, scanner=scanner, twist_nominal_deg=twist_nominal, poisson_ratio=nu,
        lattice_constant=a, uncertainty=method, peaks_nominal=tuple(map(tuple, six_m.tolist())),
        bragg_peaks_nominal=tuple(map(tuple, bragg6.tolist())), fit_peaks_nominal=tuple(map(tuple, fit6.tolist())),
        warnings=tuple(warnings), spectrum=spectrum)


def _scanner_of(F: np.ndarray) -> np.ndarray:
    """A (upper triangular, positive diagonal) of F = Aᵀ R: Aᵀ is the Cholesky factor of F Fᵀ."""
    return np.linalg.cholesky(F @ F.T).T


def _calibrate(sp: _Spectrum, G0: np.ndarray, kappa: float, warnings: list[str]
               ) -> tuple[ScannerCalibration, np.ndarray, np.ndarray, np.ndarray] | None:
    """Step 2 of the module docstring: ``(ScannerCalibration, F, cov vec F, six Bragg peaks)`` or None
    when the Bragg shell is not resolved (or implies an implausible scanner: scales outside 0.75–1.33)."""
    gabs = float(np.hypot(*G0[0]))
    b_lo, b_hi = 0.9 * gabs, 1.1 * gabs
    six, amp6 = sp.refine(_find_shell(sp, b_lo, b_hi, 0.03), passes=PASSES)
    kb, amp, six = _three(six, amp6)
    med = sp.annulus_median(b_lo, b_hi)
    closure = float(np.hypot(*(kb[0] - kb[1] + kb[2])) / np.hypot(kb[:, 0], kb[:, 1]).mean())
    if not (med > 0 and amp.min() >= BRAGG_CONTRAST * med and closure <= BRAGG_CLOSURE):
        warnings.append("the pixels would resolve the atomic lattice but no Bragg shell stands out "
                        f"(weakest peak {amp.min() / med:.2g}× the annulus median, need ≥ {BRAGG_CONTRAST:g}): "
                        "the moiré is read in the nominal frame (pixel size trusted)")
        return None
    snr = amp / _noise_rms(sp, six, b_lo, b_hi)
    sig = np.hypot(kappa / snr, _leakage(sp, six, np.concatenate([amp, amp])))
    F, cov_F, chi2 = fit_shell(kb, sig, G0)
    cov_F = cov_F * max(1.0, chi2 / 2)
    s = np.linalg.svd(F, compute_uv=False)  # = the singular values of A
    if np.linalg.det(F) <= 0 or not (0.75 <= s.min() and s.max() <= 1.33):
        warnings.append(f"a Bragg shell was found but implies piezo scales {s.max():.3f}/{s.min():.3f} "
                        "(or a mirrored frame): not used; the moiré is read in the nominal frame")
        return None
    A = _scanner_of(F)
    y, cy = _propagate(lambda f: _scanner_of(f.reshape(2, 2)).ravel()[[0, 3, 1]], F.ravel(), cov_F)
    R = np.linalg.solve(A.T, F)
    cal = ScannerCalibration(
        scale_x=float(y[0]), scale_y=float(y[1]), shear=float(y[2]),
        shear_deg=math.degrees(math.atan2(y[2], y[1])), matrix=tuple(map(tuple, A.tolist())),
        scale_x_sigma=float(math.sqrt(cy[0, 0])), scale_y_sigma=float(math.sqrt(cy[1, 1])),
        shear_sigma=float(math.sqrt(cy[2, 2])),
        lattice_angle_deg=_wrap(math.degrees(math.atan2(R[1, 0], R[0, 0])), 60.0, -30.0),
        bragg_vectors=tuple(map(tuple, kb.tolist())), bragg_snr=tuple(map(float, snr)), closure=closure)
    return cal, F, cov_F, six
