r"""The one self-consistent-field driver: mixing, restarts, convergence, instability re-seeding, checkpoints.

Physics parameters (:class:`~moireu.hf.terms.Params`: U, ν, kT) are passed by name and kept apart
from the numerical options (:class:`SCFOptions`), as kwant's ``params=``. One iteration is

    ρ_in → Σ[ρ_in − ρ⁰] (all terms) → H_σ(k) → eigenpairs, μ → ρ_out, E[ρ_out] → mixer → ρ_in'

with the residual :math:`r = \max|\rho_{out} - \rho_{in}|` over the site occupations and the
exchange pair list. Convergence: :math:`r <` ``tol`` and :math:`|E_m - E_{m-1}| <` ``energy_tol``.

Seeds and re-seeding: a cold solve starts from a moment pattern (``init``) of amplitude
``init_amplitude`` on the neutral reference. A quasi-Newton mixer can converge onto the
non-magnetic saddle (a solution at every U in the subtraction convention); when a solve with a
magnetic seed converges to a state without moment, the driver measures the growth factor of the
seed pattern (:meth:`HFSystem.instability`) and, if the non-magnetic state is unstable, re-seeds
with the pattern and continues (up to three times).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from moireu.errors import InputError
from moireu.hf.mixing import AdaptiveMixer, Mixer
from moireu.hf.result import HFResult
from moireu.hf.terms import INITS, Density, Params
from moireu.lattice.bands import fermi_solve

__all__ = ["SCFOptions", "run_scf"]


@dataclass(frozen=True)
class SCFOptions:
    """Numerical options of one solve (none of them changes the physics of a converged result).

    Parameters
    ----------
    init : seed pattern "paramagnetic", "afm", "ferro" or "random" (:meth:`HFSystem.initial_state`)
    seed : random seed of the "random" pattern
    init_amplitude : seed moment per site (0 … 1)
    mixer, mixing_weight, mixing_history : the quasi-Newton mixer (:mod:`moireu.hf.mixing`)
    anderson_start : damped linear mixing while the residual exceeds this, then quasi-Newton
    stall_window : restart the mixer from the best iterate when the residual has not halved
        over this many iterations (:class:`~moireu.hf.mixing.AdaptiveMixer`)
    tol : convergence threshold on max ``|ρ_out − ρ_in|``
    energy_tol : and on ``|E_m − E_{m−1}|`` (eV per moiré cell)
    max_iter : iteration limit; reaching it returns a result with ``converged = False``
    checkpoint_every : iterations between checkpoint writes
    anneal_kT : occupation temperature (eV) a *cold* solve from a moment seed starts from (0 or
        ≤ kT: none); it is
        halved whenever the residual at the current temperature drops below ``anneal_tol`` (or
        after ``stall_window`` iterations at it) until it reaches the physical kT, and raised back
        to it when the residual stagnates at kT. A flat band at E_F puts dozens of levels within a
        few kT of μ whose occupations feed back through U with a gain ≫ 1; at a larger smearing
        that map is smooth and the quasi-Newton mixer walks into the basin, which the smaller
        temperatures then keep (the reference ρ⁰ and every result use the physical kT).
    anneal_tol : residual that ends an annealing stage
    single_precision_until : eigensolves run in single precision (≈ 3× faster) while the residual
        of the previous iteration exceeds this; the first and the last iterations, and every
        convergence decision, are in double precision (0 disables). Default 1e-5, a decade above
        the usual tolerance, where the single-precision residuals still follow the double-precision
        ones (timing in benchmarks/README.md, "HF chain")
    """

    init: str = "afm"
    seed: int = 0
    init_amplitude: float = 1.0
    mixer: str = "anderson"
    mixing_weight: float = 0.3
    mixing_history: int = 8
    anderson_start: float = 0.1
    stall_window: int = 8
    tol: float = 1e-6
    energy_tol: float = 1e-7
    max_iter: int = 300
    checkpoint_every: int = 5
    single_precision_until: float = 1e-5
    anneal_kT: float = 0.004
    anneal_tol: float = 3e-4

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise InputError(f"unknown initial state {self.init!r}; allowed: {', '.join(INITS)}")
        if not (self.tol > 0 and self.energy_tol > 0 and self.max_iter >= 1):
            raise InputError(f"need tol > 0, energy_tol > 0 and max_iter ≥ 1; got {self.tol}, {self.energy_tol}, "
                             f"{self.max_iter}")
        if not (math.isfinite(self.init_amplitude) and 0.0 <= self.init_amplitude <= 1.0):
            raise InputError(f"init_amplitude must lie in [0, 1], got {self.init_amplitude!r}")
        if not (math.isfinite(self.anneal_kT) and self.anneal_kT >= 0 and self.anneal_tol > 0):
            raise InputError(f"need anneal_kT ≥ 0 and anneal_tol > 0; got {self.anneal_kT!r}, {self.anneal_tol!r}")
        if not (math.isfinite(self.single_precision_until) and self.single_precision_until >= 0):
            raise InputError(f"single_precision_until must be ≥ 0, got {self.single_precision_until!r}")
        if self.stall_window < 2 or self.checkpoint_every < 1:
            raise InputError(f"need stall_window ≥ 2 and checkpoint_every ≥ 1; got {self.stall_window}, "
                             f"{self.checkpoint_every}")
        Mixer(self.mixer, self.mixing_weight, self.mixing_history)  # validates the mixer options


def _start(system, p: Params, opt: SCFOptions, warm_start: HFResult | None, ckpt: Path | None):
    """Initial density, earlier history (from a checkpoint) and solve metadata."""
    meta: dict = {}
    if ckpt is not None and ckpt.exists():
        prev = HFResult.load(ckpt, system=system)
        if abs(prev.U - p.U) > 1e-12 or abs(prev.filling - p.filling) > 1e-12 or abs(prev.kT - p.kT) > 1e-15:
            raise InputError(f"checkpoint {str(ckpt)!r} is for U={prev.U}, ν={prev.filling}, kT={prev.kT}, "
                             f"not U={p.U}, ν={p.filling}, kT={p.kT}; remove it or choose another path")
        return (Density(prev.occupations.copy(), prev.pair_density.copy()), list(prev.residual_history),
                list(prev.energy_history), prev.iterations, prev.seconds, 0, meta)
    if warm_start is not None:
        chain = [warm_start] if isinstance(warm_start, HFResult) else [r for r in warm_start if r is not None]
        if not chain:
            raise InputError("warm_start is an empty sequence of results")
        for r in chain:
            system.check_compatible(r, what="warm-start result")
        warm_start = chain[-1]
        d = Density(warm_start.occupations.copy(), warm_start.pair_density.copy())
        if len(chain) >= 2:
            d, meta["extrapolated_from_U"] = _extrapolate(chain[-2], warm_start, p, d)
        d.n += (p.filling - warm_start.filling) / (2.0 * system.n_orb)
        probed = 0
        if opt.init != "paramagnetic" and warm_start.max_moment < 1e-3 and p.U > 0:
            # non-magnetic start: seed the pattern only where the non-magnetic state is unstable
            # (one diagonalisation), so sub-critical points converge in a few iterations
            g = system.instability(p.U, p.filling, p.kT, opt.init, 1e-4, opt.seed)
            meta["stability_growth"] = g
            probed = 1
            if g > 1.0 + 1e-6:
                d.n = np.clip(d.n + system.seed_moment(opt.init, opt.init_amplitude, opt.seed), 0.0, 1.0)
        return d, [], [], 0, 0.0, probed, meta
    return system.initial_state(opt.init, p.filling, p.kT, opt.init_amplitude, opt.seed), [], [], 0, 0.0, 0, meta


def _extrapolate(r0: HFResult, r1: HFResult, p: Params, d1: Density) -> tuple[Density, list[float]]:
    r"""Linear extrapolation along U from two converged points of a chain (same ν, kT):
    :math:`\rho(U) \approx \rho_1 + \frac{U - U_1}{U_1 - U_0}(\rho_1 - \rho_0)`, an O(ΔU²) start
    instead of the O(ΔU) of the last point alone. Skipped (``d1`` returned) when the points do not
    qualify: unconverged, other filling/kT, equal U, or a step longer than the last interval."""
    ok = (r0.converged and r1.converged and abs(r0.filling - r1.filling) < 1e-12 and abs(r0.kT - r1.kT) < 1e-15
          and abs(r1.filling - p.filling) < 1e-12 and abs(r1.U - r0.U) > 1e-9)
    if not ok:
        return d1, []
    t = (p.U - r1.U) / (r1.U - r0.U)
    if not 0.0 < t <= 1.0 + 1e-9:
        return d1, []
    n = np.clip(r1.occupations + t * (r1.occupations - r0.occupations), 0.0, 1.0)
    rho = r1.pair_density + t * (r1.pair_density - r0.pair_density)
    return Density(n, rho), [float(r0.U), float(r1.U)]


def run_scf(system, p: Params, *, warm_start: HFResult | Sequence[HFResult] | None = None, checkpoint: str | Path | None = None,
            progress: Callable[[dict], None] | None = None, config: dict | None = None,
            **options) -> HFResult:
    r"""Self-consistent solve of ``system`` at the physics parameters ``p``.

    Parameters
    ----------
    system : :class:`moireu.hf.HFSystem`
    p : :class:`~moireu.hf.terms.Params` (U, ν, kT)
    warm_start : start from this result's density matrix (same system), or from a sequence of
        results of a U chain (the last two, when converged, are extrapolated linearly to this U).
        If the start is (nearly) non-magnetic and ``init`` is not paramagnetic, the ``init`` seed
        moment is added where the non-magnetic state is unstable.
    checkpoint : file written every ``checkpoint_every`` iterations; if it exists when the
        solve starts, the solve resumes from it (it must come from this system and the same U, ν, kT)
    progress : called after every iteration with a dict (iteration, residual, energy, dE, mu,
        max_moment, seconds, restarts)
    config : resolved run configuration stored in the result's metadata
    **options : :class:`SCFOptions` fields

    Returns
    -------
    HFResult (``converged`` tells whether both criteria were met)
    """
    unknown = set(options) - set(SCFOptions.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown solve option(s) {sorted(unknown)}; allowed: "
                         f"{sorted(SCFOptions.__dataclass_fields__)}")
    opt = SCFOptions(**options)
    n_el = system.n_orb + p.filling
    if not 0 <= n_el <= 2 * system.n_orb:
        raise InputError(f"filling ν = {p.filling} does not fit in a cell of {system.n_orb} orbitals")
    ckpt = Path(checkpoint) if checkpoint is not None else None
    d, res_hist, e_hist, start_iter, prior_seconds, probed, meta = _start(system, p, opt, warm_start, ckpt)
    opts = asdict(opt) | p.as_dict() | meta
    mixer = AdaptiveMixer(opt.mixer, opt.mixing_weight, opt.mixing_history,
                          anderson_start=opt.anderson_start if warm_start is None and start_iter == 0 else math.inf,
                          stall_window=opt.stall_window)
    t0 = time.perf_counter()
    x = d.vector()
    converged = False
    E_last = mu = math.nan
    homo = lumo = math.nan
    it = start_iter
    N = system.n_orb

    def result(xv, conv, bands=None) -> HFResult:
        dd = Density.from_vector(xv, N)
        m = {"options": opts | {"restarts": mixer.restarts}, "system": system.describe()}
        if config is not None:
            m["config"] = config
        return HFResult(occupations=dd.n, pair_density=dd.rho, band_energies=bands, fermi_level=float(mu),
                        total_energy=float(E_last), converged=bool(conv), iterations=int(it),
                        residual_history=np.asarray(res_hist, float), energy_history=np.asarray(e_hist, float),
                        U=p.U, filling=p.filling, kT=p.kT, sublattice=system.sublattice.copy(),
                        layer=system.layer.copy(), fingerprint=system.fingerprint,
                        seconds=float(prior_seconds + time.perf_counter() - t0), meta=m,
                        homo=float(homo), lumo=float(lumo))

    r_prev = 0.0  # the first iteration in double precision: it measures how far the start is
    # annealing targets the on-site feedback (gain ∝ U × DOS at E_F); at U = 0 it only slows the solve
    # (demo preset, U = 0, cold AF seed: 23 iterations without, no convergence in 160 with)
    anneal = opt.anneal_kT > 1.5 * p.kT and p.U > 0
    cold = warm_start is None and start_iter == 0 and opt.init != "paramagnetic"
    kT_occ = max(p.kT, opt.anneal_kT) if cold and anneal else p.kT  # occupation temperature (annealed down to kT)
    stage_it = 0
    re_anneals = 0  # re-annealing after a stall at kT happens at most once (no restart/anneal cycle)
    for it in range(start_iter + 1, start_iter + opt.max_iter + 1):
        pot = system.potential(Density.from_vector(x, N), p)
        single = r_prev > opt.single_precision_until > 0 and getattr(system, "single_precision", True)
        st = system.step(pot, n_el, kT_occ, single=single)
        stage_it += 1
        E = system.energy(st, pot, p)
        mu, homo, lumo = st.mu, st.homo, st.lumo
        x_out = st.density.vector()
        r = float(np.abs(x_out - x).max())
        dE = abs(E - E_last) if math.isfinite(E_last) else math.inf
        res_hist.append(r)
        e_hist.append(E)
        E_last = E
        r_prev = r
        if progress is not None:
            m = st.density.n[:, 0] - st.density.n[:, 1]
            progress({"iteration": it, "residual": r, "energy": E, "dE": dE, "mu": mu,
                      "max_moment": float(np.abs(m).max()), "seconds": time.perf_counter() - t0,
                      "restarts": mixer.restarts, "kT_occ": kT_occ})
        if kT_occ > p.kT and (r < opt.anneal_tol or stage_it > opt.stall_window):
            # next annealing stage: a new map, so a new quasi-Newton history from the output
            kT_occ = max(p.kT, 0.5 * kT_occ) if kT_occ > 1.5 * p.kT else p.kT
            stage_it = 0
            x = mixer(x, x_out, r)
            mixer.reset(anderson_start=math.inf)
            E_last = math.nan
            continue
        if r < opt.tol and dE < opt.energy_tol and not single:
            m_c = st.density.n[:, 0] - st.density.n[:, 1]
            if opt.init != "paramagnetic" and probed < 3 and p.U > 0 and float(np.abs(m_c).max()) < 1e-4:
                # landed on the non-magnetic root: is it unstable against the seed pattern?
                probed += 1
                g = system.instability(p.U, p.filling, p.kT, opt.init, 1e-4, opt.seed)
                opts["stability_growth"] = g
                if g > 1.0 + 1e-6:
                    amp = max(opt.init_amplitude, 0.5)
                    dn = np.clip(st.density.n + system.seed_moment(opt.init, amp, opt.seed), 0.0, 1.0)
                    x = Density(dn, st.density.rho).vector()
                    mixer.reset(anderson_start=1e-3)
                    E_last = math.nan
                    continue
            converged = True
            x = x_out
            break
        restarts = mixer.restarts
        x = mixer(x, x_out, r)
        if mixer.restarts > restarts and anneal and kT_occ == p.kT and re_anneals < 1:
            # stagnation at the physical temperature: anneal again from the best iterate (once)
            kT_occ, stage_it = max(p.kT, 0.5 * opt.anneal_kT), 0
            re_anneals += 1
            mixer.reset(anderson_start=math.inf)
        if ckpt is not None and (it - start_iter) % opt.checkpoint_every == 0:
            result(x, False).save(ckpt)
    # band energies on the mesh of the final density (eigenvalues only)
    pot = system.potential(Density.from_vector(x, N), p)
    bands = np.asarray(system.spectrum_from_potentials(pot, system.k_frac, vectors=False))
    if math.isfinite(E_last):
        fl = fermi_solve(bands, system.weights, n_el, p.kT)  # μ, HOMO, LUMO consistent with the bands
        mu, homo, lumo = fl.mu, fl.homo, fl.lumo
    res = result(x, converged, bands)
    if ckpt is not None:
        res.save(ckpt)
    return res
