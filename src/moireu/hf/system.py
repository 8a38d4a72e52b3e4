r"""Unrestricted (collinear) Hartree–Fock on a k-mesh: the finalized problem, built once, solved many times.

Hamiltonian
-----------
.. math::

    H = H_{TB} + U\sum_i n_{i\uparrow}n_{i\downarrow} + \tfrac12\sum_{i\ne j} V(r_{ij})\, n_i n_j,

with the gate-screened Coulomb kernel V (:mod:`moireu.hf.coulomb`). In the collinear mean field the
spin-σ Bloch Hamiltonian is :math:`H_\sigma(\mathbf k) = H_{TB}(\mathbf k) + \sum_t \Sigma^{(t)}_\sigma(\mathbf k)`
with one self-energy per interaction term (:mod:`moireu.hf.terms`: Hubbard, Hartree, Fock), each
a function of the density change δρ.

Subtraction convention
----------------------
Every interaction acts on the *change* of the density matrix, :math:`\delta\rho = \rho - \rho^{0}`,
where :math:`\rho^{0}` is the non-interacting, non-magnetic, charge-neutral TB ground state on the
same mesh and temperature (per spin, :math:`\rho^0_\uparrow = \rho^0_\downarrow`). Reasons: (i) the TB
parameters are fitted to band structures that already contain the mean-field interaction of the
neutral reference, so adding its Hartree/exchange again would double count (the standard
"charge-neutrality-point" subtraction of TBG Hartree–Fock, e.g. Xie & MacDonald, PRL 124, 097601
(2020); Bultinck et al., PRX 10, 031034 (2020)); (ii) U = 0, ν = 0 (or V = 0, U = 0) reproduce the TB
spectrum exactly, and the paramagnetic TB state is a solution at every U; (iii) on a particle–hole
symmetric lattice :math:`n^0_{i\sigma} = 1/2`, so the Hubbard term is the familiar
:math:`U(\langle n_{i,-\sigma}\rangle - \tfrac12)`. The energy is
:math:`E = \mathrm{Tr}[H_{TB}\rho] + E_{int}[\delta\rho]` per moiré cell, with
:math:`E_{int} = U\sum_i\delta n_{i\uparrow}\delta n_{i\downarrow}
+ \tfrac12\sum_{ij}W_{ij}\delta n_i\delta n_j - \tfrac12\sum_{\sigma,ij\mathbf R}V_{ij}(\mathbf R)\,
\delta\rho_{\sigma,ij}(\mathbf R)^2`. Against a code that writes the Hubbard term as
:math:`U(n_{-\sigma} - \tfrac12)` and the energy as :math:`U\sum_i n_{i\uparrow}n_{i\downarrow}`
the two energies differ by :math:`U\sum_i[\tfrac12(n_{i\uparrow}+n_{i\downarrow}) - \tfrac14]`-type
terms that are *linear* in n: constant at fixed particle number when :math:`n^0_{i\sigma} = \tfrac12`,
so energy differences, moments and spectra (up to a rigid shift) agree (checked against the
``hubbard`` package to 1e-9; see docs/ARCHITECTURE.md).

Symmetry: the real-space density matrix is real (spinless time reversal per spin is kept), which is
what allows the time-reversal-reduced mesh (k and −k merged:
:math:`\rho(\mathbf R) = \sum_{\mathbf k\in\text{IBZ}} w_{\mathbf k}\,\mathrm{Re}[\rho(\mathbf k)e^{-2\pi i\mathbf k\cdot\mathbf R}]`).
At time-reversal-invariant k (2k ≡ 0) every H_σ(k) is real symmetric and is diagonalised in the
real gauge (half the work of a complex Hermitian eigensolve). Spin and lattice symmetries may break
(AF, ferro, charge order); valley/orbital-current orders that need complex hoppings are outside
this ansatz.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import scipy.linalg as sl

from moireu.errors import InputError
from moireu.hf.coulomb import CoulombParams
from moireu.hf.result import HFResult
from moireu.hf.terms import INITS, Density, ExchangePairs, Fock, Hartree, Hubbard, Params, Potential, Term
from moireu.lattice.bands import FD_CLIP, fermi_dirac, fermi_solve

#: eigensolvers of the Bloch Hamiltonians: LAPACK per k point, or batched ``torch.linalg.eigh``
BACKENDS = ("scipy", "torch")

__all__ = ["HFSystem", "MeanFieldStep", "INITS"]

_SMALL = 64  # below this size all k-points are diagonalised in one batched numpy call


class MeanFieldStep:
    """Output of one diagonalisation of the mean-field Hamiltonian (see :meth:`HFSystem.step`).

    Attributes
    ----------
    density : output :class:`Density` (occupations and exchange pair density)
    eigs : (nk, 2, m) eigenvalues (m ≤ N: the lowest states when a subset was enough)
    mu, homo, lumo : Fermi level and the band edges around it (eV)
    eband : Σ w f ε (eV per cell)
    """

    def __init__(self, density: Density, eigs: np.ndarray, fl, eband: float) -> None:
        self.density, self.eigs, self.eband = density, eigs, eband
        self.mu, self.homo, self.lumo = fl.mu, fl.homo, fl.lumo


def _is_trim(k: np.ndarray) -> bool:
    """Time-reversal-invariant momentum: 2k is a reciprocal lattice vector."""
    return bool(np.all(np.abs(2.0 * k - np.round(2.0 * k)) < 1e-12))


class HFSystem:
    """A finalized Hartree–Fock problem: model + k-mesh + interaction terms (everything U-independent).

    Parameters
    ----------
    model : :class:`moireu.lattice.TightBindingModel`
    kmesh : (n1, n2) Monkhorst–Pack mesh (time-reversal reduced) or ``(k_frac (nk,2), weights (nk,))``
    coulomb : :class:`CoulombParams` (ε, gate distance ξ, Fock range, long-range on/off)
    backend : "scipy" (LAPACK evr per k) or "torch" (batched ``torch.linalg.eigh``)
    symmetry : use the C₃ reduction of the mesh (:mod:`moireu.hf.symmetry`) where the model, the
        mesh and — checked at every step — the potential keep the rotation (same results, fewer
        eigensolves: 3 instead of 5 k-points on the 3 × 3 mesh)

    Notes
    -----
    ``terms`` lists the interaction terms (:class:`~moireu.hf.terms.Hubbard` always,
    :class:`~moireu.hf.terms.Hartree` and :class:`~moireu.hf.terms.Fock` with the long-range
    interaction). Construction precomputes the Hartree lattice sum and the exchange pair list; the
    TB Bloch Hamiltonians on the mesh are built lazily. Instances pickle without that cache.
    """

    def __init__(self, model, kmesh=(3, 3), coulomb: CoulombParams | None = None, backend: str = "scipy",
                 symmetry: bool = True) -> None:
        from moireu.lattice import kmesh as make_kmesh

        self.model = model
        self.coulomb = coulomb if coulomb is not None else CoulombParams()
        if backend not in BACKENDS:
            raise InputError(f"unknown eigensolver backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        self.backend = backend
        if isinstance(kmesh, tuple) and len(kmesh) == 2 and isinstance(kmesh[0], np.ndarray):
            k, w = np.asarray(kmesh[0], float).reshape(-1, 2), np.asarray(kmesh[1], float).ravel()
            if len(k) == 0 or len(k) != len(w) or not np.all(w > 0):
                raise InputError(f"k-mesh needs ≥ 1 point with positive weights, got {len(k)} points")
            self.mesh = None
        else:
            mesh = (int(kmesh), int(kmesh)) if np.isscalar(kmesh) else tuple(int(x) for x in kmesh)
            if len(mesh) != 2 or min(mesh) < 1:
                raise InputError(f"k-mesh must be two integers ≥ 1, got {kmesh!r}")
            k, w = make_kmesh(model, mesh, trs=True)
            self.mesh = mesh
        self.k_frac, self.weights = k, w / w.sum()
        self.trim = np.array([_is_trim(kk) for kk in self.k_frac])
        N = self.n_orb = int(model.n_orb)
        self.n_spin = 2
        self.sublattice = np.asarray(model.sublattice, int)
        self.layer = np.asarray(model.layer, int)
        cp = self.coulomb
        self.pairs: ExchangePairs | None = None
        if cp.long_range and cp.fock_range > 0:
            if self.mesh is not None:
                # ρ(R) from an n1×n2 mesh is periodic on the n1·t1 × n2·t2 supercell: beyond half its
                # height the exchange would see aliased images of the density matrix
                cell = np.asarray(model.cell, float)
                heights = abs(np.linalg.det(cell)) / np.linalg.norm(cell, axis=1)[::-1]
                limit = 0.5 * float(np.min(np.array(self.mesh) * heights))
                if cp.fock_range > limit:
                    raise InputError(f"fock_range {cp.fock_range} Å exceeds {limit:.2f} Å, half the Born–von "
                                     f"Kármán supercell of the {self.mesh[0]}×{self.mesh[1]} k-mesh (the density "
                                     "matrix would be aliased); use a denser k-mesh or a shorter fock_range")
            self.pairs = ExchangePairs(model, cp)
        self.terms: list[Term] = [Hubbard(N, self.pairs)]
        if cp.long_range:
            self.terms.append(Hartree.build(model, cp, self.pairs))
            if self.pairs is not None:
                self.terms.append(Fock(self.pairs))
        self._hk: np.ndarray | None = None
        self._ref: dict[float, tuple[Density, float]] = {}
        self.c3 = None
        if symmetry and N > _SMALL and backend == "scipy":
            from moireu.hf.symmetry import C3Reduction

            self.c3 = C3Reduction.build(model, self.k_frac, self.weights, self.pairs, self.W)
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------------ identity / pickling
    @property
    def n_pair(self) -> int:
        """Number of exchange pairs on the half list (0 without Fock)."""
        return 0 if self.pairs is None else len(self.pairs)

    @property
    def W(self) -> np.ndarray | None:
        """Hartree kernel (N, N) eV, or None without the long-range term."""
        for t in self.terms:
            if isinstance(t, Hartree):
                return t.W
        return None

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        m = self.model
        for a in (m.positions, m.cell, m.hoppings.i, m.hoppings.j, m.hoppings.R, m.t, self.k_frac, self.weights):
            h.update(np.ascontiguousarray(np.round(np.asarray(a, float), 10)).tobytes())
        h.update(repr(sorted(self.coulomb.as_dict().items())).encode())
        return h.hexdigest()[:20]

    def describe(self) -> dict[str, Any]:
        return {"model": self.model.describe() if hasattr(self.model, "describe") else {},
                "n_orb": self.n_orb, "kmesh": list(self.mesh) if self.mesh else None, "n_k": len(self.k_frac),
                "coulomb": self.coulomb.as_dict(), "n_fock_pairs": self.n_pair, "backend": self.backend,
                "c3_k_points": None if self.c3 is None else len(self.c3.reps),
                "terms": [t.name for t in self.terms], "fingerprint": self.fingerprint}

    def __getstate__(self) -> dict:
        st = self.__dict__.copy()
        st["_hk"] = None
        return st

    def check_compatible(self, res: HFResult, what: str = "HF result") -> None:
        """Raise InputError when ``res`` was produced by a different system."""
        if res.fingerprint != self.fingerprint:
            raise InputError(f"{what} belongs to another system (fingerprint {res.fingerprint}, this system "
                             f"{self.fingerprint}: different geometry, hoppings, k-mesh or Coulomb parameters)")

    # ------------------------------------------------------------------ mean field
    @property
    def hk_mesh(self) -> np.ndarray:
        """(nk, N, N) TB Bloch Hamiltonians on the mesh (cached)."""
        if self._hk is None:
            self._hk = np.stack([self.model.hk(k) for k in self.k_frac])
        return self._hk

    def reference(self, kT: float) -> tuple[Density, float]:
        """Non-interacting neutral reference ρ⁰ (per spin, both spins equal) and μ⁰, cached per kT."""
        key = round(float(kT), 12)
        if key not in self._ref:
            zero = Potential.zeros(self.n_orb, self.n_pair)
            st = self.step(zero, float(self.n_orb), kT)
            d = st.density
            n0 = 0.5 * (d.n[:, 0] + d.n[:, 1])
            r0 = 0.5 * (d.rho[0] + d.rho[1])
            self._ref[key] = (Density(np.column_stack([n0, n0]), np.vstack([r0, r0])), st.mu)
        return self._ref[key]

    def potential(self, d: Density, p: Params) -> Potential:
        """Total mean-field potential of the density ``d`` (δρ is taken against the reference)."""
        ref, _ = self.reference(p.kT)
        dd = d - ref
        pot = Potential.zeros(self.n_orb, self.n_pair)
        for t in self.terms:
            if t.active(p):
                pot += t.potential(dd, p)
        return pot

    def interaction_energy(self, d: Density, p: Params) -> float:
        """E_int[δρ] = Σ_terms E_t[δρ] (eV per cell)."""
        ref, _ = self.reference(p.kT)
        dd = d - ref
        return float(sum(t.energy(dd, p) for t in self.terms if t.active(p)))

    def bloch(self, pot: Potential, k: np.ndarray, spin: int, hk0: np.ndarray | None = None) -> np.ndarray:
        """H_σ(k) = H_TB(k) + diag(v_σ) + F_σ(k) (N, N); real symmetric at time-reversal-invariant k."""
        H = self.model.hk(k) if hk0 is None else hk0.copy()
        if self.pairs is not None and np.any(pot.pair[spin]):
            H += self.pairs.bloch(pot.pair[spin], k)
        H[np.diag_indices(self.n_orb)] += pot.diag[spin]
        return H

    def _eig(self, H: np.ndarray, real: bool, nstates: int | None, vectors: bool = True, single: bool = False):
        """eigh of one Hermitian matrix (real gauge when ``real``); the lowest ``nstates`` (None: all).

        ``single``: LAPACK in single precision (float32/complex64, ≈ 3× faster; eigenvalues to
        ≈ 1e-6 eV), results returned in double precision.
        """
        if real:
            H = np.ascontiguousarray(H.real, dtype=np.float32 if single else np.float64)
        elif single:
            H = H.astype(np.complex64)
        sub = None if nstates is None or nstates >= self.n_orb else [0, nstates - 1]
        r = sl.eigh(H, eigvals_only=not vectors, driver="evr", subset_by_index=sub, overwrite_a=True,
                    check_finite=False)
        if not single:
            return r
        if vectors:
            return r[0].astype(np.float64), r[1].astype(np.float64 if real else np.complex128)
        return r.astype(np.float64)

    def _eig_batch(self, H: np.ndarray, vectors: bool = True):
        if self.backend == "torch":
            import torch

            e, V = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(H)))
            return (e.numpy(), V.numpy()) if vectors else e.numpy()
        return np.linalg.eigh(H) if vectors else np.linalg.eigvalsh(H)

    @property
    def single_precision(self) -> bool:
        """Whether :meth:`step` honours ``single=True`` (the per-k LAPACK path; small cells and the torch
        backend always solve in double, so the driver must not hold back a convergence decision for them)."""
        return self.n_orb > _SMALL and self.backend == "scipy"

    def symmetric(self, pot: Potential, tol: float | None = None) -> bool:
        """Whether the C₃ reduction applies to this potential (checked to ``tol``, default
        :data:`moireu.hf.symmetry.SYM_TOL`; :mod:`moireu.hf.symmetry`)."""
        c3 = getattr(self, "c3", None)  # (a system unpickled from before the reduction has none)
        if c3 is None:
            return False
        pair = pot.pair if self.pairs is not None else None
        return c3.is_symmetric(pot.diag, pair) if tol is None else c3.is_symmetric(pot.diag, pair, tol)

    def step(self, pot: Potential, n_electrons: float, kT: float, single: bool = False) -> MeanFieldStep:
        """One mean-field step: H_σ(k) → eigenpairs → μ → output density and band energy.

        ``single``: single-precision eigensolves (large systems only; the SCF driver uses them while
        the residual is far above the tolerance, see :class:`moireu.hf.scf.SCFOptions`).
        """
        N, nk = self.n_orb, len(self.k_frac)
        hk = self.hk_mesh
        kidx = np.arange(nk)
        weights = self.weights
        sym = N > _SMALL and self.backend != "torch" and self.symmetric(pot)
        if sym:  # one k-point per C₃ orbit with the orbit's weight; the output is group-averaged below
            kidx, weights = self.c3.reps, self.c3.rep_weights
            nk = len(kidx)
        if N <= _SMALL or self.backend == "torch":
            H = np.stack([[self.bloch(pot, self.k_frac[q], s, hk[q]) for s in range(2)] for q in range(nk)])
            E, V = self._eig_batch(H.reshape(nk * 2, N, N))
            E, V = np.asarray(E).reshape(nk, 2, N), np.asarray(V).reshape(nk, 2, N, N)
            vecs = [V[q, s] for q in range(nk) for s in range(2)]
            fl = fermi_solve(E, self.weights, n_electrons, kT)
        else:
            # only the occupied states and a margin: grown until every k holds all states below μ + clip·kT
            nstates = min(N, int(math.ceil(n_electrons / 2)) + max(8, N // 20))
            Hs = [self.bloch(pot, self.k_frac[q], s, hk[q]) for q in kidx for s in range(2)]
            while True:
                eigs, vecs = [], []
                for j, H in enumerate(Hs):
                    e, Vq = self._eig(H.copy(), bool(self.trim[kidx[j // 2]]), nstates, single=single)
                    eigs.append(e)
                    vecs.append(Vq)
                E = np.array(eigs).reshape(nk, 2, -1)
                fl = fermi_solve(E, weights, n_electrons, kT)
                if nstates >= N or E[..., -1].min() > fl.mu + FD_CLIP * kT:
                    break
                nstates = min(N, 2 * nstates)
        f = fermi_dirac(E, fl.mu, kT)
        eband = float(np.einsum("q,qsn,qsn->", weights, E, f))
        n_out = np.zeros((N, 2))
        rho_out = np.zeros((2, self.n_pair))
        for q in range(nk):
            for s in range(2):
                fq = f[q, s]
                occ = fq > 0.0
                A = vecs[2 * q + s][:, occ] * np.sqrt(fq[occ])[None, :]
                wq = weights[q]
                n_out[:, s] += wq * (np.einsum("im,im->i", A.real, A.real)
                                     + (np.einsum("im,im->i", A.imag, A.imag) if np.iscomplexobj(A) else 0.0))
                if self.pairs is not None:
                    rho_out[s] += wq * self.pairs.density(A, self.k_frac[kidx[q]])
        if sym:
            n_out = self.c3.average_sites(n_out.T).T
            if self.pairs is not None:
                rho_out = self.c3.average_pairs(rho_out)
        return MeanFieldStep(Density(n_out, rho_out), E, fl, eband)

    def energy(self, st: MeanFieldStep, pot: Potential, p: Params) -> float:
        """HF energy of the output density of ``st``: Tr[H_TB ρ_out] + E_int[δρ_out] (eV per cell)."""
        return st.eband - pot.energy_shift(st.density) + self.interaction_energy(st.density, p)

    # ------------------------------------------------------------------ seeds
    def seed_moment(self, init: str, amplitude: float, seed: int = 0) -> np.ndarray:
        """(N, 2) occupation change ±m/2 of a named moment pattern (see :meth:`initial_state`)."""
        N = self.n_orb
        if init == "paramagnetic":
            m = np.zeros(N)
        elif init == "afm":
            m = amplitude * (1.0 - 2.0 * self.sublattice)
        elif init == "ferro":
            m = np.full(N, amplitude)
        elif init == "random":
            m = np.random.default_rng(np.random.SeedSequence([int(seed), 14])).uniform(-amplitude, amplitude, N)
        else:
            raise InputError(f"unknown initial state {init!r}; allowed: {', '.join(INITS)}")
        return np.column_stack([0.5 * m, -0.5 * m])

    def initial_state(self, init: str, filling: float, kT: float, amplitude: float = 0.1,
                      seed: int = 0) -> Density:
        """A named seed pattern on top of the neutral reference.

        ``paramagnetic``: reference + ν/N per site; ``afm``: ± amplitude/2 per spin with the sign of the
        sublattice (−1)^s; ``ferro``: +amplitude/2 on ↑, −amplitude/2 on ↓; ``random``: uniform moments
        in [−amplitude, amplitude] drawn from ``seed``.
        """
        ref, _ = self.reference(kT)
        n = ref.n + filling / (2.0 * self.n_orb) + self.seed_moment(init, amplitude, seed)
        return Density(np.clip(n, 0.0, 1.0), ref.rho.copy())

    def instability(self, U: float, filling: float = 0.0, kT: float = 0.001, pattern: str = "afm",
                    amplitude: float = 1e-4, seed: int = 0, power_iters: int = 3) -> float:
        r"""Linear growth factor g of a small moment pattern under the mean-field map.

        Starting from the non-magnetic state (``paramagnetic``) plus a moment pattern δm of size
        ``amplitude``, one diagonalisation returns :math:`m_{out}` and
        :math:`g = \langle\delta m, m_{out}\rangle/\langle\delta m,\delta m\rangle`. Repeating with
        δm ← m_out (rescaled; ``power_iters`` times) is a power iteration towards the most unstable
        spin mode, so g approaches the largest eigenvalue of :math:`U\chi_0` (Stoner/Néel criterion):
        g > 1 means the non-magnetic solution is unstable and an ordered one exists.
        """
        p = Params(U, filling, kT)
        base = self.initial_state("paramagnetic", filling, kT)
        d = self.seed_moment(pattern, amplitude, seed)
        d = d[:, 0] - d[:, 1]
        g = 0.0
        for _ in range(max(1, int(power_iters))):
            trial = Density(base.n + np.column_stack([0.5 * d, -0.5 * d]), base.rho)
            out = self.step(self.potential(trial, p), self.n_orb + filling, kT).density
            m_out = out.n[:, 0] - out.n[:, 1]
            g = float(d @ m_out / (d @ d))
            big = float(np.abs(m_out).max())
            if big == 0.0:
                break
            d = m_out * (amplitude / big)
        return g

    # ------------------------------------------------------------------ solve
    def solve(self, U: float = 0.0, filling: float = 0.0, kT: float = 0.001, **options) -> HFResult:
        """Self-consistent solve at the physics parameters (U, ν, kT); numerical ``options`` are those of
        :class:`moireu.hf.scf.SCFOptions` plus ``warm_start``, ``checkpoint``, ``progress``, ``config``
        (see :func:`moireu.hf.scf.run_scf`)."""
        from moireu.hf.scf import run_scf

        return run_scf(self, Params(U, filling, kT), **options)

    # ------------------------------------------------------------------ for the STM stage
    def potential_of(self, res: HFResult) -> Potential:
        self.check_compatible(res)
        return self.potential(Density(res.occupations, res.pair_density), Params(res.U, res.filling, res.kT))

    def hamiltonian(self, res: HFResult, k_frac) -> np.ndarray:
        """Mean-field Bloch Hamiltonians of ``res``: (2, N, N) for one k, (nk, 2, N, N) for (nk, 2)."""
        pot = self.potential_of(res)
        k = np.asarray(k_frac, float)
        ks = np.atleast_2d(k)
        out = np.stack([[self.bloch(pot, kk, s) for s in range(2)] for kk in ks])
        return out[0] if k.ndim == 1 else out

    def spectrum_from_potentials(self, pot: Potential, k_frac, vectors: bool = True):
        """Eigenvalues (nk, 2, N) (and eigenvectors (nk, 2, N, N), columns) of H_σ(k) for a potential."""
        ks = np.atleast_2d(np.asarray(k_frac, float))
        N = self.n_orb
        if N <= _SMALL or self.backend == "torch":
            H = np.stack([[self.bloch(pot, kk, s) for s in range(2)] for kk in ks])
            return self._eig_batch(H, vectors)
        if (not vectors and ks.shape == self.k_frac.shape and np.array_equal(ks, self.k_frac)
                and self.symmetric(pot)):
            # the mesh's band energies: an image of a k-point has the spectrum of its orbit's representative
            Er = self.spectrum_from_potentials(pot, self.k_frac[self.c3.reps], vectors=False)
            return Er[self.c3.orbit_of]
        E = np.empty((len(ks), 2, N))
        V = np.empty((len(ks), 2, N, N), complex) if vectors else None
        for q, kk in enumerate(ks):
            h0 = self.model.hk(kk)
            real = _is_trim(kk)
            for s in range(2):
                r = self._eig(self.bloch(pot, kk, s, h0), real, None, vectors)
                if vectors:
                    E[q, s], V[q, s] = r
                else:
                    E[q, s] = r
        return (E, V) if vectors else E

    def spectrum(self, res: HFResult, k_frac, weights=None, vectors: bool = True):
        """Eigenvalues (nk, 2, N) (and eigenvectors (nk, 2, N, N), columns) of the mean-field H of ``res``.

        ``weights`` (nk,) is accepted for symmetry with the LDOS code and only validated.
        """
        ks = np.atleast_2d(np.asarray(k_frac, float))
        if weights is not None and len(np.atleast_1d(weights)) != len(ks):
            raise InputError(f"{len(np.atleast_1d(weights))} weights for {len(ks)} k-points")
        return self.spectrum_from_potentials(self.potential_of(res), ks, vectors=vectors)
