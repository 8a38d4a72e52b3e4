"""Brillouin-zone sampling, band structures, DOS and the Fermi level.

Filling ν counts electrons per moiré cell relative to charge neutrality; the neutral cell holds one
pz electron per carbon, i.e. N electrons (both spins) for N orbitals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moireu.errors import InputError


def _lattice(cell: np.ndarray):
    import sisl

    return sisl.Lattice(np.array([[*cell[0], 0.0], [*cell[1], 0.0], [0.0, 0.0, 30.0]]))


def kmesh(model, mesh, trs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Monkhorst–Pack mesh (sisl), time-reversal reduced when ``trs``.

    Returns
    -------
    k_frac : (nk, 2) fractional coordinates w.r.t. the reciprocal vectors
    weights : (nk,) summing to 1
    """
    import sisl

    if isinstance(mesh, (int, np.integer)):
        mesh = (int(mesh), int(mesh))
    mesh = tuple(int(m) for m in mesh)
    if len(mesh) != 2 or min(mesh) < 1:
        raise InputError(f"k-mesh must be two integers ≥ 1, got {mesh!r}")
    cell = model.cell if hasattr(model, "cell") else np.asarray(model)
    bz = sisl.MonkhorstPack(_lattice(cell), [mesh[0], mesh[1], 1], trs=trs)
    k = np.asarray(bz.k)[:, :2].copy()
    w = np.asarray(bz.weight, float).copy()
    return k, w / w.sum()


HIGH_SYMMETRY = {"Γ": (0.0, 0.0), "M": (0.5, 0.0), "K": (2.0 / 3.0, 1.0 / 3.0), "K'": (1.0 / 3.0, 2.0 / 3.0)}


def band_path(model, npts: int = 90, points=("K", "Γ", "M", "K")) -> tuple[np.ndarray, np.ndarray, list[float], list[str]]:
    """Piecewise-straight path through high-symmetry points of the hexagonal BZ.

    Points are spaced uniformly in Cartesian length. Returns (k_frac (npts,2), distance (npts,) Å⁻¹,
    tick positions, tick labels).
    """
    if npts < len(points):
        raise InputError(f"band path needs at least {len(points)} points, got {npts}")
    corners = np.array([HIGH_SYMMETRY[p] for p in points], float)
    cart = corners @ model.reciprocal
    seg = np.linalg.norm(np.diff(cart, axis=0), axis=1)
    total = seg.sum()
    s = np.linspace(0.0, total, npts)
    ticks = np.concatenate([[0.0], np.cumsum(seg)])
    k = np.empty((npts, 2))
    for n, x in enumerate(s):
        m = min(np.searchsorted(ticks, x, side="right") - 1, len(seg) - 1)
        f = (x - ticks[m]) / seg[m]
        k[n] = corners[m] + f * (corners[m + 1] - corners[m])
    return k, s, list(ticks), list(points)


#: ``|E − μ|``/kT beyond which an occupation is taken as exactly 0 or 1 (e^{−50} ≈ 2·10⁻²²)
FD_CLIP = 50.0
#: relative accuracy of the electron count at the Fermi level
COUNT_TOL = 1e-12


def fermi_dirac(e: np.ndarray, mu: float, kT: float) -> np.ndarray:
    r"""Fermi–Dirac occupation :math:`f = 1/(e^{(E-\mu)/kT}+1) = \tfrac12[1-\tanh((E-\mu)/2kT)]`.

    The one implementation of the package (the SCF, the band summaries and the LDOS use it).
    Beyond :data:`FD_CLIP` kT from μ the occupation is exactly 0 or 1; overflow-safe.
    """
    x = np.clip((np.asarray(e, float) - mu) / kT, -FD_CLIP, FD_CLIP)
    return 0.5 * (1.0 - np.tanh(0.5 * x))


@dataclass(frozen=True)
class FermiLevel:
    """Chemical potential and the band edges around it (eV).

    Attributes
    ----------
    mu : μ (see :func:`fermi_level` for the convention in a gap)
    homo : highest state below μ (the valence edge in a gap)
    lumo : lowest state above μ (the conduction edge; ``inf`` when every state is filled)
    gapped : μ lies in a gap of the zero-temperature filling (set mid-gap)
    """

    mu: float
    homo: float
    lumo: float
    gapped: bool

    @property
    def gap(self) -> float:
        """lumo − homo (≥ 0; 0 when the filling is fractional)."""
        return float(max(self.lumo - self.homo, 0.0)) if math.isfinite(self.lumo) else 0.0


def _sorted_states(eigs: np.ndarray, weights: np.ndarray, degeneracy: float) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(eigs, float)
    w = np.asarray(weights, float)
    if e.ndim < 1 or e.shape[0] != w.shape[0]:
        raise InputError(f"{w.shape[0]} k weights for eigenvalues of shape {e.shape}")
    e = e.reshape(len(w), -1)
    ww = np.broadcast_to(degeneracy * w[:, None], e.shape)
    order = np.argsort(e, axis=None, kind="stable")
    return e.ravel()[order], ww.ravel()[order]


def fermi_solve(eigs: np.ndarray, weights: np.ndarray, n_electrons: float, kT: float,
                degeneracy: float = 1.0) -> FermiLevel:
    r"""μ with :math:`g\sum_k w_k\sum_n f(E_{nk}-\mu) = N_e`, and the band edges around it.

    Parameters
    ----------
    eigs : (nk, ...) eigenvalues (eV); all axes after the first are summed (e.g. spin, band). A
        subset of the spectrum (the lowest states at every k) is fine as long as it contains every
        state below μ + :data:`FD_CLIP` kT.
    weights : (nk,) k weights (normally summing to 1)
    n_electrons : electrons per cell
    kT : temperature (eV), > 0
    degeneracy : g, states per eigenvalue (2 for spin-degenerate bands, 1 for spin-resolved)

    Notes
    -----
    **Convention in a gap.** When the zero-temperature filling ends exactly at a state (HOMO) and
    the next state (LUMO) lies higher, the exact finite-temperature root is
    :math:`\mu = \tfrac12(E_{HOMO}+E_{LUMO}) + \tfrac{kT}{2}\ln(g_c/g_v) + O(e^{-\Delta/2kT})`
    (g_c, g_v the weights of the edge states), i.e. mid-gap as kT → 0. Whenever mid-gap satisfies
    the electron count to :data:`COUNT_TOL` (relative), μ is set to **mid-gap exactly**; a bisection
    that stops as soon as the count is met would stop anywhere in the gap where the occupations
    have saturated (≈ 25 kT above the valence edge), which is what it did before. Otherwise
    (metallic filling or a gap of a few kT) μ is the bisection root of the count, to 1e-14 eV.
    """
    if not (math.isfinite(kT) and kT > 0):
        raise InputError(f"kT must be > 0 eV, got {kT!r}")
    ef, wf = _sorted_states(eigs, weights, degeneracy)
    cum = np.cumsum(wf)
    total = float(cum[-1]) if len(cum) else 0.0
    if not (math.isfinite(n_electrons) and -1e-9 <= n_electrons <= total * (1 + 1e-12) + 1e-9):
        raise InputError(f"{n_electrons} electrons do not fit in {total:.6g} states")
    tol = COUNT_TOL * max(1.0, abs(n_electrons))
    window = FD_CLIP * kT

    def count(mu: float) -> float:
        a = int(np.searchsorted(ef, mu - window))
        b = int(np.searchsorted(ef, mu + window, side="right"))
        return (float(cum[a - 1]) if a > 0 else 0.0) + float(wf[a:b] @ fermi_dirac(ef[a:b], mu, kT))

    # zero-temperature filling: the states up to index idx hold n_electrons (within tol)
    idx = min(int(np.searchsorted(cum, n_electrons - tol)), len(ef) - 1)
    if abs(float(cum[idx]) - n_electrons) <= tol:
        homo = float(ef[idx])
        lumo = float(ef[idx + 1]) if idx + 1 < len(ef) else math.inf
        if not math.isfinite(lumo):
            return FermiLevel(homo + window, homo, lumo, True)
        mid = 0.5 * (homo + lumo)
        if lumo > homo and abs(count(mid) - n_electrons) <= tol:
            return FermiLevel(mid, homo, lumo, True)
    lo, hi = float(ef[max(idx - 1, 0)]) - window, float(ef[idx]) + window
    while count(lo) > n_electrons:
        lo -= window
    while count(hi) < n_electrons and hi < ef[-1] + 2 * window:
        hi += window
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if count(mid) < n_electrons:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-14:
            break
    mu = 0.5 * (lo + hi)
    below, above = ef[ef <= mu], ef[ef > mu]
    return FermiLevel(mu, float(below[-1]) if below.size else -math.inf,
                      float(above[0]) if above.size else math.inf, False)


def fermi_level(eigs: np.ndarray, weights: np.ndarray, n_electrons: float, kT: float,
                degeneracy: float = 1.0) -> float:
    """Chemical potential μ (eV) of :func:`fermi_solve` (mid-gap in a gap; see its Notes)."""
    return fermi_solve(eigs, weights, n_electrons, kT, degeneracy).mu


def dos(eigs: np.ndarray, weights: np.ndarray, energies: np.ndarray, eta: float,
        degeneracy: float = 2.0) -> np.ndarray:
    """Gaussian-broadened density of states per cell, states/eV: g Σ_k w_k Σ_n G_η(E − E_nk)."""
    eigs = np.asarray(eigs, float)
    w = np.asarray(weights, float)
    out = np.zeros(len(energies))
    norm = 1.0 / (math.sqrt(2 * math.pi) * eta)
    for ek, wk in zip(eigs.reshape(len(w), -1), w):
        out += wk * norm * np.exp(-0.5 * ((energies[:, None] - ek[None, :]) / eta) ** 2).sum(axis=1)
    return degeneracy * out


@dataclass(frozen=True)
class BandSummary:
    """Central-band characteristics of a TBG spectrum (energies in eV unless the key says meV)."""

    theta_deg: float
    n_atoms: int
    interlayer_distance: float
    central_bandwidth_meV: float
    gap_below_meV: float
    gap_above_meV: float
    fermi_level_eV: float

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["remote_gap_meV"] = min(self.gap_below_meV, self.gap_above_meV)
        return d


def central_bands(eigs: np.ndarray, n_orb: int, n_central: int = 4) -> np.ndarray:
    """Slice out the ``n_central`` bands around neutrality (spin-less band index N/2−2 … N/2+1)."""
    h = n_orb // 2
    return np.asarray(eigs)[..., h - n_central // 2: h + n_central // 2]


def summarize_bands(model, eigs_all: np.ndarray, weights: np.ndarray | None = None, eigs_mesh: np.ndarray | None = None,
                    kT: float = 0.001) -> BandSummary:
    """Width of the four central bands, gaps to the remote bands and E_F at ν = 0.

    ``eigs_all`` holds eigenvalues (nk, N) from every k sampled (path and/or mesh); the Fermi level
    uses ``eigs_mesh``/``weights`` (a proper BZ average) when given, else the midpoint of the central bands.
    """
    n = model.n_orb
    e = np.asarray(eigs_all)
    c = central_bands(e, n)
    width = c.max() - c.min()
    h = n // 2
    below = c.min() - e[..., h - 3].max()
    above = e[..., h + 2].min() - c.max()
    if eigs_mesh is not None and weights is not None:
        ef = fermi_level(eigs_mesh, weights, n_electrons=float(n), kT=kT, degeneracy=2.0)
    else:
        ef = 0.5 * (c.max() + c.min())
    return BandSummary(model.theta_deg, n, model.interlayer_distance, 1e3 * width, 1e3 * below, 1e3 * above, ef)
