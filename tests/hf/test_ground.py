"""Ground-state selection (moireu.hf.ground): the kept state does not depend on the start."""

import math

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.hf import CoulombParams, HFSystem
from moireu.hf.ground import CANDIDATES, ground_state, nonmagnetic_anchor, spin_average
from moireu.lattice import build_graphene

T = 2.7
KW = {"kT": 1e-3, "tol": 1e-8, "energy_tol": 1e-9, "max_iter": 300}


@pytest.fixture(scope="module")
def honeycomb():
    # honeycomb Hubbard model: Néel order above U_c ≈ 2.23 t, the non-magnetic state a saddle there
    return HFSystem(build_graphene(t=T), (31, 31), CoulombParams(long_range=False))


def test_spin_average_keeps_charge_and_drops_moment(honeycomb):
    af = honeycomb.solve(U=3.0 * T, init="afm", **KW)
    assert af.max_moment > 0.3
    avg = spin_average(af)
    assert avg.max_moment == 0.0
    np.testing.assert_allclose(avg.charge, af.charge, atol=1e-14)
    np.testing.assert_allclose(avg.pair_density[0], avg.pair_density[1])


def test_chain_follows_the_start_but_the_ground_state_does_not(honeycomb):
    s, U = honeycomb, 3.0 * T
    nm = s.solve(U=U, init="paramagnetic", **KW)  # the non-magnetic stationary point (a saddle at U > U_c)
    af = s.solve(U=U, init="afm", **KW)
    assert nm.converged and af.converged and nm.max_moment < 1e-6 and af.staggered_moment > 0.3
    assert af.total_energy < nm.total_energy - 0.05
    # a chain that only warm-starts stays on the start's branch (hysteresis) ...
    chained = ground_state(s.solve, warm_start=nm, candidates=("warm",), U=U, init="paramagnetic", **KW)
    assert chained.max_moment < 1e-6
    assert chained.meta["ground_state"]["branch"] == "warm"
    # ... the selection keeps the lowest state from either start, and reports the gap to the other
    picks = [ground_state(s.solve, warm_start=w, U=U, init="afm", **KW) for w in (nm, af)]
    for g in picks:
        assert g.converged and g.total_energy == pytest.approx(af.total_energy, abs=1e-7)
        gs = g.meta["ground_state"]
        assert gs["branch"] in CANDIDATES
        assert gs["energy_margin"] == pytest.approx(nm.total_energy - af.total_energy, abs=1e-6)
        assert gs["candidates"]["nonmagnetic"]["max_moment"] < 1e-6  # spin-symmetric starts stay symmetric


def test_one_state_below_the_transition(honeycomb):
    g = ground_state(honeycomb.solve, U=1.5 * T, init="afm", **KW)  # no warm start: the seed stands in
    gs = g.meta["ground_state"]
    assert g.converged and g.max_moment < 1e-4
    assert "warm" not in gs["candidates"] and gs["branch"] == "seed"
    assert math.isnan(gs["energy_margin"])  # the seed decays to the non-magnetic state: one state found


def test_bad_candidates(honeycomb):
    with pytest.raises(InputError, match="allowed"):
        ground_state(honeycomb.solve, candidates=("warm", "lowest"), U=1.0)
    with pytest.raises(InputError, match="no start"):
        ground_state(honeycomb.solve, candidates=("nonmagnetic",), U=1.0)


def test_nonmagnetic_candidate_from_the_anchor(honeycomb):
    s, U = honeycomb, 3.0 * T
    anchor = nonmagnetic_anchor(s.solve, init="afm", **KW)
    assert anchor.U == 0.0 and anchor.max_moment == 0.0 and anchor.converged
    g = ground_state(s.solve, U=U, init="afm", nonmagnetic_start=anchor, **KW)
    gs = g.meta["ground_state"]
    assert gs["branch"] == "seed" and g.staggered_moment > 0.3
    assert gs["candidates"]["nonmagnetic"]["converged"] and gs["candidates"]["nonmagnetic"]["max_moment"] == 0.0
    assert gs["energy_margin"] > 0.05


def test_ferro_candidate_is_a_cold_ferromagnetic_start(honeycomb):
    s, U = honeycomb, 3.0 * T
    inits = []

    def spy(**kw):
        inits.append((kw["init"], kw["warm_start"] is None))
        return s.solve(**kw)

    g = ground_state(spy, candidates=("seed", "ferro"), U=U, init="afm", **KW)
    assert inits == [("afm", True), ("ferro", True)]
    ferro = g.meta["ground_state"]["candidates"]["ferro"]
    # on the half-filled honeycomb lattice the Néel state is lower than whatever the ferromagnetic start reaches
    assert g.meta["ground_state"]["branch"] == "seed" and ferro["total_energy"] > g.total_energy
    inits.clear()
    ground_state(spy, candidates=("seed", "ferro"), U=U, init="ferro", **KW)
    assert inits == [("ferro", True)]  # the configured seed is already the ferromagnetic start
