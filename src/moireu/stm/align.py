"""Alignment: measure the lattice of an STM map and bring the map to the training frame.

Every image — simulated for training or read from a user's file — goes through
:func:`map_to_image`:

1. **Coarse peaks.** The mean-subtracted map, apodised with a radial Hann window, is Fourier
   transformed (FFT zero-padded ×2). The strongest peak in the annulus
   :math:`0.5\\,|\\mathbf G_M| \\le |\\mathbf k| \\le 2\\,|\\mathbf G_M|` around the trained moiré
   wave vector :math:`|\\mathbf G_M| = 4\\pi/(\\sqrt3 L_M)` is a first-shell moiré peak; the other five
   are the maxima near its rotations by 60°·j.
2. **Refinement.** Each peak is refined on a local 5 × 5 grid (step half an FFT bin) of the exact windowed transform
   (finufft type 3, :func:`moireu.stm.ft.ft_points`) by a quadratic fit of log|F|.
3. **Moiré frame.** Measured and trained first-shell vectors, both sorted counter-clockwise, are
   paired with the cyclic shift whose rotation lies in [−30°, 30°) (the FT amplitude of the
   lattice is symmetric under 60° rotations), and the 2 × 2 map M of :math:`\\mathbf g = M\\mathbf G`
   is fitted by least squares.
4. **Atomic frame** (when the pixels resolve the graphene lattice). The 12 first-shell Bragg peaks
   of both layers, predicted from the trained indices :math:`(m_1, m_2)` and the *rotation* part of
   M (a twist change rescales the moiré, not the atoms), are searched within ±6 % of ``|G|`` and
   refined the same way; if they stand out of the background (peak / median of the Bragg annulus ≥ 6 for at least
   6 peaks) M is refitted on them. This corrects piezo scale, anisotropy and rotation to the
   precision of the atomic lattice, independently of the moiré's own distortions (twist deviation,
   heterostrain).
5. **Twist.** The moiré vectors in the corrected frame, :math:`M^{-1}\\mathbf g_j`, give the period
   :math:`L_M = 4\\pi/(\\sqrt3\\,\\overline{|\\mathbf G_j|})` and the twist angle
   :math:`\\theta = 2\\arcsin(a / 2L_M)`. Without atomic resolution the moiré vectors are read in the
   nominal frame (the pixel size is trusted) and the image is put on the training moiré frame M.
6. **Image.** A plane wave :math:`e^{i\\mathbf g\\cdot\\mathbf u} = e^{i\\mathbf G\\cdot M^T\\mathbf u}`,
   so the pixel centres :math:`\\mathbf u` (Å, frame centre 0) are moved to :math:`M^T\\mathbf u` in the
   training frame, weighted by the mean-free, Hann-apodised values, and transformed by finufft
   type 1 onto the training k window (:func:`moireu.stm.ftldos.ftldos`), amplitude divided by the
   window sum, normalised. The window (:func:`window_tiles`) is either the frame's inscribed disc or,
   with a fixed radius R (``ImageTransform.window_radius``, the presets' choice), a disc of radius R
   in the training frame: then every map has the same k resolution (the peaks' shape no longer
   depends on the field of view, which otherwise dominates the image-to-image variation of
   simulated acquisitions: the moiré-peak pixels correlate at 0.98 with the pixel size), and a
   larger map is covered by overlapping windows (step ¼ R) whose squared amplitudes are averaged
   (Welch), lowering the noise without changing the expected image.

Quality ∈ [0, 1]: the smaller of the moiré peaks' contrast score (median peak / median of the
spectrum beyond 0.5 ``|G_M|``, mapped 5 → 0, 15 → 1; the maxima of a white-noise spectrum reach ≈ 3–4)
and the hexagon fit score (1 − 10 × rms residual / ``|G_M|``). A map is
``in_range`` when quality ≥ 0.5 and the measured twist is within the transform's tolerance of the
trained twist angle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moireu.errors import InputError
from moireu.io.base import MapData
from moireu.stm.ft import ft_points
from moireu.stm.ftldos import ImageTransform, ftldos

#: Bragg peaks count as resolved when this many stand ≥ BRAGG_CONTRAST above the annulus median
BRAGG_MIN_PEAKS = 6
BRAGG_CONTRAST = 6.0
QUALITY_MIN = 0.5
#: moiré peak contrast (median peak / median of the whole spectrum beyond 0.5 ``|G_M|``) mapped to 0 … 1
CONTRAST_LO, CONTRAST_HI = 5.0, 15.0
MIN_FOV_MOIRE = 2.0  # field of view ≥ 2 moiré periods
#: spacing of the Welch windows of a fixed-radius FT, in window radii
WINDOW_STEP = 0.25
#: at most this many Welch windows per axis (a large map takes a coarser step)
MAX_WINDOWS_AXIS = 8


@dataclass(frozen=True)
class AlignInfo:
    """What the alignment measured on a map.

    Attributes
    ----------
    twist_deg : float
        θ = 2 arcsin(a / 2 L_M) (NaN when the map was not aligned).
    moire_period : float
        L_M (Å) in the corrected frame.
    angle_deg : float
        Rotation of the lattice as seen in the map relative to the training frame, in [−30°, 30°)
        (mod 60°); a scan frame rotated by φ shows the lattice rotated by −φ.
    scale : (float, float)
        Singular values of M, largest first: the piezo calibration factors (true Å per nominal Å)
        when the atomic lattice is resolved.
    atomic_resolved : bool
        The atomic Bragg lattice fixed the frame.
    quality : float
        [0, 1], see the module docstring.
    in_range : bool
        quality ≥ 0.5 and ``|θ − θ_train|`` ≤ tolerance.
    matrix : ((float, float), (float, float))
        The fitted M (measured g = M G).
    """

    twist_deg: float
    moire_period: float
    angle_deg: float
    scale: tuple[float, float]
    atomic_resolved: bool
    quality: float
    in_range: bool
    matrix: tuple[tuple[float, float], tuple[float, float]]
    trained_twist_deg: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scale"] = list(self.scale)
        d["matrix"] = [list(r) for r in self.matrix]
        return d


def _first_shell(rec: np.ndarray) -> np.ndarray:
    """The six shortest non-zero vectors m1 b1 + m2 b2, sorted by angle in [0, 2π)."""
    m = np.arange(-2, 3)
    M1, M2 = np.meshgrid(m, m, indexing="ij")
    G = np.stack([M1.ravel(), M2.ravel()], 1) @ rec
    n = np.linalg.norm(G, axis=1)
    G, n = G[n > 1e-12], n[n > 1e-12]
    G = G[n <= n.min() * 1.001]
    ang = np.mod(np.arctan2(G[:, 1], G[:, 0]), 2 * np.pi)
    return G[np.argsort(ang)]


def hann_weights(r: np.ndarray, radius: float) -> np.ndarray:
    """Radial Hann window cos²(πρ/2R) for ρ < R, else 0."""
    rho = np.hypot(r[:, 0], r[:, 1])
    w = np.cos(0.5 * np.pi * np.minimum(rho / radius, 1.0)) ** 2
    w[rho >= radius] = 0.0
    return w


class _Spectrum:
    """The apodised map and its FFT magnitude, with exact local refinement of peaks."""

    def __init__(self, m: MapData, pad: int = 2) -> None:
        ny, nx = m.shape
        px, py = m.pixel_size
        self.u = m.centred_xy()
        Lx, Ly = m.field_of_view
        self.radius = 0.5 * min(Lx, Ly)
        w = hann_weights(self.u, self.radius)
        self.w = w
        v = m.values.ravel()
        mean = float((w * v).sum() / w.sum())
        self.c = (v - mean) * w
        keep = self.c != 0
        self.u_nz, self.c_nz = self.u[keep], self.c[keep]
        F = np.fft.fftshift(np.abs(np.fft.fft2(self.c.reshape(ny, nx), s=(pad * ny, pad * nx))))
        self.A = F
        self.kx = np.fft.fftshift(np.fft.fftfreq(pad * nx, d=px)) * 2 * np.pi
        self.ky = np.fft.fftshift(np.fft.fftfreq(pad * ny, d=py)) * 2 * np.pi
        self.dk = (self.kx[1] - self.kx[0], self.ky[1] - self.ky[0])
        self.KX, self.KY = np.meshgrid(self.kx, self.ky)
        self.K = np.hypot(self.KX, self.KY)
        # numpy's FFT uses e^{-ikx} with x from the first pixel; |F| is what we use, so the sign
        # convention of the frequencies is the same as F(k) = Σ c e^{-ik·u}

    def argmax_in(self, mask: np.ndarray) -> np.ndarray:
        a = np.where(mask, self.A, -1.0)
        j = int(np.argmax(a))
        return np.array([self.KX.flat[j], self.KY.flat[j]])

    def local_max(self, k0: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
        """Grid maximum of ``|F|`` within ``radius`` of ``k0`` (searched on a bounding slice of the grid)."""
        ix = np.searchsorted(self.kx, [k0[0] - radius, k0[0] + radius])
        iy = np.searchsorted(self.ky, [k0[1] - radius, k0[1] + radius])
        sl = (slice(iy[0], iy[1]), slice(ix[0], ix[1]))
        KX, KY, A = self.KX[sl], self.KY[sl], self.A[sl]
        mask = np.hypot(KX - k0[0], KY - k0[1]) <= radius
        if not mask.any():
            return np.asarray(k0, float), 0.0
        a = np.where(mask, A, -1.0)
        j = int(np.argmax(a))
        return np.array([KX.flat[j], KY.flat[j]]), float(a.flat[j])

    def hexagon(self, k1: np.ndarray, radius: float) -> np.ndarray:
        """A coarse first shell (6, 2): ``k1`` and the grid maxima within ``radius`` of its rotations by 60°·j."""
        out = [np.asarray(k1, float)]
        for j in range(1, 6):
            c, s = math.cos(j * math.pi / 3), math.sin(j * math.pi / 3)
            guess = np.array([c * k1[0] - s * k1[1], s * k1[0] + c * k1[1]])
            out.append(self.local_max(guess, radius)[0])
        return np.array(out)

    def refine(self, ks: np.ndarray, passes: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Sub-bin peak positions: quadratic fit of log|F| on a 5 × 5 grid of exact transforms.

        The grid step is half an FFT bin; each further pass (``passes > 1``) re-centres the grid on the
        previous estimate with a step four times finer, which removes most of the interpolation bias
        of the quadratic (the alignment uses one pass; the metrology, :mod:`moireu.stm.metrology`, two).
        """
        ks = np.asarray(ks, float)
        if len(ks) == 0:
            return ks, np.zeros(0)
        step = np.array(self.dk) / 2.0
        amp = np.zeros(len(ks))
        for _ in range(max(1, int(passes))):
            ks, amp = self._refine_once(ks, step)
            step = step / 4.0
        return ks, amp

    def _refine_once(self, ks: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = np.arange(-2, 3)
        OX, OY = np.meshgrid(o, o)
        grid = ks[:, None, :] + np.stack([OX.ravel() * step[0], OY.ravel() * step[1]], 1)[None]
        F = np.abs(ft_points(self.u_nz, self.c_nz, grid.reshape(-1, 2), eps=1e-7)).reshape(len(ks), 5, 5)
        out = np.empty_like(ks)
        amp = np.empty(len(ks))
        for i in range(len(ks)):
            a = F[i]
            j, l = np.unravel_index(int(np.argmax(a)), a.shape)
            j, l = min(max(j, 1), 3), min(max(l, 1), 3)
            la = np.log(a[j - 1:j + 2, l - 1:l + 2] + 1e-300)
            dy = 0.5 * (la[0, 1] - la[2, 1]) / (la[0, 1] - 2 * la[1, 1] + la[2, 1] - 1e-300)
            dx = 0.5 * (la[1, 0] - la[1, 2]) / (la[1, 0] - 2 * la[1, 1] + la[1, 2] - 1e-300)
            dx, dy = float(np.clip(dx, -1, 1)), float(np.clip(dy, -1, 1))
            out[i] = grid[i, j * 5 + l] + np.array([dx * step[0], dy * step[1]])
            amp[i] = float(a[j, l])
        return out, amp

    def annulus_median(self, k_lo: float, k_hi: float, exclude: np.ndarray | None = None,
                       radius: float = 0.0) -> float:
        """Median of ``|F|`` over the FFT grid with ``k_lo ≤ ``|k|`` ≤ k_hi``, leaving out the discs of ``radius``
        around the points ``exclude`` (m, 2) (e.g. the peaks themselves)."""
        sel = (self.K >= k_lo) & (self.K <= k_hi)
        for p in ([] if exclude is None else np.asarray(exclude, float)):
            sel &= np.hypot(self.KX - p[0], self.KY - p[1]) > radius
        return float(np.median(self.A[sel])) if sel.any() else float("nan")


def _fit(g: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares M of g = M G over pairs; returns M and the rms residual."""
    M = (g.T @ G) @ np.linalg.inv(G.T @ G)
    res = g - G @ M.T
    return M, float(np.sqrt((res ** 2).sum(axis=1).mean()))


def _check_map(m: MapData, t: ImageTransform) -> None:
    src = m.source
    v = m.values
    if not np.all(np.isfinite(v)):
        raise InputError(f"{src}: the map contains {int((~np.isfinite(v)).sum())} NaN/inf value(s); fill or crop them first")
    ny, nx = m.shape
    if min(nx, ny) < 8:
        raise InputError(f"{src}: map of {nx}×{ny} pixels is too small (at least 8×8)")
    px, py = m.pixel_size
    win = t.window
    if math.pi / px < win.kx_max * (1 - 1e-9) or math.pi / py < win.ky_max * (1 - 1e-9):
        raise InputError(f"{src}: pixel size ({px:.4g}, {py:.4g}) Å is too coarse: its Nyquist limit π/p = "
                         f"({math.pi / px:.3g}, {math.pi / py:.3g}) Å⁻¹ does not reach the training window k_max = "
                         f"({win.kx_max:.3g}, {win.ky_max:.3g}) Å⁻¹; need p_x ≤ {math.pi / win.kx_max:.3f} Å, "
                         f"p_y ≤ {math.pi / win.ky_max:.3f} Å")
    if float(np.ptp(v)) == 0.0:
        raise InputError(f"{src}: the map is constant; it carries no LDOS modulation to transform")
    Lx, Ly = m.field_of_view
    if t.moire_period and min(Lx, Ly) < MIN_FOV_MOIRE * t.moire_period * (1 - 1e-9):
        raise InputError(f"{src}: field of view {Lx:.4g} × {Ly:.4g} Å is too small to resolve moiré satellites: need "
                         f"at least {MIN_FOV_MOIRE * t.moire_period:.4g} Å ({MIN_FOV_MOIRE:g} moiré periods of the "
                         f"training lattice, L_M = {t.moire_period:.4g} Å)")


def measure_lattice(m: MapData, t: ImageTransform, spec: _Spectrum | None = None) -> AlignInfo:
    """Steps 1–5 of the module docstring: the frame map M, twist angle and quality of ``m``."""
    if t.reciprocal is None or t.bragg_indices is None:
        raise InputError("the image transform holds no training lattice (reciprocal, bragg_indices); "
                         "it was stored before the measurement model and cannot align maps")
    sp = spec or _Spectrum(m)
    rec = np.asarray(t.reciprocal, float)
    shell = _first_shell(rec)
    gm0 = float(np.linalg.norm(shell[0]))
    # 1. coarse moiré hexagon
    lo_k = max(0.5 * gm0, 2.5 * max(sp.dk) * 2)
    k1 = sp.argmax_in((sp.K >= lo_k) & (sp.K <= 2.0 * gm0))
    r1 = float(np.linalg.norm(k1))
    gm, amp_m = sp.refine(sp.hexagon(k1, 0.25 * r1))
    # 3. pair with the trained shell (cyclic shift with rotation in [-30°, 30°))
    ang0 = math.atan2(gm[0, 1], gm[0, 0])
    ref_ang = np.arctan2(shell[:, 1], shell[:, 0])
    d = np.mod(ang0 - ref_ang + np.pi / 6, 2 * np.pi) - np.pi / 6
    s0 = int(np.argmin(np.abs(d)))
    G = shell[(s0 + np.arange(6)) % 6]
    # order the measured peaks by angle from the first one, counter-clockwise
    rel = np.mod(np.arctan2(gm[:, 1], gm[:, 0]) - ang0, 2 * np.pi)
    order = np.argsort(rel)
    gm, amp_m = gm[order], amp_m[order]
    M, res_m = _fit(gm, G)
    bg = sp.annulus_median(0.5 * gm0, np.inf)  # the spectrum's median: background + noise
    contrast = float(np.median(amp_m) / bg) if bg > 0 else 0.0
    q = min(float(np.clip((contrast - CONTRAST_LO) / (CONTRAST_HI - CONTRAST_LO), 0.0, 1.0)),
            float(np.clip(1.0 - 10.0 * res_m / gm0, 0.0, 1.0)))
    # 4. atomic lattice: Bragg peaks predicted by the rotation of the moiré fit only (a twist change
    # rescales the moiré, not the atoms), searched within ±6 % of |G| (piezo errors, heterostrain)
    atomic = False
    Gb = np.asarray(t.bragg_indices, float) @ rec
    gb_abs = float(np.linalg.norm(Gb, axis=1).mean()) if len(Gb) else 0.0
    kmax_map = min(abs(sp.kx[0]), abs(sp.ky[0]))
    Um, _, Vmt = np.linalg.svd(M)
    Rm = Um @ Vmt
    if len(Gb) >= 3 and 1.1 * gb_abs < kmax_map:
        pred = Gb @ Rm.T
        coarse_b = np.array([sp.local_max(p, min(0.06 * gb_abs, 0.45 * gm0))[0] for p in pred])
        gb, amp_b = sp.refine(coarse_b)
        bgb = sp.annulus_median(0.9 * gb_abs, 1.1 * gb_abs)
        ok = amp_b >= BRAGG_CONTRAST * bgb if bgb > 0 else np.zeros(len(gb), bool)
        if ok.sum() >= BRAGG_MIN_PEAKS:
            Mb, res_b = _fit(gb[ok], Gb[ok])
            if res_b < 0.02 * gm0:
                M, atomic = Mb, True
    # 5. twist: the moiré in the atomic frame, else in the nominal frame (pixel size trusted)
    true_m = gm @ np.linalg.inv(M).T if atomic else gm
    L = 4 * math.pi / (math.sqrt(3) * float(np.linalg.norm(true_m, axis=1).mean()))
    a = t.lattice_constant
    twist = math.degrees(2 * math.asin(min(1.0, a / (2 * L))))
    U, S, Vt = np.linalg.svd(M)
    R = U @ Vt
    angle = (math.degrees(math.atan2(R[1, 0], R[0, 0])) + 30.0) % 60.0 - 30.0
    in_range = q >= QUALITY_MIN and (t.twist_deg is None or abs(twist - t.twist_deg) <= t.twist_tolerance_deg)
    return AlignInfo(twist_deg=twist, moire_period=L, angle_deg=angle, scale=(float(S[0]), float(S[1])),
                     atomic_resolved=atomic, quality=q, in_range=bool(in_range),
                     matrix=tuple(map(tuple, M.tolist())), trained_twist_deg=t.twist_deg)


def window_tiles(m: MapData, t: ImageTransform, smin: float = 1.0) -> tuple[float, np.ndarray]:
    """The Hann window radius R (Å, training frame) and the window centres (T, 2) (Å, map frame).

    Without ``t.window_radius`` one window: the disc inscribed in the frame, centred. With it, the
    centres are spread evenly over the part of the frame where a whole window fits, ``1 + ⌊2a/s⌋``
    per axis for a span ``2a`` and a step ``s = WINDOW_STEP · R / smin`` (so neighbours are between
    ``s`` and ``2s`` apart; at most ``MAX_WINDOWS_AXIS`` per axis: a large map takes a coarser step).
    ``smin`` is the smallest singular value of the map → training frame matrix, so that a disc of
    radius R in the training frame stays inside the map.

    Raises
    ------
    InputError
        The field of view cannot hold one window.
    """
    Lx, Ly = m.field_of_view
    if t.window_radius is None:
        return 0.5 * min(Lx, Ly) * smin, np.zeros((1, 2))
    R = float(t.window_radius)
    reach = R / smin  # the window's radius in the map frame (upper bound)
    ax, ay = 0.5 * Lx - reach, 0.5 * Ly - reach
    if min(ax, ay) < -1e-9 * max(Lx, Ly):
        periods = f" = {R / t.moire_period:.3g} moiré periods" if t.moire_period else ""
        raise InputError(f"{m.source}: field of view {Lx:.4g} × {Ly:.4g} Å is too small for this model's FT window "
                         f"(a Hann disc of radius {R:.4g} Å{periods}): need at least {2 * reach:.4g} Å on each side")

    step = max(WINDOW_STEP * reach, 2 * max(ax, ay) / (MAX_WINDOWS_AXIS - 1))

    def axis(a: float) -> np.ndarray:
        n = 1 + int(np.floor(2 * max(a, 0.0) / step + 1e-9))
        return np.zeros(1) if n == 1 else np.linspace(-a, a, n)

    cx, cy = np.meshgrid(axis(ax), axis(ay))
    return R, np.column_stack([cx.ravel(), cy.ravel()])


def map_to_image(m: MapData, transform: ImageTransform | dict | str, attrs: dict[str, Any] | None = None
                 ) -> tuple[Any, AlignInfo]:
    """A map → ``(FT-LDOS image (ky, kx) float32 DataArray, AlignInfo)`` on the training window.

    See the module docstring. With a transform stored before the measurement model
    (``align=False``) the map is transformed on its own pixel frame (no alignment; the
    ``AlignInfo`` then holds NaN twist and ``in_range=True``).

    Raises
    ------
    InputError
        Non-finite values, fewer than 8 × 8 pixels, a constant map, pixels too coarse for the
        training window, or a field of view under two trained moiré periods.
    """
    t = transform if isinstance(transform, ImageTransform) else ImageTransform.from_dict(transform)
    _check_map(m, t)
    u = m.centred_xy()
    v = m.values.ravel()
    meta = {"source": m.source, "fov_x": m.field_of_view[0], "fov_y": m.field_of_view[1],
            "pixel_size_x": m.pixel_size[0], "pixel_size_y": m.pixel_size[1]}
    meta |= {f"map_{k}": v for k, v in m.meta.items() if k != "source"}  # reader / sidecar / scan metadata
    if t.align:
        sp = _Spectrum(m)
        info = measure_lattice(m, t, sp)
        # no moiré lattice found (quality below QUALITY_MIN): the fitted matrix is noise, so the window is laid
        # on the nominal frame; the image exists, and ``info.in_range`` is False with the quality that says why
        M = np.asarray(info.matrix) if info.quality >= QUALITY_MIN else np.eye(2)
    else:
        nan = float("nan")
        info = AlignInfo(nan, nan, 0.0, (1.0, 1.0), False, nan, True, ((1.0, 0.0), (0.0, 1.0)), t.twist_deg)
        M = np.eye(2)
    r = u @ M  # rows: (Mᵀ u)ᵀ = uᵀ M
    if t.apodize == "hann":
        smin = float(np.linalg.svd(M, compute_uv=False).min())
        radius, centres = window_tiles(m, t, smin)
        pts, vals, norms = [], [], []
        for c in centres:  # centres in the map frame; the window is a disc of the training frame
            w = hann_weights(r - c @ M, radius)
            idx = np.flatnonzero(w > 0)
            w, vi = w[idx], v[idx]
            pts.append(r[idx])
            vals.append((vi - float((w * vi).sum() / w.sum())) * w)
            norms.append(float(w.sum()))
        meta["window_radius"] = radius
        img = ftldos(pts, vals, transform=t, subtract_mean=False, n_norm=np.asarray(norms),
                     attrs=meta | {f"align_{k}": val for k, val in info.to_dict().items()
                                   if k not in ("matrix", "scale")} | dict(attrs or {}))
    else:
        img = ftldos(r, v, transform=t, attrs=meta | dict(attrs or {}))
    return img, info
