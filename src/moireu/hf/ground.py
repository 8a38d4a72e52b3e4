"""Ground-state selection: solve one point from several starts, keep the lowest-energy solution.

Self-consistent Hartree–Fock finds *a* stationary point of the energy functional — the one whose
basin the start lies in. Where two mean-field states coexist (a first-order transition) the state a
solve ends in depends on its start, so a sweep that warm-starts every point from its neighbour
follows one branch past the crossing (hysteresis), and points of one dataset solved along different
paths sit on different branches. Measured on the demo preset (TBG i = 7, ε = 10, Fock on): a
non-magnetic state with a Hartree charge redistribution and a weakly magnetic one (max moment
≈ 0.04) coexist below U ≈ 2 eV, E(mag) − E(NM) = +11.6 / +4.0 / −2.0 / −12.1 meV at U = 0.5 / 1.0 /
1.39 / 2.0 eV — a crossing at U ≈ 1.2 eV.

:func:`ground_state` solves the point from the *candidate* starts of :data:`CANDIDATES` and keeps the
converged solution of lowest total energy (the usual practice of comparing HF solutions from
several initial conditions; a dataset build can also sweep its points up and down in U and keep the
lower state, ``dataset.sweep``, :func:`moireu.data.jobs.sweep_task`):

``warm``
    the warm start given (a chain predecessor, or two for the linear extrapolation in U);
``seed``
    a cold start from the configured moment pattern (``init``, e.g. the sublattice antiferromagnet);
``nonmagnetic``
    a spin-symmetric start solved without a moment seed: a spin-symmetric density stays
    spin-symmetric under the mean-field map, so this finds the non-magnetic solution in the basin of
    the start. The start is ``nonmagnetic_start`` — best the U = 0 solution
    (:func:`nonmagnetic_anchor`), which makes this candidate the non-magnetic branch a sweep up from
    U = 0 follows — else the spin average of the warm start, else of the ``seed`` solution (from a
    magnetic state's average the solve can stall near the TB reference instead). Skipped when a
    converged candidate is already non-magnetic;
``reference``
    the non-interacting (TB) density, an exact stationary point at every U in the subtraction
    convention of :mod:`moireu.hf.system` (usually a saddle once exchange is on);
``ferro``
    a cold start from the ferromagnetic pattern. A cold candidate whose pattern was already solved
    (``seed`` with ``init = "ferro"`` or ``"paramagnetic"``) is skipped.
    Measured on the demo preset at U = 2.5 eV: the ferromagnetic start ends 16.8 meV per cell below
    the sublattice-antiferromagnetic seed's state (E = −2851.28389 vs −2851.26706 eV; max moment
    0.043 vs 0.054, staggered 0 vs 0.004), and a warm chain found a third state between them — an
    antiferromagnetic seed alone misses the lowest state, and two stores solved along different
    chains then held different states at the same U.

The codes stored for the branches (``hf_branch``) follow this order, so a new candidate is appended.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from moireu.errors import InputError
from moireu.hf.result import HFResult

__all__ = ["CANDIDATES", "NONMAGNETIC_MOMENT", "ground_state", "is_lower", "lower_bound", "nonmagnetic_anchor", "select",
           "spin_average"]

#: candidate starts, in the order they are tried (ties in energy go to the earlier one)
CANDIDATES = ("warm", "seed", "nonmagnetic", "reference", "ferro")
#: a solution whose largest on-site moment is below this is non-magnetic (spin-symmetric to round-off)
NONMAGNETIC_MOMENT = 1e-6
#: two converged solutions closer than this in energy (eV per cell) and in max moment are one state
SAME_STATE_E = 1e-5
SAME_STATE_M = 1e-3
#: energies this close (eV per cell) are a round-off tie
TIE_E = 1e-9


def spin_average(res: HFResult) -> HFResult:
    """``res`` with ↑ and ↓ replaced by their mean (occupations and pair density): a non-magnetic
    start with the charge distribution of ``res``."""
    n = np.repeat(res.occupations.mean(axis=1, keepdims=True), 2, axis=1)
    rho = np.repeat(res.pair_density.mean(axis=0, keepdims=True), 2, axis=0) if res.pair_density.size else \
        res.pair_density.copy()
    return replace(res, occupations=n, pair_density=rho)


def nonmagnetic_anchor(solve: Callable[..., HFResult], **kwargs: Any) -> HFResult:
    """The spin-averaged U = 0 solution: the start of the ``nonmagnetic`` candidate at every U.

    At U = 0 the exchange and Hartree terms alone act; the lower of the ``seed`` and ``reference``
    solutions is kept (at i = 7 the seeded solve decays to a non-magnetic state with a Hartree–Fock
    charge redistribution, 54 meV per cell below the TB reference). ``kwargs`` as for
    :func:`ground_state` (``U`` is set to 0).
    """
    kw = {k: v for k, v in kwargs.items() if k not in ("warm_start", "checkpoint")} | {"U": 0.0}
    return spin_average(ground_state(solve, candidates=("seed", "reference"), **kw))


def ground_state(solve: Callable[..., HFResult], *, warm_start: HFResult | Sequence[HFResult] | None = None,
                 candidates: Sequence[str] = CANDIDATES, nonmagnetic_start: HFResult | None = None,
                 **kwargs: Any) -> HFResult:
    """Solve one point from each candidate start and return the converged one of lowest energy.

    Parameters
    ----------
    solve : ``HFSystem.solve`` (or any callable with its keywords: ``warm_start``, ``init``, …)
    warm_start : the chain start (one result, or a chain whose last two are extrapolated in U)
    candidates : names from :data:`CANDIDATES`, tried in the order of :data:`CANDIDATES`
    nonmagnetic_start : start of the ``nonmagnetic`` candidate (spin-averaged before use), e.g.
        :func:`nonmagnetic_anchor`; default: the warm start, else the ``seed`` solution
    **kwargs : passed to every solve (``U``, ``filling``, ``kT``, ``init``, numerical options);
        ``checkpoint`` is only used by the first candidate run

    Returns
    -------
    HFResult
        The lowest-energy converged solution (the lowest-residual one when none converged). Its
        ``meta["ground_state"]`` records ``branch`` (the candidate kept), ``energy_margin`` (eV per
        cell from the kept state to the next-lowest *distinct* converged state; NaN when only one
        was found) and per candidate ``converged``, ``iterations``, ``total_energy``, ``max_moment``,
        ``seconds``.
    """
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise InputError(f"unknown or no ground-state candidates {list(unknown) or list(candidates)}; "
                         f"allowed: {', '.join(CANDIDATES)}")
    chain = None if warm_start is None else [warm_start] if isinstance(warm_start, HFResult) else list(warm_start)
    chain = chain or None
    want = [c for c in CANDIDATES if c in candidates]
    if chain is None and "warm" in want and "seed" not in want:
        want.insert(want.index("warm") + 1, "seed")  # no warm start: the configured cold start stands in
    init = kwargs.pop("init", "afm")
    cold = {"seed": init, "reference": "paramagnetic", "ferro": "ferro"}  # cold candidate → seed pattern
    found: dict[str, HFResult] = {}
    for name in want:
        if name == "warm":
            if chain is None:
                continue
            start, kw = chain, {"init": init}
        elif name in cold:
            if any(cold.get(k) == cold[name] for k in found):
                continue  # this seed pattern was solved already (e.g. a configured ``ferro`` seed)
            start, kw = None, {"init": cold[name]}
        else:  # nonmagnetic
            if any(r.converged and r.max_moment < NONMAGNETIC_MOMENT for r in found.values()):
                continue  # the non-magnetic solution of this start was found already
            src = ([nonmagnetic_start] if nonmagnetic_start is not None else chain if chain is not None
                   else [found["seed"]] if "seed" in found else None)
            if src is None:
                continue
            start, kw = [spin_average(r) for r in src], {"init": "paramagnetic"}
        extra = {} if not found else {"checkpoint": None}
        found[name] = solve(**(kwargs | extra | kw), warm_start=start)
    if not found:
        raise InputError(f"ground-state candidates {list(candidates)} gave no start "
                         "(a 'warm' or 'nonmagnetic' candidate alone needs a warm start)")
    branch, margin = select(found)
    if branch is None:  # nothing converged: the start that came closest
        branch = min(found, key=lambda k: _last_residual(found[k]))
    best = found[branch]
    report = {"branch": branch, "energy_margin": margin,
              "candidates": {k: {"converged": bool(r.converged), "iterations": int(r.iterations),
                                 "total_energy": float(r.total_energy), "max_moment": float(r.max_moment),
                                 "seconds": float(r.seconds)} for k, r in found.items()}}
    best.meta = dict(best.meta) | {"ground_state": report}
    return best


def select(found: Mapping[str, HFResult]) -> tuple[str | None, float]:
    """The ground-state rule: among the converged solutions (insertion order = candidate order), the one
    of lowest total energy, a round-off tie (:data:`TIE_E`) going to the earlier one.

    Returns its name (``None`` when none converged) and its energy margin: how far (eV per cell) the
    next *other* state lies above it (solutions within :data:`SAME_STATE_E` and :data:`SAME_STATE_M` of it
    are the same state; ``nan`` when there is no other).
    """
    conv = {k: r for k, r in found.items() if r.converged and math.isfinite(r.total_energy)}
    if not conv:
        return None, math.nan
    e_min = min(r.total_energy for r in conv.values())
    branch = next(k for k, r in conv.items() if r.total_energy - e_min <= TIE_E)
    best = conv[branch]
    others = [r.total_energy - best.total_energy for k, r in conv.items()
              if k != branch and not (abs(r.total_energy - best.total_energy) < SAME_STATE_E
                                      and abs(r.max_moment - best.max_moment) < SAME_STATE_M)]
    return branch, float(min(others)) if others else math.nan


def lower_bound(e_kept: float) -> float:
    """A state replaces a kept state of energy ``e_kept`` (eV per cell) only below this energy: closer
    than :data:`SAME_STATE_E` it is the same state (what a sweep step compares against)."""
    return e_kept - SAME_STATE_E


def is_lower(e_new: float, e_kept: float) -> bool:
    """Whether a converged state of energy ``e_new`` is a lower state than the kept one (:func:`lower_bound`)."""
    return e_new < lower_bound(e_kept)


def _last_residual(r: HFResult) -> float:
    h = np.asarray(r.residual_history, float)
    return float(h[-1]) if h.size and np.isfinite(h[-1]) else math.inf
