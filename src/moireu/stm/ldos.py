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

Solvers (:func:`ldos_of_hamiltonian`, the ``solver`` of :func:`ldos_at`): the LDOS at a few
energies does not need the whole eigen-decomposition of every H_σ(k). All of them give the same
numbers to rounding (tests compare them to 1e-10):

* ``eigh``: all eigenpairs, then the sum above (the reference; one full ``eigh`` per k and spin);
* ``resolvent`` (Lorentzian only): :math:`\\delta_\\eta(E - E_n) = -\\frac1\\pi\\,\\mathrm{Im}\\,(E + i\\eta - E_n)^{-1}`,
  so :math:`\\mathrm{LDOS}_\\sigma(r_i, E) = -\\frac1\\pi\\sum_k w_k\\,\\mathrm{Im}\\,[(E + i\\eta - H_\\sigma(k))^{-1}]_{ii}`
  exactly — one LU factorisation and two triangular inverses per energy instead of an
  eigensolve (≈ 2.4× faster at N = 1084 for one energy; slower from ≈ 3 energies on);
* ``window`` (Gaussian only): only the eigenpairs within 12 η of the energies
  (``scipy.linalg.eigh(subset_by_value=…)``); the Gaussian weight of a level farther away is
  below :math:`e^{-72}` of the peak. (A Lorentzian's tails are long: a window would change it.)
* ``auto`` (default): ``eigh`` for small cells (N ≤ 64, batched) and at time-reversal-invariant k
  (real gauge, already cheap); otherwise ``resolvent`` for a Lorentzian at ≤ 2 energies and
  ``window`` for a Gaussian, else ``eigh``.

When the HF system has a C₃ reduction (:mod:`moireu.hf.symmetry`) and the solution keeps the
rotation to rounding (checked, ``LDOS_SYM_TOL``), only one k-point per orbit of the LDOS mesh is solved (4 of the 11 points of the
4 × 4 mesh) and the result is averaged over the group — the same LDOS.

The range check (an energy outside the computed spectrum is an input error) uses the exact band
extremes: from the eigenvalues where a full spectrum was computed and, only when those do not
already bracket every energy, from ``eigvalsh`` of the remaining Hamiltonians.
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


SOLVERS = ("auto", "eigh", "resolvent", "window")
#: a Lorentzian LDOS at up to this many energies is computed from the resolvent (``auto``)
RESOLVENT_MAX_ENERGIES = 2
#: ``window``: eigenpairs within this many η of the energies (Gaussian weight beyond: < e^{-72})
WINDOW_ETAS = 12.0
_SMALL = 64  # at or below this size ``auto`` uses the batched full eigensolver


def _check_solver(solver: str, kind: str) -> None:
    if solver not in SOLVERS:
        raise InputError(f"unknown LDOS solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    if solver == "resolvent" and kind != "lorentzian":
        raise InputError("the resolvent LDOS solver is exact for the Lorentzian broadening only")
    if solver == "window" and kind != "gaussian":
        raise InputError("the window LDOS solver is exact for the Gaussian broadening only (a Lorentzian's "
                         "tails reach every level)")


def _diag_inverse(A: np.ndarray) -> np.ndarray:
    """diag(A⁻¹) of a square complex matrix: A = P L U → A⁻¹ = U⁻¹ L⁻¹ Pᵀ (A is overwritten)."""
    from scipy.linalg import lapack

    n = A.shape[0]
    lu, piv, info = lapack.zgetrf(A, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"zgetrf failed (info {info})")
    Linv, i1 = lapack.ztrtri(lu, lower=1, unitdiag=1)
    Uinv, i2 = lapack.ztrtri(lu, lower=0, unitdiag=0, overwrite_c=True)
    if i1 != 0 or i2 != 0:
        raise np.linalg.LinAlgError(f"ztrtri failed (info {i1}, {i2})")
    perm = np.arange(n)  # rows of A in the order of L U: A[perm] = L U
    for i, p in enumerate(piv):
        perm[i], perm[p] = perm[p], perm[i]
    inv = np.empty(n, int)
    inv[perm] = np.arange(n)
    # diag_i = Σ_k U⁻¹[i, k] (L⁻¹ Pr)[k, i] over k ≥ i (U⁻¹ upper), L⁻¹ unit lower (ztrtri leaves
    # the upper part of its input in place: masked here)
    Lp = np.tril(Linv, -1)
    Lp[np.diag_indices(n)] = 1.0
    return np.einsum("ik,ki->i", np.triu(Uinv), Lp[:, inv])


def ldos_of_hamiltonian(H: np.ndarray, energies: np.ndarray, eta: float, kind: str = "lorentzian",
                        solver: str = "eigh", real: bool = False) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Per-atom LDOS (nE, N) of one Hermitian Bloch Hamiltonian (no k weight), and its band extremes.

    Parameters
    ----------
    H : (N, N) Hermitian (not modified)
    energies : (nE,) absolute energies (eV)
    eta, kind : broadening
    solver : "eigh", "resolvent" (Lorentzian) or "window" (Gaussian); see the module docstring
    real : H is real symmetric (time-reversal-invariant k): ``eigh`` in the real gauge

    Returns
    -------
    (LDOS (nE, N), (E_min, E_max) or None) — the extremes only when the full spectrum was computed.
    """
    import scipy.linalg as sl

    _check_eta_kind(eta, kind)
    _check_solver(solver, kind)
    E = np.atleast_1d(np.asarray(energies, dtype=float))
    N = H.shape[0]
    if solver == "resolvent":
        out = np.empty((E.size, N))
        for j, e in enumerate(E):
            A = np.array(H, dtype=complex, order="F")  # a copy, Fortran order for LAPACK
            A *= -1.0
            A[np.diag_indices(N)] += e + 1j * eta
            out[j] = -_diag_inverse(A).imag / np.pi
        return out, None
    Hc = np.array(H.real if real else H, order="F")  # a copy: LAPACK overwrites it
    if solver == "window":
        lo, hi = float(E.min()) - WINDOW_ETAS * eta, float(E.max()) + WINDOW_ETAS * eta
        try:
            ev, V = sl.eigh(Hc, driver="evr", subset_by_value=(lo, hi), overwrite_a=True, check_finite=False)
        except ValueError:  # no eigenvalue in the window (a scipy version that refuses the empty subset)
            return np.zeros((E.size, N)), None
        rng = None
    else:
        ev, V = sl.eigh(Hc, driver="evr", overwrite_a=True, check_finite=False)
        rng = (float(ev[0]), float(ev[-1]))
    if ev.size == 0:
        return np.zeros((E.size, N)), rng
    d = broadening(E[:, None] - ev[None, :], eta, kind)  # (nE, m)
    prob = V.real ** 2 + (V.imag ** 2 if np.iscomplexobj(V) else 0.0)  # (N, m)
    return d @ prob.T, rng


def _auto_solver(n_orb: int, real: bool, kind: str, n_energies: int) -> str:
    if n_orb <= _SMALL or real:
        return "eigh"
    if kind == "lorentzian":
        return "resolvent" if n_energies <= RESOLVENT_MAX_ENERGIES else "eigh"
    return "window"


def _is_trim(k: np.ndarray) -> bool:
    return bool(np.all(np.abs(2.0 * k - np.round(2.0 * k)) < 1e-12))


def ldos_at(system: Any, res: Any, energies: Iterable[float] | None = None, *,
            biases: Iterable[float] | None = None, eta: float = 0.004, kind: str = "lorentzian",
            kmesh: tuple[int, int] = (4, 4), per_spin: bool = False, chunk: int = 4,
            allow_unconverged: bool = False, progress: bool = False, solver: str = "auto") -> np.ndarray:
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
    solver : "auto", "eigh", "resolvent" or "window" (module docstring; all exact). Systems that
        provide only ``spectrum`` (no ``potential_of``/``bloch``) always use the full spectrum.

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
    _check_solver(solver, kind)
    model = system.model
    kf, w = make_kmesh(model, tuple(kmesh))
    if hasattr(system, "potential_of") and hasattr(system, "bloch") and not (
            solver == "auto" and int(model.n_orb) <= _SMALL):
        out = _ldos_per_hamiltonian(system, res, kf, w, E, eta, kind, solver, ef, progress)
        return out if per_spin else out.sum(axis=1)
    acc: np.ndarray | None = None
    emin, emax = np.inf, -np.inf
    starts = range(0, len(kf), max(1, int(chunk)))
    it: Iterable[int] = starts
    if progress:
        from moireu.progress import track

        it = track(starts, "LDOS", "k-chunks")
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


def _ldos_per_hamiltonian(system: Any, res: Any, kf: np.ndarray, w: np.ndarray, E: np.ndarray, eta: float,
                          kind: str, solver: str, ef: float, progress: bool) -> np.ndarray:
    """LDOS (nE, 2, N) of an HF solution, one H_σ(k) at a time with the chosen solver."""
    pot = system.potential_of(res)
    N = int(system.model.n_orb)
    acc = np.zeros((E.size, 2, N))
    emin, emax = np.inf, -np.inf
    unchecked: list[tuple[np.ndarray, int]] = []  # (k, spin) whose extremes were not computed
    # C₃ (moireu.hf.symmetry): one k per orbit when the model, the mesh and this state keep the rotation
    c3 = getattr(system, "c3", None)
    orbits = None
    if c3 is not None:
        from moireu.hf.symmetry import LDOS_SYM_TOL

        orbits = c3.orbits(kf, w) if system.symmetric(pot, LDOS_SYM_TOL) else None
    if orbits is not None:
        kf, w = kf[orbits[0]], orbits[1]
    items: Iterable[int] = range(len(kf))
    if progress:
        from moireu.progress import track

        items = track(items, "LDOS", "k-points")
    for q in items:
        k = kf[q]
        real = _is_trim(k)
        h0 = system.model.hk(k)
        for s in range(2):
            H = system.bloch(pot, k, s, h0)
            how = _auto_solver(N, real, kind, E.size) if solver == "auto" else solver
            L, rng = ldos_of_hamiltonian(H, E, eta, kind, how, real=real)
            acc[:, s, :] += w[q] * L
            if rng is None:
                unchecked.append((k, s))
            else:
                emin, emax = min(emin, rng[0]), max(emax, rng[1])
    if unchecked and not (emin <= float(E.min()) and float(E.max()) <= emax):
        import scipy.linalg as sl

        for k, s in unchecked:  # exact extremes only when the computed ones do not bracket E
            ev = sl.eigh(system.bloch(pot, k, s), eigvals_only=True, driver="evr", overwrite_a=True,
                         check_finite=False)
            emin, emax = min(emin, float(ev[0])), max(emax, float(ev[-1]))
    check_energies_in_spectrum(E, np.array([emin, emax]), fermi_level=ef)
    if orbits is not None:  # the images' contributions: the group average over the sites
        acc = c3.average_sites(acc)
    return acc
