r"""Unrestricted (collinear) Hartree–Fock on a k-mesh: build once, solve many times.

Hamiltonian
-----------
.. math::

    H = H_{TB} + U\sum_i n_{i\uparrow}n_{i\downarrow} + \tfrac12\sum_{i\ne j} V(r_{ij})\, n_i n_j,

with the gate-screened Coulomb kernel V (:mod:`moireu.hf.coulomb`). In the collinear mean field the
spin-σ Bloch Hamiltonian is

.. math::

    H_\sigma(\mathbf k) = H_{TB}(\mathbf k) + \mathrm{diag}\big(U\,\delta n_{i,-\sigma}
        + \textstyle\sum_j W_{ij}\,\delta n_j\big) + F_\sigma(\mathbf k),\qquad
    F_{\sigma,ij}(\mathbf R) = -V(\mathbf r_j+\mathbf R-\mathbf r_i)\,\delta\rho_{\sigma,ij}(\mathbf R),

with :math:`\rho_{\sigma,ij}(\mathbf R) = \langle c^\dagger_{j\mathbf R\sigma}c_{i\mathbf 0\sigma}\rangle
= \sum_{\mathbf k} w_{\mathbf k}\sum_n f_{n\mathbf k\sigma}\psi_{in}\psi^*_{jn} e^{-2\pi i\mathbf k\cdot\mathbf R}`
(cell gauge), the Hartree lattice sum :math:`W_{ij}` over all periodic images, and the exchange kept
for :math:`|\mathbf r_j + \mathbf R - \mathbf r_i| \le` ``fock_range``.

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
:math:`E = \mathrm{Tr}[H_{TB}\rho] + U\sum_i\delta n_{i\uparrow}\delta n_{i\downarrow}
+ \tfrac12\sum_{ij}W_{ij}\delta n_i\delta n_j - \tfrac12\sum_{\sigma,ij\mathbf R}V_{ij}(\mathbf R)\,
\delta\rho_{\sigma,ij}(\mathbf R)^2` per moiré cell.

Symmetry: the real-space density matrix is real (spinless time reversal per spin is kept), which is
what allows the time-reversal-reduced mesh (k and −k merged:
:math:`\rho(\mathbf R) = \sum_{\mathbf k\in\text{IBZ}} w_{\mathbf k}\,\mathrm{Re}[\rho(\mathbf k)e^{-2\pi i\mathbf k\cdot\mathbf R}]`).
Spin and lattice symmetries may break (AF, ferro, charge order); valley/orbital-current orders
that need complex hoppings are outside this ansatz.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from moireu.errors import InputError
from moireu.hf.coulomb import CoulombParams, gated_potential, hartree_matrix
from moireu.hf.mixing import make_mixer
from moireu.hf.result import HFResult

__all__ = ["HFSystem", "solve_fermi_level", "fermi_dirac"]

INITS = ("paramagnetic", "afm", "ferro", "random")
_SMALL = 64  # below this size all k-points are diagonalised in one batched numpy call


def fermi_dirac(e: np.ndarray, mu: float, kT: float) -> np.ndarray:
    """1/(exp((e−μ)/kT)+1), overflow-safe."""
    return 0.5 * (1.0 - np.tanh(0.5 * np.clip((np.asarray(e) - mu) / kT, -800.0, 800.0)))


def solve_fermi_level(eigs: np.ndarray, weights: np.ndarray, n_electrons: float, kT: float) -> float:
    r"""μ with :math:`\sum_k w_k\sum_{\sigma n} f(\varepsilon_{n\sigma k}-\mu) = N_e` by bisection (to 1e-13 e).

    ``eigs`` is (nk, ...) with any further axes summed (spin-resolved: degeneracy 1).
    """
    e = np.asarray(eigs, float).reshape(len(weights), -1)
    w = np.broadcast_to(np.asarray(weights, float)[:, None], e.shape)
    order = np.argsort(e, axis=None)
    ef, wf = e.ravel()[order], w.ravel()[order]
    cum = np.cumsum(wf)
    if not 0.0 <= n_electrons <= cum[-1] + 1e-9:
        raise InputError(f"{n_electrons} electrons do not fit in {cum[-1]:.6g} states")
    # bracket from the zero-temperature step, widened until it holds
    idx = min(int(np.searchsorted(cum, n_electrons)), len(ef) - 1)
    lo, hi = ef[max(idx - 1, 0)] - 40 * kT, ef[idx] + 40 * kT
    # only states within ~50 kT of the bracket contribute fractional occupations
    step = 40 * kT

    def count(mu: float) -> float:
        a = int(np.searchsorted(ef, mu - step * 1.25))
        b = int(np.searchsorted(ef, mu + step * 1.25))
        return (float(cum[a - 1]) if a > 0 else 0.0) + float(wf[a:b] @ fermi_dirac(ef[a:b], mu, kT))

    while count(lo) > n_electrons:
        lo -= step
    while count(hi) < n_electrons and hi < ef[-1] + 2 * step:
        hi += step
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        c = count(mid)
        if c < n_electrons:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-14 or abs(c - n_electrons) < 1e-14:
            break
    return 0.5 * (lo + hi)


class HFSystem:
    """A finalized Hartree–Fock problem: model + k-mesh + Coulomb kernels (everything U-independent).

    Parameters
    ----------
    model : :class:`moireu.lattice.TightBindingModel`
    kmesh : (n1, n2) Monkhorst–Pack mesh (time-reversal reduced) or ``(k_frac (nk,2), weights (nk,))``
    coulomb : :class:`CoulombParams` (ε, gate distance ξ, Fock range, long-range on/off)
    backend : "scipy" (LAPACK evr per k) or "torch" (batched ``torch.linalg.eigh``)

    Notes
    -----
    Construction precomputes the TB Bloch Hamiltonians on the mesh (lazily), the Hartree lattice
    sum W (N×N, Ewald) and the exchange pair list with V(r) on it. Instances pickle without the
    Bloch-Hamiltonian cache, which is rebuilt on first use.
    """

    def __init__(self, model, kmesh=(3, 3), coulomb: CoulombParams | None = None, backend: str = "scipy") -> None:
        from moireu.lattice import kmesh as make_kmesh

        self.model = model
        self.coulomb = coulomb if coulomb is not None else CoulombParams()
        if backend not in ("scipy", "torch"):
            raise InputError(f"unknown eigensolver backend {backend!r}; allowed: scipy, torch")
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
        n = self.n_orb = int(model.n_orb)
        self.n_spin = 2
        self.sublattice = np.asarray(model.sublattice, int)
        self.layer = np.asarray(model.layer, int)
        cp = self.coulomb
        self.W: np.ndarray | None = None
        if cp.long_range:
            self.W = hartree_matrix(model.positions, model.cell, cp.eps, cp.gate_distance)
        # exchange pairs: one of each (i, j, R) / (j, i, −R)
        if cp.long_range and cp.fock_range > 0 and self.mesh is not None:
            # ρ(R) from an n1×n2 mesh is periodic on the n1·t1 × n2·t2 supercell: beyond half its
            # height the exchange would see aliased images of the density matrix
            cell = np.asarray(model.cell, float)
            heights = abs(np.linalg.det(cell)) / np.linalg.norm(cell, axis=1)[::-1]
            limit = 0.5 * float(np.min(np.array(self.mesh) * heights))
            if cp.fock_range > limit:
                raise InputError(f"fock_range {cp.fock_range} Å exceeds {limit:.2f} Å, half the Born–von Kármán "
                                 f"supercell of the {self.mesh[0]}×{self.mesh[1]} k-mesh (the density matrix "
                                 "would be aliased); use a denser k-mesh or a shorter fock_range")
        if cp.long_range and cp.fock_range > 0:
            pl = model.pairs(cp.fock_range)
            R = pl.R
            keep = (pl.i < pl.j) | ((pl.i == pl.j) & ((R[:, 0] > 0) | ((R[:, 0] == 0) & (R[:, 1] > 0))))
            self.pi, self.pj, self.pR = pl.i[keep].copy(), pl.j[keep].copy(), R[keep].copy()
            dvec = pl.dvec[keep]
            z = model.positions[:, 2] - 0.5 * (model.positions[:, 2].min() + model.positions[:, 2].max())
            self.pdist = np.linalg.norm(dvec, axis=1)
            self.pV = gated_potential(np.linalg.norm(dvec[:, :2], axis=1), z[self.pi], z[self.pj],
                                      cp.eps, cp.gate_distance)
            order = np.lexsort((self.pj, self.pi))
            for name in ("pi", "pj", "pR", "pdist", "pV"):
                setattr(self, name, getattr(self, name)[order])
        else:
            self.pi = self.pj = np.zeros(0, np.int64)
            self.pR = np.zeros((0, 2), np.int64)
            self.pdist = self.pV = np.zeros(0)
        self.n_pair = len(self.pi)
        # scatter slots for Fock matrices: (i, j) and (j, i) entries
        flat = np.concatenate([self.pi * n + self.pj, self.pj * n + self.pi])
        self._slots, self._slot_inv = np.unique(flat, return_inverse=True)
        self._hk: np.ndarray | None = None
        self._ref: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------------ identity / pickling
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
                "fingerprint": self.fingerprint}

    def __getstate__(self) -> dict:
        st = self.__dict__.copy()
        st["_hk"] = None
        return st

    def check_compatible(self, res: HFResult, what: str = "HF result") -> None:
        """Raise InputError when ``res`` was produced by a different system."""
        if res.fingerprint != self.fingerprint:
            raise InputError(f"{what} belongs to another system (fingerprint {res.fingerprint}, this system "
                             f"{self.fingerprint}: different geometry, hoppings, k-mesh or Coulomb parameters)")

    # ------------------------------------------------------------------ building blocks
    @property
    def hk_mesh(self) -> np.ndarray:
        """(nk, N, N) TB Bloch Hamiltonians on the mesh (cached)."""
        if self._hk is None:
            self._hk = np.stack([self.model.hk(k) for k in self.k_frac])
        return self._hk

    def _fock_k(self, F: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slot values of the Fock matrix at k from half-list pair values F (npair,)."""
        ph = np.exp(2j * math.pi * (self.pR @ k))
        v = np.concatenate([F * ph, F * ph.conj()])
        vals = np.bincount(self._slot_inv, weights=v.real, minlength=len(self._slots)) + 1j * np.bincount(
            self._slot_inv, weights=v.imag, minlength=len(self._slots))
        return self._slots, vals

    def _potentials(self, n: np.ndarray, rho: np.ndarray, U: float, kT: float) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal potentials v (2, N) and Fock pair values F (2, npair) of the state (n, ρ)."""
        n0, rho0, _ = self.reference(kT)
        dn = n - n0[:, None]
        v = np.empty((2, self.n_orb))
        v[0] = U * dn[:, 1]
        v[1] = U * dn[:, 0]
        if self.W is not None:
            v += self.W @ dn.sum(axis=1)
        F = -self.pV[None, :] * (rho - rho0[None, :]) if self.n_pair else np.zeros((2, 0))
        return v, F

    def _energy_int(self, n: np.ndarray, rho: np.ndarray, U: float, kT: float) -> float:
        n0, rho0, _ = self.reference(kT)
        dn = n - n0[:, None]
        e = U * float(dn[:, 0] @ dn[:, 1])
        if self.W is not None:
            dt = dn.sum(axis=1)
            e += 0.5 * float(dt @ self.W @ dt)
        if self.n_pair:
            e -= float(np.sum(self.pV[None, :] * (rho - rho0[None, :]) ** 2))
        return e

    def _h_at(self, hk0: np.ndarray, k: np.ndarray, v: np.ndarray, F: np.ndarray, s: int) -> np.ndarray:
        H = hk0.copy()
        H[np.diag_indices(self.n_orb)] += v[s]
        if self.n_pair:
            slots, vals = self._fock_k(F[s], k)
            H.flat[slots] += vals
        return H

    def _eigh(self, Hs: list[np.ndarray] | np.ndarray, nstates: int | None, vectors: bool = True):
        """Eigen-decomposition of a list of Hermitian matrices; lowest ``nstates`` (None: all)."""
        n = self.n_orb
        if self.backend == "torch":
            import torch

            t = torch.from_numpy(np.ascontiguousarray(np.asarray(Hs)))
            e, V = torch.linalg.eigh(t)
            e, V = e.numpy(), V.numpy()
            if nstates is not None:
                e, V = e[..., :nstates], V[..., :nstates]
            return (e, V) if vectors else e
        if n <= _SMALL:
            if vectors:
                e, V = np.linalg.eigh(np.asarray(Hs))
                return (e, V) if nstates is None else (e[..., :nstates], V[..., :nstates])
            e = np.linalg.eigvalsh(np.asarray(Hs))
            return e if nstates is None else e[..., :nstates]
        from scipy.linalg import eigh

        es, Vs = [], []
        for H in Hs:
            kw = {} if nstates is None or nstates >= n else {"subset_by_index": [0, nstates - 1]}
            if vectors:
                e, V = eigh(H, driver="evr", overwrite_a=True, check_finite=False, **kw)
                Vs.append(V)
            else:
                e = eigh(H, eigvals_only=True, driver="evr", overwrite_a=True, check_finite=False, **kw)
            es.append(e)
        return (es, Vs) if vectors else es

    def _pair_rho(self, A: np.ndarray, k: np.ndarray) -> np.ndarray:
        r"""Re[Σ_n A_in A*_jn e^{−2πik·R}] on the pair list, A = ψ √f (N, m); chunked gathers."""
        out = np.empty(self.n_pair)
        if not self.n_pair:
            return out
        Ar, Ai = np.ascontiguousarray(A.real), np.ascontiguousarray(A.imag)
        ph = np.exp(-2j * math.pi * (self.pR @ k))
        ch = 256
        for s in range(0, self.n_pair, ch):
            a, b = self.pi[s:s + ch], self.pj[s:s + ch]
            xr, xi, yr, yi = Ar[a], Ai[a], Ar[b], Ai[b]
            re = np.einsum("pn,pn->p", xr, yr) + np.einsum("pn,pn->p", xi, yi)
            im = np.einsum("pn,pn->p", xi, yr) - np.einsum("pn,pn->p", xr, yi)
            p = ph[s:s + ch]
            out[s:s + ch] = re * p.real - im * p.imag
        return out

    def _build_batch(self, hk: np.ndarray, ks: np.ndarray, v: np.ndarray, F: np.ndarray) -> np.ndarray:
        """Vectorised (nk, 2, N, N) mean-field Hamiltonians (small systems / batched backends)."""
        N = self.n_orb
        H = np.repeat(hk[:, None], 2, axis=1)
        idx = np.arange(N)
        H[:, :, idx, idx] += v[None, :, :]
        if self.n_pair:
            ph = np.exp(2j * math.pi * (ks @ self.pR.T))  # (nk, npair)
            for s in range(2):
                vals = np.concatenate([F[s] * ph, F[s] * ph.conj()], axis=1)  # (nk, 2 npair)
                acc = np.zeros((len(ks), len(self._slots)), complex)
                for q in range(len(ks)):
                    acc[q] = np.bincount(self._slot_inv, weights=vals[q].real, minlength=len(self._slots)) + \
                        1j * np.bincount(self._slot_inv, weights=vals[q].imag, minlength=len(self._slots))
                Hf = H[:, s].reshape(len(ks), N * N)
                Hf[:, self._slots] += acc
                H[:, s] = Hf.reshape(len(ks), N, N)
        return H

    def _diagonalise(self, v: np.ndarray, F: np.ndarray, n_electrons: float, kT: float,
                     margin: int | None = None):
        """One mean-field step: H_σ(k) → eigenpairs → μ → (n_out (N,2), ρ_out (2,npair), band energy, μ, eigs)."""
        N, nk = self.n_orb, len(self.k_frac)
        hk = self.hk_mesh
        batched = N <= _SMALL or self.backend == "torch"
        if batched:
            e, V = self._eigh(self._build_batch(hk, self.k_frac, v, F).reshape(nk * 2, N, N), None)
            E, V = np.asarray(e).reshape(nk, 2, N), np.asarray(V).reshape(nk, 2, N, N)
            mu = solve_fermi_level(E, self.weights, n_electrons, kT)
        else:
            nstates = min(N, int(math.ceil(n_electrons / 2)) + (max(8, N // 20) if margin is None else margin))
            while True:
                eigs, vecs = [], []
                for q in range(nk):
                    for s in range(2):
                        e, Vq = self._eigh([self._h_at(hk[q], self.k_frac[q], v, F, s)], nstates)
                        eigs.append(e[0])
                        vecs.append(Vq[0])
                E = np.array(eigs).reshape(nk, 2, -1)
                mu = solve_fermi_level(E, self.weights, n_electrons, kT)
                if nstates >= N or E[..., -1].min() > mu + 36 * kT:
                    break
                nstates = min(N, 2 * nstates)  # some k holds more occupied states than requested: redo
        f = fermi_dirac(E, mu, kT)
        eband = float(np.einsum("q,qsn,qsn->", self.weights, E, f))
        n_out = np.zeros((N, 2))
        rho_out = np.zeros((2, self.n_pair))
        if batched:
            A = V * np.sqrt(f)[:, :, None, :]
            n_out = np.einsum("q,qsin->is", self.weights, (A * A.conj()).real)
            if self.n_pair:
                for s in range(2):
                    rk = np.einsum("qin,qjn->qij", A[:, s], A[:, s].conj())[:, self.pi, self.pj]  # (nk, npair)
                    ph = np.exp(-2j * math.pi * (self.k_frac @ self.pR.T))
                    rho_out[s] = self.weights @ (rk * ph).real
            return n_out, rho_out, eband, mu, E
        for q in range(nk):
            for s in range(2):
                fq = f[q, s]
                occ = fq > 1e-15
                A = vecs[2 * q + s][:, occ] * np.sqrt(fq[occ])[None, :]
                wq = self.weights[q]
                n_out[:, s] += wq * (np.einsum("im,im->i", A.real, A.real) + np.einsum("im,im->i", A.imag, A.imag))
                if self.n_pair:
                    rho_out[s] += wq * self._pair_rho(A, self.k_frac[q])
        return n_out, rho_out, eband, mu, E

    def reference(self, kT: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Non-interacting neutral reference: (n⁰ (N,) per spin, ρ⁰ (npair,) per spin, μ⁰), cached per kT."""
        key = round(float(kT), 12)
        if key not in self._ref:
            z = np.zeros((2, self.n_orb))
            zf = np.zeros((2, self.n_pair))
            n, rho, _, mu, _ = self._diagonalise(z, zf, float(self.n_orb), kT)
            self._ref[key] = (0.5 * (n[:, 0] + n[:, 1]), 0.5 * (rho[0] + rho[1]), mu)
        return self._ref[key]

    # ------------------------------------------------------------------ public API
    def _state_vector(self, n: np.ndarray, rho: np.ndarray) -> np.ndarray:
        return np.concatenate([n.T.ravel(), rho.ravel()])

    def _unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        N = self.n_orb
        return x[:2 * N].reshape(2, N).T.copy(), x[2 * N:].reshape(2, self.n_pair).copy()

    def initial_state(self, init: str, filling: float, kT: float, amplitude: float = 0.1,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(n (N,2), ρ (2,npair)) of a named seed pattern on top of the neutral reference.

        ``paramagnetic``: reference + ν/N per site; ``afm``: ± amplitude/2 per spin with the sign of the
        sublattice (−1)^s; ``ferro``: +amplitude/2 on ↑, −amplitude/2 on ↓; ``random``: uniform moments
        in [−amplitude, amplitude] drawn with ``seed``.
        """
        if init not in INITS:
            raise InputError(f"unknown initial state {init!r}; allowed: {', '.join(INITS)}")
        n0, rho0, _ = self.reference(kT)
        n = np.repeat(n0[:, None], 2, axis=1) + filling / (2.0 * self.n_orb)
        n += self._seed_moment(init, amplitude, seed)
        return np.clip(n, 0.0, 1.0), np.repeat(rho0[None, :], 2, axis=0)

    def _seed_moment(self, init: str, amplitude: float, seed: int) -> np.ndarray:
        N = self.n_orb
        if init == "paramagnetic":
            m = np.zeros(N)
        elif init == "afm":
            m = amplitude * (1.0 - 2.0 * self.sublattice)
        elif init == "ferro":
            m = np.full(N, amplitude)
        else:
            m = np.random.default_rng(seed).uniform(-amplitude, amplitude, N)
        return np.column_stack([0.5 * m, -0.5 * m])

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
        n, rho = self.initial_state("paramagnetic", filling, kT)
        d = self._seed_moment(pattern, amplitude, seed)
        d = d[:, 0] - d[:, 1]
        g = 0.0
        for _ in range(max(1, int(power_iters))):
            v, F = self._potentials(n + np.column_stack([0.5 * d, -0.5 * d]), rho, float(U), kT)
            n_out, *_ = self._diagonalise(v, F, self.n_orb + filling, kT)
            m_out = n_out[:, 0] - n_out[:, 1]
            g = float(d @ m_out / (d @ d))
            big = float(np.abs(m_out).max())
            if big == 0.0:
                break
            d = m_out * (amplitude / big)
        return g

    def solve(self, U: float = 0.0, filling: float = 0.0, kT: float = 0.001, init: str = "afm", seed: int = 0,
              mixer: str = "anderson", mixing_weight: float = 0.3, mixing_history: int = 8,
              tol: float = 1e-6, energy_tol: float = 1e-7, max_iter: int = 300, init_amplitude: float = 1.0,
              anderson_start: float = 1e-2,
              warm_start: HFResult | None = None, checkpoint: str | Path | None = None,
              checkpoint_every: int = 5, progress: Callable[[dict], None] | None = None,
              config: dict | None = None) -> HFResult:
        r"""Self-consistent solve.

        Parameters
        ----------
        U : Hubbard U (eV, ≥ 0)
        filling : ν ∈ [−4, 4], electrons per moiré cell relative to neutrality (N + ν electrons)
        kT : temperature (eV, > 0), Fermi–Dirac occupations, μ by bisection every iteration
        init, seed, init_amplitude : seed pattern (see :meth:`initial_state`)
        mixer, mixing_weight, mixing_history : density mixer (:mod:`moireu.hf.mixing`)
        anderson_start : the quasi-Newton mixer takes over from damped linear mixing once the
            residual is below this (and hands back when the residual grows 20× past it)
        tol : convergence threshold on max |ρ_out − ρ_in| over the site occupations and the
            exchange pair list (density-matrix residual)
        energy_tol : and on |E_m − E_{m−1}| (eV per moiré cell)
        max_iter : iteration limit; reaching it returns a result with ``converged = False``
        warm_start : start from this result's density matrix (same system). If it is (nearly)
            non-magnetic and ``init`` is not paramagnetic, the ``init`` seed moment is added so that
            a symmetry-broken solution can still develop.
        checkpoint : file written every ``checkpoint_every`` iterations; if it exists when the
            solve starts, the solve resumes from it (it must come from this system and the same U, ν, kT)
        progress : called after every iteration with a dict (iteration, residual, energy, mu,
            max_moment, seconds)

        Returns
        -------
        HFResult (``converged`` tells whether both criteria were met)
        """
        U, filling, kT = float(U), float(filling), float(kT)
        if not (math.isfinite(U) and U >= 0):
            raise InputError(f"Hubbard U must be ≥ 0 eV, got {U!r}")
        if not (math.isfinite(filling) and abs(filling) <= 4.0):
            raise InputError(f"filling ν must lie in [−4, 4], got {filling!r}")
        if not (math.isfinite(kT) and kT > 0):
            raise InputError(f"kT must be > 0 eV, got {kT!r}")
        if init not in INITS:
            raise InputError(f"unknown initial state {init!r}; allowed: {', '.join(INITS)}")
        if tol <= 0 or energy_tol <= 0 or max_iter < 1:
            raise InputError(f"need tol > 0, energy_tol > 0 and max_iter ≥ 1; got {tol}, {energy_tol}, {max_iter}")
        n_el = self.n_orb + filling
        if not 0 <= n_el <= 2 * self.n_orb:
            raise InputError(f"filling ν = {filling} does not fit in a cell of {self.n_orb} orbitals")
        mix = make_mixer(mixer, mixing_weight, mixing_history)
        opts = {"U": U, "filling": filling, "kT": kT, "init": init, "seed": int(seed), "mixer": str(mixer),
                "mixing_weight": mixing_weight, "mixing_history": mixing_history, "tol": tol,
                "energy_tol": energy_tol, "max_iter": max_iter, "init_amplitude": init_amplitude,
                "anderson_start": anderson_start}
        probed = 0
        res_hist: list[float] = []
        e_hist: list[float] = []
        start_iter = 0
        t0 = time.perf_counter()
        prior_seconds = 0.0
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if ckpt is not None and ckpt.exists():
            prev = HFResult.load(ckpt, system=self)
            if (abs(prev.U - U) > 1e-12 or abs(prev.filling - filling) > 1e-12 or abs(prev.kT - kT) > 1e-15):
                raise InputError(f"checkpoint {str(ckpt)!r} is for U={prev.U}, ν={prev.filling}, kT={prev.kT}, "
                                 f"not U={U}, ν={filling}, kT={kT}; remove it or choose another path")
            n, rho = prev.occupations.copy(), prev.pair_density.copy()
            res_hist, e_hist = list(prev.residual_history), list(prev.energy_history)
            start_iter, prior_seconds = prev.iterations, prev.seconds
        elif warm_start is not None:
            self.check_compatible(warm_start, what="warm-start result")
            n, rho = warm_start.occupations.copy(), warm_start.pair_density.copy()
            n += (filling - warm_start.filling) / (2.0 * self.n_orb)
            if init != "paramagnetic" and warm_start.max_moment < 1e-3 and U > 0:
                # non-magnetic start: seed the pattern only where the non-magnetic state is unstable
                # (one diagonalisation), so sub-critical points converge in a few iterations
                g = self.instability(U, filling, kT, init, 1e-4, seed)
                opts["stability_growth"] = g
                probed = 1
                if g > 1.0 + 1e-6:
                    n = np.clip(n + self._seed_moment(init, init_amplitude, seed), 0.0, 1.0)
        else:
            n, rho = self.initial_state(init, filling, kT, init_amplitude, seed)
        x = self._state_vector(n, rho)
        converged = False
        # damped linear mixing until the residual is below anderson_start: quasi-Newton mixers find
        # *any* root of ρ_out − ρ_in, including unstable saddles far from the start
        linear_until = anderson_start if mixer != "linear" else 0.0
        r_switch = anderson_start
        E_last = math.nan
        mu = math.nan
        it = start_iter
        eigs = None
        for it in range(start_iter + 1, start_iter + max_iter + 1):
            n_in, rho_in = self._unpack(x)
            v, F = self._potentials(n_in, rho_in, U, kT)
            n_out, rho_out, eband, mu, eigs = self._diagonalise(v, F, n_el, kT)
            # energy of the output density: Tr[H_TB ρ_out] + E_int[δρ_out]
            e_tb = eband - float(np.sum(v.T * n_out)) - 2.0 * float(np.sum(F * rho_out))
            E = e_tb + self._energy_int(n_out, rho_out, U, kT)
            x_out = self._state_vector(n_out, rho_out)
            r = float(np.abs(x_out - x).max())
            dE = abs(E - E_last) if math.isfinite(E_last) else math.inf
            res_hist.append(r)
            e_hist.append(E)
            E_last = E
            if progress is not None:
                m = n_out[:, 0] - n_out[:, 1]
                progress({"iteration": it, "residual": r, "energy": E, "dE": dE, "mu": mu,
                          "max_moment": float(np.abs(m).max()), "seconds": time.perf_counter() - t0})
            if r < tol and dE < energy_tol:
                n_c = self._unpack(x_out)[0]
                if (init != "paramagnetic" and probed < 3 and U > 0
                        and float(np.abs(n_c[:, 0] - n_c[:, 1]).max()) < 1e-4):
                    # a quasi-Newton mixer also converges onto the unstable non-magnetic root: probe it
                    probed += 1
                    g = self.instability(U, filling, kT, init, 1e-4, seed)
                    opts["stability_growth"] = g
                    if g > 1.0 + 1e-6:
                        # unstable: restart from the seed with plain linear mixing until the ordered
                        # state is approached (residual < 1e-3), then quasi-Newton again
                        amp = max(init_amplitude, 0.5)
                        x = self._state_vector(np.clip(n_c + self._seed_moment(init, amp, seed), 0, 1),
                                               self._unpack(x_out)[1])
                        mix.reset()
                        linear_until = min(anderson_start, 1e-3)
                        E_last = math.nan
                        continue
                converged = True
                x = x_out
                break
            if linear_until > 0 and r > linear_until:
                x = x + mixing_weight * (x_out - x)
            else:
                if linear_until > 0:
                    mix.reset()
                    linear_until = 0.0
                    r_switch = r
                if r > 20.0 * max(r_switch, anderson_start):  # the quasi-Newton history went astray
                    linear_until = anderson_start
                    x = x + mixing_weight * (x_out - x)
                else:
                    x = mix(x, x_out)
            if ckpt is not None and (it - start_iter) % checkpoint_every == 0:
                self._result(x, mu, E, False, it, res_hist, e_hist, opts, None, U, filling, kT,
                             prior_seconds + time.perf_counter() - t0, config).save(ckpt)
        n_fin, rho_fin = self._unpack(x)
        # band energies on the mesh from the final density (eigenvalues only)
        v, F = self._potentials(n_fin, rho_fin, U, kT)
        bands = self.spectrum_from_potentials(v, F, self.k_frac, vectors=False)
        res = self._result(x, mu, E_last, converged, it, res_hist, e_hist, opts, bands, U, filling, kT,
                           prior_seconds + time.perf_counter() - t0, config)
        if ckpt is not None:
            res.save(ckpt)
        return res

    def _result(self, x, mu, E, converged, it, res_hist, e_hist, opts, bands, U, filling, kT, seconds,
                config) -> HFResult:
        n, rho = self._unpack(x)
        meta = {"options": opts, "system": self.describe()}
        if config is not None:
            meta["config"] = config
        return HFResult(occupations=n, pair_density=rho, band_energies=bands, fermi_level=float(mu),
                        total_energy=float(E), converged=bool(converged), iterations=int(it),
                        residual_history=np.asarray(res_hist, float), energy_history=np.asarray(e_hist, float),
                        U=U, filling=filling, kT=kT, sublattice=self.sublattice.copy(), layer=self.layer.copy(),
                        fingerprint=self.fingerprint, seconds=float(seconds), meta=meta)

    # ------------------------------------------------------------------ for the STM stage
    def _fock_bloch(self, F: np.ndarray, k: np.ndarray) -> np.ndarray:
        M = np.zeros((self.n_orb, self.n_orb), complex)
        if self.n_pair:
            slots, vals = self._fock_k(F, k)
            M.flat[slots] = vals
        return M

    def hamiltonian(self, res: HFResult, k_frac) -> np.ndarray:
        """Mean-field Bloch Hamiltonians of ``res``: (2, N, N) for one k, (nk, 2, N, N) for (nk, 2)."""
        self.check_compatible(res)
        v, F = self._potentials(res.occupations, res.pair_density, res.U, res.kT)
        k = np.asarray(k_frac, float)
        ks = np.atleast_2d(k)
        out = np.empty((len(ks), 2, self.n_orb, self.n_orb), complex)
        for q, kk in enumerate(ks):
            h0 = self.model.hk(kk)
            for s in range(2):
                out[q, s] = h0 + self._fock_bloch(F[s], kk)
                out[q, s][np.diag_indices(self.n_orb)] += v[s]
        return out[0] if k.ndim == 1 else out

    def spectrum_from_potentials(self, v: np.ndarray, F: np.ndarray, k_frac, vectors: bool = True):
        ks = np.atleast_2d(np.asarray(k_frac, float))
        N = self.n_orb
        if N <= _SMALL:
            same = ks.shape == self.k_frac.shape and np.array_equal(ks, self.k_frac)
            hk = self.hk_mesh if same else np.stack([self.model.hk(kk) for kk in ks])
            H = self._build_batch(hk, ks, v, F)
            if vectors:
                return np.linalg.eigh(H)
            return np.linalg.eigvalsh(H)
        E = np.empty((len(ks), 2, N))
        V = np.empty((len(ks), 2, N, N), complex) if vectors else None
        for q, kk in enumerate(ks):
            h0 = self.model.hk(kk)
            Hs = [self._h_at(h0, kk, v, F, s) for s in range(2)]
            if vectors:
                e, vec = self._eigh(Hs, None)
                E[q], V[q] = np.asarray(e), np.asarray(vec)
            else:
                E[q] = np.asarray(self._eigh(Hs, None, vectors=False))
        return (E, V) if vectors else E

    def spectrum(self, res: HFResult, k_frac, weights=None, vectors: bool = True):
        """Eigenvalues (nk, 2, N) (and eigenvectors (nk, 2, N, N), columns) of the mean-field H of ``res``.

        ``weights`` (nk,) is accepted for symmetry with the LDOS code and only validated.
        """
        self.check_compatible(res)
        ks = np.atleast_2d(np.asarray(k_frac, float))
        if weights is not None and len(np.atleast_1d(weights)) != len(ks):
            raise InputError(f"{len(np.atleast_1d(weights))} weights for {len(ks)} k-points")
        v, F = self._potentials(res.occupations, res.pair_density, res.U, res.kT)
        return self.spectrum_from_potentials(v, F, ks, vectors=vectors)
