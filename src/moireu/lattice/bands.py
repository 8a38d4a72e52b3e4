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


def fermi_dirac(e: np.ndarray, mu: float, kT: float) -> np.ndarray:
    """Occupation 1/(exp((e−μ)/kT) + 1), overflow-safe."""
    x = np.clip((np.asarray(e) - mu) / kT, -700.0, 700.0)
    return 0.5 * (1.0 - np.tanh(0.5 * x))


def fermi_level(eigs: np.ndarray, weights: np.ndarray, n_electrons: float, kT: float,
                degeneracy: float = 1.0, tol: float = 1e-13) -> float:
    """Chemical potential μ with Σ_k w_k Σ_n g f((E_nk − μ)/kT) = n_electrons, by bisection.

    Parameters
    ----------
    eigs : (nk, ..., nb) eigenvalues (eV); any middle axes (e.g. spin) are summed over
    weights : (nk,) k weights summing to 1
    n_electrons : electrons per cell
    kT : temperature (eV), > 0
    degeneracy : g, states per eigenvalue (2 for spin-degenerate bands, 1 for spin-resolved)
    """
    eigs = np.asarray(eigs, float)
    w = np.asarray(weights, float).reshape((-1,) + (1,) * (eigs.ndim - 1))
    nstates = degeneracy * eigs[0].size
    if not 0.0 <= n_electrons <= nstates:
        raise InputError(f"{n_electrons} electrons do not fit in {nstates} states")
    if not kT > 0:
        raise InputError(f"kT must be > 0, got {kT}")

    def count(mu: float) -> float:
        return float(degeneracy * np.sum(w * fermi_dirac(eigs, mu, kT)))

    lo, hi = float(eigs.min()) - 40 * kT - 1.0, float(eigs.max()) + 40 * kT + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if count(mid) < n_electrons:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


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
