"""Local density of states from a (mean-field) spectrum.

The tight-binding / Hartree–Fock orbital basis is one p_z orbital per carbon atom, so the LDOS on
atom *i* is (Tersoff & Hamann, PRB 31, 805 (1985), with the orbital as the tip-sampled state)

.. math::

    \\mathrm{LDOS}_\\sigma(r_i, E) = \\sum_{n, k} w_k\\, |\\psi_{nk\\sigma}(i)|^2\\,
        \\delta_\\eta(E - E_{nk\\sigma}),
    \\qquad \\mathrm{LDOS}(r_i, E) = \\sum_\\sigma \\mathrm{LDOS}_\\sigma(r_i, E),

with k-point weights :math:`\\sum_k w_k = 1`. Units: states per eV per atom (per moiré cell when
summed over the atoms of one cell). Because every eigenvector is normalised,
:math:`\\sum_i |\\psi_{nk\\sigma}(i)|^2 = 1` and the sum rule

.. math::  \\sum_i \\mathrm{LDOS}(r_i, E) = \\mathrm{DOS}(E) = \\sum_{n,k,\\sigma} w_k\\, \\delta_\\eta(E - E_{nk\\sigma})

holds exactly (per spin as well).

Broadening kernels :math:`\\delta_\\eta`:

* Lorentzian: :math:`\\frac{1}{\\pi}\\frac{\\eta}{x^2 + \\eta^2}` (η = half width at half maximum),
* Gaussian: :math:`\\frac{1}{\\sqrt{2\\pi}\\,\\eta} e^{-x^2 / 2\\eta^2}` (η = standard deviation).

The core (:func:`ldos_from_spectrum`) works on plain arrays so it can be tested with any
Hermitian spectrum; :func:`ldos_at` is a thin wrapper around a Hartree–Fock solution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from moireu.errors import InputError

Kind = Literal["lorentzian", "gaussian"]
KINDS = ("lorentzian", "gaussian")


def broadening(x: np.ndarray, eta: float, kind: str = "lorentzian") -> np.ndarray:
    """Normalised broadened delta function :math:`\\delta_\\eta(x)` (1/eV), see the module docstring.

    Parameters
    ----------
    x : ndarray
        Energy differences (eV).
    eta : float
        Width (eV): HWHM for ``"lorentzian"``, standard deviation for ``"gaussian"``.
    kind : {"lorentzian", "gaussian"}
    """
    _check_eta_kind(eta, kind)
    x = np.asarray(x, dtype=float)
    if kind == "lorentzian":
        return (eta / np.pi) / (x * x + eta * eta)
    return np.exp(-0.5 * (x / eta) ** 2) / (np.sqrt(2.0 * np.pi) * eta)


def _check_eta_kind(eta: float, kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"broadening kind {kind!r} is not supported; allowed: {', '.join(KINDS)}")
    if not (np.isfinite(eta) and eta > 0):
        raise InputError(f"broadening eta must be a positive number of eV, got {eta!r}")


def _as_spectrum(eigvals: np.ndarray, eigvecs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    e = np.asarray(eigvals, dtype=float)
    if e.ndim == 2:  # (nk, N): spinless → one spin channel
        e = e[:, None, :]
        if eigvecs is not None:
            eigvecs = np.asarray(eigvecs)[:, None]
    if e.ndim != 3:
        raise InputError(f"eigenvalues must have shape (nk, n_spin, N) or (nk, N), got {np.shape(eigvals)}")
    if eigvecs is not None:
        v = np.asarray(eigvecs)
        if v.ndim != 4 or v.shape[:2] != e.shape[:2] or v.shape[-1] != e.shape[-1]:
            raise InputError(f"eigenvectors shape {v.shape} does not match eigenvalues {e.shape} "
                             "(expected (nk, n_spin, N_orb, N_band), columns are eigenvectors)")
        eigvecs = v
    return e, eigvecs


def dos_from_spectrum(eigvals: np.ndarray, weights: np.ndarray, energies: np.ndarray | float,
                      eta: float, kind: str = "lorentzian", per_spin: bool = False) -> np.ndarray:
    """Broadened density of states :math:`\\mathrm{DOS}(E)=\\sum_{n,k,\\sigma} w_k\\,\\delta_\\eta(E-E_{nk\\sigma})`.

    Parameters
    ----------
    eigvals : ndarray (nk, n_spin, N) or (nk, N)
    weights : ndarray (nk,)
        k-point weights (they need not be normalised; they are used as given).
    energies : float or ndarray (nE,)
    eta, kind : see :func:`broadening`.
    per_spin : bool
        Return (nE, n_spin) instead of the spin sum (nE,).

    Returns
    -------
    ndarray
        States per eV per cell.
    """
    e, _ = _as_spectrum(eigvals, None)
    w = _check_weights(weights, e.shape[0])
    E = np.atleast_1d(np.asarray(energies, dtype=float))
    d = broadening(E[:, None, None, None] - e[None], eta, kind)  # (nE, nk, ns, N)
    out = np.einsum("k,eksn->es", w, d)
    return out if per_spin else out.sum(axis=1)


def _check_weights(weights: np.ndarray, nk: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.shape != (nk,):
        raise InputError(f"k weights must have shape ({nk},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("k weights must be finite and non-negative")
    return w


def ldos_from_spectrum(eigvals: np.ndarray, eigvecs: np.ndarray, weights: np.ndarray,
                       energies: np.ndarray | float, eta: float, kind: str = "lorentzian",
                       per_spin: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Per-atom LDOS from eigenvalues and eigenvectors (see the module docstring for the formula).

    Parameters
    ----------
    eigvals : ndarray (nk, n_spin, N)
        Band energies (eV); a spinless (nk, N) array is treated as one spin channel.
    eigvecs : ndarray (nk, n_spin, N, N)
        Eigenvectors as **columns**, ``eigvecs[k, s, i, n]`` = ψ_nks(i) (the ``numpy.linalg.eigh``
        convention).
    weights : ndarray (nk,)
        k-point weights (normally summing to 1).
    energies : float or ndarray (nE,)
        Absolute energies (eV) at which to evaluate, e.g. E_F + biases.
    eta : float
        Broadening (eV).
    kind : {"lorentzian", "gaussian"}
    per_spin : bool
        If True return (nE, n_spin, N), else the spin sum (nE, N).
    out : ndarray, optional
        Accumulate into this (nE, n_spin, N) array (used for k-chunked evaluation).

    Returns
    -------
    ndarray
        LDOS in states / eV / atom.
    """
    e, v = _as_spectrum(eigvals, eigvecs)
    nk, ns, nb = e.shape
    w = _check_weights(weights, nk)
    E = np.atleast_1d(np.asarray(energies, dtype=float))
    if E.ndim != 1 or not np.all(np.isfinite(E)):
        raise InputError(f"energies must be a finite 1-D list, got {energies!r}")
    norb = v.shape[2]
    acc = np.zeros((E.size, ns, norb)) if out is None else out
    for k in range(nk):
        for s in range(ns):
            prob = np.abs(v[k, s]) ** 2  # (N_orb, N_band)
            d = broadening(E[:, None] - e[k, s][None, :], eta, kind)  # (nE, N_band)
            acc[:, s, :] += w[k] * (d @ prob.T)
    if out is not None:
        return acc
    return acc if per_spin else acc.sum(axis=1)


def check_energies_in_spectrum(energies: np.ndarray, eigvals: np.ndarray, fermi_level: float | None = None,
                               margin: float = 0.0) -> None:
    """Raise :class:`InputError` if an energy lies outside [min E_nk, max E_nk] (± ``margin``).

    Energies are named as biases relative to ``fermi_level`` when it is given.
    """
    e = np.asarray(eigvals, dtype=float)
    lo, hi = float(e.min()) - margin, float(e.max()) + margin
    for E in np.atleast_1d(energies):
        if not lo <= E <= hi:
            if fermi_level is not None:
                raise InputError(f"bias {1e3 * (E - fermi_level):.4g} meV (E = {E:.6g} eV) is outside the computed "
                                 f"spectrum: allowed biases are {1e3 * (lo - fermi_level):.4g} … "
                                 f"{1e3 * (hi - fermi_level):.4g} meV from E_F = {fermi_level:.6g} eV")
            raise InputError(f"energy {E:.6g} eV is outside the computed spectrum [{lo:.6g}, {hi:.6g}] eV")


def ldos_at(system: Any, res: Any, energies: Iterable[float] | None = None, *,
            biases: Iterable[float] | None = None, eta: float = 0.004, kind: str = "lorentzian",
            kmesh: tuple[int, int] = (4, 4), per_spin: bool = False, chunk: int = 4,
            allow_unconverged: bool = False, progress: bool = False) -> np.ndarray:
    """LDOS of a Hartree–Fock solution on a Monkhorst–Pack mesh at absolute energies or biases.

    Parameters
    ----------
    system : moireu.hf.HFSystem
        Provides ``system.model`` and ``system.spectrum(res, k_frac, weights)`` →
        (eigenvalues (nk, 2, N), eigenvectors (nk, 2, N, N)).
    res : moireu.hf.HFResult
        The self-consistent solution (``res.fermi_level``, ``res.converged``).
    energies : list of float, optional
        Absolute energies (eV). Exactly one of ``energies`` / ``biases`` must be given.
    biases : list of float, optional
        Energies relative to ``res.fermi_level`` (eV).
    eta, kind : broadening (eV) and kernel.
    kmesh : (n1, n2)
        Monkhorst–Pack mesh (time-reversal reduced) used for the LDOS.
    per_spin : bool
        Return (nE, 2, N) instead of (nE, N).
    chunk : int
        k-points diagonalised at a time (bounds the memory of the eigenvectors).
    allow_unconverged : bool
        Accept a result whose SCF did not converge.
    progress : bool
        Show a progress bar on stderr.

    Raises
    ------
    InputError
        Unconverged result (unless allowed), or an energy outside the computed spectrum.
    """
    from moireu.lattice import kmesh as make_kmesh

    if (energies is None) == (biases is None):
        raise InputError("give exactly one of energies= (absolute, eV) or biases= (relative to E_F, eV)")
    if not allow_unconverged and not bool(getattr(res, "converged", True)):
        raise InputError("the Hartree–Fock result did not converge; refusing to simulate STM from it "
                         "(pass allow_unconverged=True / --allow-unconverged to override)")
    ef = float(res.fermi_level)
    E = np.atleast_1d(np.asarray(list(energies) if energies is not None else
                                 [ef + b for b in biases], dtype=float))  # type: ignore[union-attr]
    _check_eta_kind(eta, kind)
    model = system.model
    kf, w = make_kmesh(model, tuple(kmesh))
    acc: np.ndarray | None = None
    emin, emax = np.inf, -np.inf
    starts = range(0, len(kf), max(1, int(chunk)))
    it: Iterable[int] = starts
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(starts, desc="LDOS k-chunks", unit="chunk", leave=False)
    for s in it:
        ev, vec = system.spectrum(res, kf[s:s + chunk], w[s:s + chunk])
        ev = np.asarray(ev)
        emin, emax = min(emin, float(ev.min())), max(emax, float(ev.max()))
        if acc is None:
            acc = np.zeros((E.size, ev.shape[1] if ev.ndim == 3 else 1, np.asarray(vec).shape[-2]))
        ldos_from_spectrum(ev, vec, w[s:s + chunk], E, eta, kind, out=acc)
    assert acc is not None
    check_energies_in_spectrum(E, np.array([emin, emax]), fermi_level=ef)
    return acc if per_spin else acc.sum(axis=1)
