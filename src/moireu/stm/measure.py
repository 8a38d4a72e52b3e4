"""The measurement model: per-atom LDOS → the STM map an instrument would record.

One forward model serves the training set (every image is a fresh simulated acquisition) and
``moireu predict`` (a user's map goes through the same :func:`moireu.stm.align.map_to_image`).

Acquisition (:class:`ScanParams`, drawn per image by :func:`draw_scan` from a
:class:`MeasurementSpec`). A square frame of ``pixels`` × ``pixels`` pixels of nominal size ``p``
(Å) is centred at ``origin`` (anywhere in the moiré cell), rotated by ``rotation_deg``. The piezo
scanner maps the nominal tip position :math:`\\mathbf u` (Å, frame centre at 0) to the sample point

.. math::  \\mathbf r(\\mathbf u, t) = \\mathbf o + A\\,\\mathbf u + \\mathbf d(t),\\qquad
           A = R(\\varphi)\\,\\mathrm{diag}(s_x, s_y),\\qquad
           \\mathbf d(t) = \\mathbf v\\,t + A\\,(0,\\ c\\,(1 - e^{-t/\\tau}))

with piezo calibration errors :math:`s_{x,y}`, a thermal drift :math:`\\mathbf v` (Å per frame),
piezo creep :math:`c` along the slow axis (τ = 0.15 frame) and the acquisition time
:math:`t \\in [0, 1)` of a pixel (rows are scan lines, scanned left to right, bottom to top).

Signal (Tersoff–Hamann, PRB 31, 805 (1985)): :math:`I(\\mathbf u) = \\sum_i \\mathrm{LDOS}_i\\,
s(|\\mathbf r(\\mathbf u) - \\mathbf r_i|)` with the tip spot :func:`moireu.stm.patch.spot_profile`
at tip height ``tip_height`` (both layers projected on the plane, as in
:func:`moireu.stm.patch.render_map`).

Heterostrain and twist deviation (local-stacking approximation). Layer 1 of the model is layer 0
rotated by θ₀ (:func:`moireu.lattice.geometry.tbg_geometry`): :math:`T_0 = R(\\theta_0)`. A
perturbed bilayer has :math:`T = R(\\theta_0 + \\delta\\theta)\\,(1 + E)` with the uniaxial
heterostrain :math:`E = \\epsilon\\,R(\\psi)\\,\\mathrm{diag}(1, -\\nu)\\,R(-\\psi)` (ν = 0.16, graphene's
Poisson ratio; Bi, Yuan & Fu, PRB 100, 035448 (2019)). The interlayer stacking vector at
:math:`\\mathbf r` is :math:`(1 - T^{-1})\\mathbf r`, so the point of the *ideal* bilayer with the same
local stacking is

.. math::  \\mathbf r' = M^{-1}\\mathbf r,\\qquad M^{-1} = (1 - T_0^{-1})^{-1}(1 - T^{-1}).

The moiré pattern is therefore distorted by M (a 1 % change of θ scales it by 1 %; a 0.1 %
heterostrain distorts it by ~ε/θ ≈ 1.3 % at θ = 4.4°), while the atomic lattice is kept at its ideal
positions (its change, of order ε and δθ, moves Bragg peaks by < 0.2 % of ``|G|``). An atom of layer l,
sublattice s at r takes the LDOS at r' (modulo the moiré cell) linearly interpolated between the
ideal cell's layer-l, sublattice-s atoms (a triangular lattice of spacing a): exact on the sites,
continuous in the distortion, and blind only to LDOS structure finer than one lattice constant
within a sublattice (the stacking changes by ≈ θ·a ≈ 0.2 Å across it). The linear interpolation
errs by up to ≈ (``|G_M|`` a)²/8 of the moiré modulation: 4 % at i = 7 (the rendered moiré follows
δθ to within 4 %), 35 % at i = 2, where a moiré period spans only four atoms.

Noise, in units of the clean map's standard deviation σ₀ (so SNR = 1 / amplitude): white
(independent per pixel), 1/f in scan time (power ∝ 1/f over the acquisition sequence of all pixels,
i.e. slow wander within and between lines), and scan-line offsets (one Gaussian offset per line).

:data:`CORRUPTIONS` names the perturbations of the robustness table as modifications of a spec.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from moireu.errors import InputError
from moireu.io.base import AtomTable, MapData
from moireu.lattice.geometry import rotation
from moireu.stm.geometry import CellGeometry
from moireu.stm.patch import spot_profile

#: creep time constant (fraction of the frame time)
CREEP_TAU = 0.15
#: spots are truncated where s(ρ) < SPOT_CUTOFF · s(0)
SPOT_CUTOFF = 1e-4


# ------------------------------------------------------------------------------------------------
# acquisition parameters


@dataclass(frozen=True)
class ScanParams:
    """One acquisition (see the module docstring for the model). Lengths in Å, angles in degrees.

    Attributes
    ----------
    pixels : int
        The frame is pixels × pixels.
    pixel_size : float
        Nominal pixel size (Å).
    rotation_deg : float
        Frame rotation φ with respect to the sample (the model's frame).
    origin : (float, float)
        Sample point under the frame centre (Å).
    tip_height : float
        Tip height h of the spot :func:`moireu.stm.patch.spot_profile` (Å).
    scale : (float, float)
        Piezo calibration factors (s_x, s_y): true displacement = s × nominal.
    heterostrain, strain_angle_deg, twist_delta_deg : float
        Uniaxial heterostrain ε and its axis ψ; twist deviation δθ.
    drift : (float, float)
        Thermal drift over one frame (Å, sample frame).
    creep : float
        Piezo creep amplitude along the slow axis (Å).
    noise_white, noise_pink, noise_lines : float
        Noise amplitudes relative to the clean map's standard deviation.
    noise_seed : int
        Seed of the noise draws.
    orbital : str
        Spot model (``slater`` or ``gaussian``).
    """

    pixels: int = 256
    pixel_size: float = 0.45
    rotation_deg: float = 0.0
    origin: tuple[float, float] = (0.0, 0.0)
    tip_height: float = 3.0
    scale: tuple[float, float] = (1.0, 1.0)
    heterostrain: float = 0.0
    strain_angle_deg: float = 0.0
    twist_delta_deg: float = 0.0
    drift: tuple[float, float] = (0.0, 0.0)
    creep: float = 0.0
    noise_white: float = 0.0
    noise_pink: float = 0.0
    noise_lines: float = 0.0
    noise_seed: int = 0
    orbital: str = "slater"

    def __post_init__(self) -> None:
        if int(self.pixels) != self.pixels or self.pixels < 8:
            raise InputError(f"scan pixels must be an integer ≥ 8, got {self.pixels!r}")
        vals = [self.pixel_size, self.rotation_deg, *self.origin, self.tip_height, *self.scale, self.heterostrain,
                self.strain_angle_deg, self.twist_delta_deg, *self.drift, self.creep, self.noise_white,
                self.noise_pink, self.noise_lines]
        if not all(math.isfinite(float(v)) for v in vals):
            raise InputError(f"scan parameters must be finite, got {self}")
        if self.pixel_size <= 0 or self.tip_height <= 0 or min(self.scale) <= 0:
            raise InputError(f"pixel size, tip height and piezo scales must be positive, got {self.pixel_size}, "
                             f"{self.tip_height}, {self.scale}")
        if min(self.noise_white, self.noise_pink, self.noise_lines, self.heterostrain) < 0:
            raise InputError("noise amplitudes and heterostrain must be ≥ 0")

    @property
    def field_of_view(self) -> float:
        """Nominal side length of the frame (Å)."""
        return self.pixels * self.pixel_size

    @property
    def piezo(self) -> np.ndarray:
        """A = R(φ) diag(s_x, s_y): nominal frame displacement → sample displacement."""
        return rotation(math.radians(self.rotation_deg)) @ np.diag(self.scale)

    def columns(self) -> dict[str, float]:
        """The per-image store columns of this scan (contract A)."""
        return {"scan_origin_x": float(self.origin[0]), "scan_origin_y": float(self.origin[1]),
                "scan_rotation_deg": float(self.rotation_deg), "scan_pixel_size": float(self.pixel_size),
                "scan_tip_height": float(self.tip_height), "scan_scale_x": float(self.scale[0]),
                "scan_scale_y": float(self.scale[1]), "scan_heterostrain": float(self.heterostrain),
                "scan_twist_delta_deg": float(self.twist_delta_deg), "scan_noise_white": float(self.noise_white)}

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


#: nominal tip height above the top layer (Å) and the half-width of its spread between acquisitions (Å)
TIP_HEIGHT, TIP_HEIGHT_JITTER = 3.0, 0.2


@dataclass(frozen=True)
class MeasurementSpec:
    """Ranges of the acquisition parameters; :func:`draw_scan` draws one :class:`ScanParams` from them.

    ``(lo, hi)`` fields are uniform ranges; ``*_max`` fields are uniform in ``[-x, x]`` (drift and
    creep: magnitude in ``[0, x]``). ``cell`` (the moiré cell, rows t1, t2) places the random frame
    centre uniformly in one cell; without it the origin stays at 0.
    """

    pixels: int = 256
    pixel_size: tuple[float, float] = (0.40, 0.50)
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    tip_height: tuple[float, float] = (TIP_HEIGHT - TIP_HEIGHT_JITTER, TIP_HEIGHT + TIP_HEIGHT_JITTER)
    scale_error_max: float = 0.01
    heterostrain: tuple[float, float] = (0.0, 0.001)
    twist_delta_max_deg: float = 0.02
    drift_max: float = 0.5
    creep_max: float = 0.0
    noise_white: tuple[float, float] = (0.0, 0.05)
    noise_pink: tuple[float, float] = (0.0, 0.03)
    noise_lines: tuple[float, float] = (0.0, 0.03)
    cell: tuple[tuple[float, float], tuple[float, float]] | None = None

    @classmethod
    def from_config(cls, stm: Any, cell: np.ndarray | None = None) -> "MeasurementSpec":
        """From the ``stm`` config section (``map_pixels``, ``tip_height``, ``measurement``)."""
        m = stm.measurement
        h, dh = float(stm.tip_height), float(m.tip_height_jitter)
        if h - dh <= 0:
            raise InputError(f"stm.tip_height − stm.measurement.tip_height_jitter must stay positive, got {h} − {dh}")
        return cls(pixels=int(stm.map_pixels), pixel_size=tuple(m.pixel_size), rotation_deg=tuple(m.rotation_deg),
                   tip_height=(h - dh, h + dh), scale_error_max=float(m.scale_error_max),
                   heterostrain=tuple(m.heterostrain), twist_delta_max_deg=float(m.twist_delta_max_deg),
                   drift_max=float(m.drift_max), creep_max=float(m.creep_max), noise_white=tuple(m.noise_white),
                   noise_pink=tuple(m.noise_pink), noise_lines=tuple(m.noise_lines),
                   cell=None if cell is None else tuple(map(tuple, np.asarray(cell, float).tolist())))

    def replace(self, **kw: Any) -> "MeasurementSpec":
        return dataclasses.replace(self, **kw)

    def nominal(self) -> ScanParams:
        """The noiseless, undistorted scan at the centre of each range (rotation 0, origin 0)."""
        return ScanParams(pixels=self.pixels, pixel_size=float(np.mean(self.pixel_size)),
                          tip_height=float(np.mean(self.tip_height)))


def draw_scan(rng: np.random.Generator, spec: MeasurementSpec) -> ScanParams:
    """One acquisition drawn from ``spec`` with ``rng`` (a fixed sequence of draws: reproducible)."""
    u = rng.uniform
    pix = float(u(*spec.pixel_size))
    rot = float(u(*spec.rotation_deg)) % 360.0
    f = u(0.0, 1.0, 2)
    origin = (0.0, 0.0) if spec.cell is None else tuple(float(v) for v in f @ np.asarray(spec.cell, float))
    tip = float(u(*spec.tip_height))
    scale = tuple(float(v) for v in 1.0 + u(-1.0, 1.0, 2) * spec.scale_error_max)
    eps = float(u(*spec.heterostrain))
    psi = float(u(0.0, 180.0))
    dth = float(u(-1.0, 1.0) * spec.twist_delta_max_deg)
    dmag, dang = float(u(0.0, 1.0) * spec.drift_max), float(u(0.0, 2 * math.pi))
    creep = float(u(0.0, 1.0) * spec.creep_max)
    nw, npk, nl = float(u(*spec.noise_white)), float(u(*spec.noise_pink)), float(u(*spec.noise_lines))
    seed = int(rng.integers(0, 2**31 - 1))
    return ScanParams(pixels=spec.pixels, pixel_size=pix, rotation_deg=rot, origin=origin,  # type: ignore[arg-type]
                      tip_height=tip, scale=scale, heterostrain=eps, strain_angle_deg=psi,  # type: ignore[arg-type]
                      twist_delta_deg=dth, drift=(dmag * math.cos(dang), dmag * math.sin(dang)), creep=creep,
                      noise_white=nw, noise_pink=npk, noise_lines=nl, noise_seed=seed)


def scan_rng(dataset_seed: int, point_hash: int, bias_index: int, variation: int) -> np.random.Generator:
    """The generator of one image's acquisition: ``SeedSequence([seed, 7, point, bias, variation])`` (contract A)."""
    return np.random.default_rng(np.random.SeedSequence([int(dataset_seed), 7, int(point_hash), int(bias_index),
                                                         int(variation)]))


# ------------------------------------------------------------------------------------------------
# rendering


def _spot_radius(tip_height: float, orbital: str) -> float:
    rr = np.linspace(0.0, 30.0, 3001)
    prof = spot_profile(rr, tip_height, orbital)
    below = prof < SPOT_CUTOFF
    return float(rr[np.argmax(below)]) if below.any() else 30.0


def _atoms_near(geom: CellGeometry, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Tiled atom positions within ``radius`` of ``centre`` and their cell-atom indices."""
    cell = geom.cell
    inv = np.linalg.inv(cell)
    corners = centre + radius * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], float)
    f = corners @ inv
    lo = np.floor(f.min(axis=0)).astype(int) - 1
    hi = np.ceil(f.max(axis=0)).astype(int) + 1
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    shifts = np.stack([n1.ravel(), n2.ravel()], axis=1) @ cell
    # keep only tiles whose cell can reach the disc
    cell_rad = 0.5 * (np.linalg.norm(cell[0]) + np.linalg.norm(cell[1]))
    cc = shifts + 0.5 * (cell[0] + cell[1])
    shifts = shifts[np.linalg.norm(cc - centre, axis=1) <= radius + cell_rad]
    pts = (geom.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    atom = np.tile(np.arange(geom.n_atoms), len(shifts))
    keep = np.linalg.norm(pts - centre, axis=1) <= radius
    return pts[keep], atom[keep]


def _scan_time(u: np.ndarray, n: int, p: float) -> np.ndarray:
    """Acquisition time t ∈ [0, 1) of the pixel under nominal positions u (frame centre 0)."""
    L = n * p
    iy = np.clip((u[:, 1] + 0.5 * L) / p, 0.0, n - 1e-9)
    ix = np.clip((u[:, 0] + 0.5 * L) / p, 0.0, n - 1e-9)
    return (np.floor(iy) + ix / n) / n


def _displacement(t: np.ndarray, scan: ScanParams, A: np.ndarray) -> np.ndarray:
    d = np.outer(t, np.asarray(scan.drift, float))
    if scan.creep:
        d = d + np.outer(scan.creep * (1.0 - np.exp(-t / CREEP_TAU)), A[:, 1])
    return d


def splat(u_atoms: np.ndarray, w: np.ndarray, n: int, p: float, metric: np.ndarray, tip_height: float,
          orbital: str = "slater") -> np.ndarray:
    """:math:`I[iy, ix] = \\sum_a w_a\\, s(\\rho_a)` at the pixel centres of an n × n frame of pitch p
    (frame centre 0), :math:`\\rho^2 = \\Delta\\mathbf u^T G\\, \\Delta\\mathbf u` with the metric G = AᵀA
    of the piezo map.

    Computed as a convolution on a periodic box of n + 2K pixels (K pixels beyond the spot radius
    :data:`SPOT_CUTOFF` on each side, so nothing wraps into the frame): the atoms' Fourier
    coefficients :math:`\\hat\\rho_m = \\sum_a w_a e^{-2\\pi i\\,\\mathbf m\\cdot\\mathbf x_a/L_b}` by a
    finufft type-1 transform, times the DFT of the spot sampled on the box grid, inverse FFT. This
    is exact up to the spot's spectrum beyond the pixel Nyquist frequency π/p (5·10⁻⁴ of its k = 0
    value at p = 0.5 Å, h = 2.8 Å; 7·10⁻³ at h = 1.8 Å; the direct sum agrees to 2.5·10⁻⁴ of the map
    maximum at p = 0.45 Å, h = 3 Å) and costs O(M + n² log n) instead of O(M K²).
    """
    import finufft

    from moireu.stm.ft import default_threads

    rcut = _spot_radius(tip_height, orbital)
    smin = math.sqrt(max(float(np.linalg.eigvalsh(metric).min()), 1e-12))
    K = int(math.ceil(rcut / (smin * p))) + 1
    nb = n + 2 * K
    L = n * p
    xb = (u_atoms[:, 0] + 0.5 * L) / p + K - 0.5  # box grid units: pixel j centre at j
    yb = (u_atoms[:, 1] + 0.5 * L) / p + K - 0.5
    inside = (xb > -0.5) & (xb < nb - 0.5) & (yb > -0.5) & (yb < nb - 0.5)
    if not inside.any():
        return np.zeros((n, n))
    X = 2 * np.pi * xb[inside] / nb
    Y = 2 * np.pi * yb[inside] / nb
    c = np.asarray(w, float)[inside].astype(np.complex128)
    f = finufft.nufft2d1(X, Y, c, (nb, nb), eps=1e-8, isign=-1, modeord=1, nthreads=default_threads())
    j = np.fft.fftfreq(nb, d=1.0 / nb) * p  # wrapped offsets (Å)
    DX, DY = np.meshgrid(j, j)  # [y, x]
    rho2 = metric[0, 0] * DX * DX + 2 * metric[0, 1] * DX * DY + metric[1, 1] * DY * DY
    S = spot_profile(np.sqrt(rho2), tip_height, orbital)
    img = np.fft.ifft2(f.T * np.fft.fft2(S)).real
    return img[K:K + n, K:K + n]


def add_noise(clean: np.ndarray, scan: ScanParams) -> np.ndarray:
    """The clean map plus white, 1/f (scan time) and scan-line noise (module docstring)."""
    if not (scan.noise_white or scan.noise_pink or scan.noise_lines):
        return clean
    rng = np.random.default_rng(np.random.SeedSequence([int(scan.noise_seed), 11]))
    ny, nx = clean.shape
    sig = float(clean.std()) or 1.0
    out = clean.copy()
    white = rng.standard_normal((ny, nx))
    if scan.noise_white:
        out += scan.noise_white * sig * white
    if scan.noise_pink:
        n = nx * ny
        f = np.fft.rfftfreq(n)
        amp = np.zeros_like(f)
        amp[1:] = 1.0 / np.sqrt(f[1:])
        spec = amp * (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f)))
        series = np.fft.irfft(spec, n)
        series /= series.std() or 1.0
        out += scan.noise_pink * sig * series.reshape(ny, nx)
    if scan.noise_lines:
        out += scan.noise_lines * sig * rng.standard_normal(ny)[:, None]
    return out


def simulate_map(geom: Any, ldos: np.ndarray, scan: ScanParams) -> MapData:
    """Render the per-atom LDOS of one moiré cell as the STM map of the acquisition ``scan``.

    Parameters
    ----------
    geom : CellGeometry, lattice Geometry/TightBindingModel, or dict
        The moiré cell: ``positions`` (N, 3) Å, ``cell`` (2, 2), ``layer``, ``sublattice`` (N,).
    ldos : ndarray (N,)
        Per-atom LDOS at one energy.
    scan : ScanParams

    Returns
    -------
    MapData
        ``values`` (pixels, pixels), square nominal pixels of ``scan.pixel_size`` Å, ``meta`` holding the
        scan parameters (``meta["scan"]``) and ``source = "simulated"``.
    """
    g = CellGeometry.of(geom)
    w = np.asarray(ldos, float).reshape(-1)
    if w.shape != (g.n_atoms,):
        raise InputError(f"ldos must have one value per atom of the cell ({g.n_atoms}), got shape {np.shape(ldos)}")
    if not np.all(np.isfinite(w)):
        raise InputError("ldos contains NaN or inf")
    n, p = int(scan.pixels), float(scan.pixel_size)
    A = scan.piezo
    Ainv = np.linalg.inv(A)
    o = np.asarray(scan.origin, float)
    rcut = _spot_radius(scan.tip_height, scan.orbital)
    reach = 0.5 * math.sqrt(2.0) * n * p * max(scan.scale) + rcut + math.hypot(*scan.drift) + abs(scan.creep) + 1.0
    pts, atom = _atoms_near(g, o, reach)
    Minv = g.moire_distortion_inverse(scan.twist_delta_deg, scan.heterostrain, scan.strain_angle_deg)
    vals = w[atom] if Minv is None else g.equivalent_values(atom, pts @ Minv.T, w)
    u = (pts - o) @ Ainv.T
    if scan.drift != (0.0, 0.0) or scan.creep:
        for _ in range(2):  # fixed point u = A⁻¹(r − o − d(t(u)))
            u = (pts - o - _displacement(_scan_time(u, n, p), scan, A)) @ Ainv.T
    clean = splat(u, vals, n, p, A.T @ A, scan.tip_height, scan.orbital)
    values = add_noise(clean, scan)
    return MapData(values, (p, p), {"source": "simulated", "scan": scan.to_dict()})


def render_points(table: AtomTable, pixel_size: float, tip_height: float = 3.0,
                  orbital: str = "slater") -> MapData:
    """A per-atom table rendered as an STM map (the largest centred square inside its bounding box),
    so that tables go through the same measurement model as pixel maps."""
    xy = table.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    side = float(min(hi - lo))
    n = int(side // pixel_size)
    if n < 8:
        raise InputError(f"{table.source}: the atoms span {side:.3g} Å, less than 8 pixels of {pixel_size} Å")
    c = 0.5 * (lo + hi)
    img = splat(xy - c, table.values, n, float(pixel_size), np.eye(2), tip_height, orbital)
    return MapData(img, (pixel_size, pixel_size), dict(table.meta) | {"rendered_from": "atom table",
                                                                       "tip_height": tip_height})


def acquire(geom: Any, ldos: np.ndarray, scan: ScanParams, transform: Any) -> tuple[np.ndarray, dict[str, float]]:
    """One training-style image: :func:`simulate_map` then :func:`moireu.stm.align.map_to_image`.

    Returns the float32 image (ky, kx) and its store columns (``scan.columns()`` + ``measured_twist_deg``,
    ``align_quality``). This is what the dataset renders per image; with a store's ``ldos`` and geometry
    (contract D) and a :func:`corrupted_spec` it renders the robustness table's images without HF.
    """
    from moireu.stm.align import map_to_image

    img, info = map_to_image(simulate_map(geom, ldos, scan), transform)
    return np.asarray(img.values, np.float32), scan.columns() | {"measured_twist_deg": float(info.twist_deg),
                                                                 "align_quality": float(info.quality)}


# ------------------------------------------------------------------------------------------------
# corruptions (robustness table)


def _noise(key: str, level: float) -> Callable[[MeasurementSpec], MeasurementSpec]:
    return lambda s: s.replace(**{key: (level, level)})


#: Named measurement perturbations: each maps the training spec to a perturbed spec (the perturbation
#: is applied on top of the spec's own ranges, except noise levels, which are set).
CORRUPTIONS: dict[str, Callable[[MeasurementSpec], MeasurementSpec]] = {
    "clean": lambda s: s.replace(noise_white=(0.0, 0.0), noise_pink=(0.0, 0.0), noise_lines=(0.0, 0.0)),
    "white_snr10": _noise("noise_white", 0.1),
    "white_snr3": _noise("noise_white", 1.0 / 3.0),
    "pink_1f": _noise("noise_pink", 0.2),
    "scan_lines": _noise("noise_lines", 0.2),
    "drift": lambda s: s.replace(drift_max=3.0, creep_max=2.0),
    "piezo_3pct": lambda s: s.replace(scale_error_max=0.03),
    "heterostrain_0.3pct": lambda s: s.replace(heterostrain=(0.003, 0.003)),
    "twist_0.1deg": lambda s: s.replace(twist_delta_max_deg=0.1),
    "tip_height_1A": lambda s: s.replace(tip_height=(s.tip_height[0] - 1.0 + 1e-9 if s.tip_height[0] > 1.0 else
                                                     s.tip_height[0], s.tip_height[1] + 1.0)),
}


def corrupted_spec(spec: MeasurementSpec, name: str) -> MeasurementSpec:
    """``spec`` under the named corruption of :data:`CORRUPTIONS` (InputError for an unknown name)."""
    if name not in CORRUPTIONS:
        raise InputError(f"unknown corruption {name!r}; allowed: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](spec)


# ------------------------------------------------------------------------------------------------
# predict entry point


def user_map_data(src: Any, pixel_size: Any = None, *, channel: str | None = None, direction: str = "forward",
                  table_pixel_size: float = 0.45, tip_height: float = 3.0, bias: float | None = None) -> MapData:
    """A user's map (file, 2-D array, MapData or AtomTable) as a :class:`MapData`.

    Files are read by :func:`moireu.io.read_map` (format by suffix; ``bias`` (V) picks the map of a
    grid-spectroscopy file); a 2-D array needs ``pixel_size``;
    an (M, 3) array or an atom table is rendered as a map first (:func:`render_points`, pixel
    ``table_pixel_size`` Å, tip height ``tip_height`` Å); ``pixel_size`` overrides a MapData's own.
    """
    from moireu.io import read_map

    if isinstance(src, (MapData, AtomTable)):
        data: Any = src
    elif isinstance(src, np.ndarray):
        if src.ndim == 2 and src.shape[1] == 3 and pixel_size is None:
            data = AtomTable(src[:, :2], src[:, 2], {"source": "array"})
        else:
            data = MapData(src, pixel_size, {"source": "array"})
    elif isinstance(src, (str, Path)):
        data = read_map(src, pixel_size=pixel_size, channel=channel, direction=direction, bias=bias)
    else:
        raise InputError(f"a map must be a file path, a 2-D array, MapData or AtomTable, got {type(src).__name__}")
    if isinstance(data, AtomTable):
        data = render_points(data, table_pixel_size, tip_height)
    elif pixel_size is not None and isinstance(src, (MapData,)):
        data = MapData(data.values, pixel_size, data.meta)
    return data


def user_map_image(src: Any, transform: Any, pixel_size: Any = None, *, channel: str | None = None,
                   direction: str = "forward", table_pixel_size: float = 0.45, tip_height: float = 3.0,
                   attrs: dict[str, Any] | None = None, bias: float | None = None) -> tuple[Any, Any]:
    """A user's map (file, 2-D array, MapData or AtomTable) → ``(image, AlignInfo)`` on the training window.

    The map is read by :func:`user_map_data` (same arguments) and then goes through
    :func:`moireu.stm.align.map_to_image` exactly like every training image.
    """
    from moireu.stm.align import map_to_image

    data = user_map_data(src, pixel_size, channel=channel, direction=direction, table_pixel_size=table_pixel_size,
                         tip_height=tip_height, bias=bias)
    return map_to_image(data, transform, attrs=attrs)


def user_map_to_image(src: Any, image_transform: Any, pixel_size: Any = None, channel: str | None = None,
                      direction: str = "forward", attrs: dict[str, Any] | None = None,
                      bias: float | None = None) -> Any:
    """:func:`user_map_image` without the :class:`~moireu.stm.align.AlignInfo` (which is in the image's
    ``align_*`` attributes)."""
    img, _ = user_map_image(src, image_transform, pixel_size, channel=channel, direction=direction, attrs=attrs,
                            bias=bias)
    return img
