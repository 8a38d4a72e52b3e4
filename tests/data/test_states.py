"""HF states on the U ladder: the file (verified, refused when damaged), the ladder rule, rendering from states."""

import math

import numpy as np
import pytest

from moireu.config import load_config
from moireu.data import ladder
from moireu.data.ladder import build_states
from moireu.data.states import Point, States, fingerprint_keys, shipped_states_path, states_fingerprint
from moireu.errors import InputError
from moireu.hf.ground import SAME_STATE_E


def tiny(*over):
    return load_config("demo", overrides=["lattice.index=1", "hf.kmesh=[2, 2]", "stm.kmesh=[2, 2]",
                                          "states.U_max=2.0", "states.U_step=1.0", "dataset.refine=0",
                                          "dataset.U_values=[0.0, 1.0, 2.0]", "dataset.heldout=1",
                                          "dataset.n_offsets=2", "stm.map_pixels=64", "stm.n_pixels=16", *over])


@pytest.fixture(scope="module")
def real_states(tmp_path_factory):
    """A real (tiny: TBG i = 1, 28 atoms) ladder build with one off-ladder point."""
    path = tmp_path_factory.mktemp("states") / "t.states.nc"
    rep = build_states(tiny(), path, workers=1, extras=[1.5], processes=False, progress=False)
    return path, rep


def test_real_ladder_build_is_complete_verified_and_resumes_to_a_no_op(real_states):
    path, rep = real_states
    assert rep.cold_run == 3 and rep.converged and rep.extras_run == 1 and not rep.failed
    st = States.load(path)
    st.check(tiny())
    assert st.rungs_done() == [0.0, 1.0, 2.0] and not st.rungs_missing()
    assert [p.U for p in st.points("extra")] == [1.5]
    info = st.info()
    assert info["complete"] and info["sweeps"]["converged"]
    for p in st.points():
        assert p.ldos.shape == (3, 2, 28) and p.ldos.dtype == np.float32 and p.pair_density.dtype == np.float32
        assert set(p.record["candidates"]) >= {"seed"} and p.record["git_commit"]
    again = build_states(tiny(), path, workers=1, extras=[1.5], processes=False, progress=False)
    assert again.cold_run == again.sweep_steps == again.extras_run == 0 and again.converged


def test_recompute_from_scratch_agrees(real_states):
    from moireu.data.verify import recompute_point

    st = States.load(real_states[0])
    for U in (1.0, 1.5):
        r = recompute_point(tiny(), st, U)
        assert r["ok"], r
        assert r["energy_diff_eV"] <= 1e-6 and r["ldos_rel_diff"] <= 1e-6


def test_damaged_edited_or_foreign_files_are_refused(real_states, tmp_path):
    import shutil

    import netCDF4

    path = real_states[0]
    cut = tmp_path / "cut.nc"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        States.load(cut)
    edited = tmp_path / "edited.nc"
    shutil.copy(path, edited)
    with netCDF4.Dataset(edited, "a") as nc:
        nc["total_energy"][1] = nc["total_energy"][1] - 0.01
    with pytest.raises(InputError, match=r"\(U = 1\) do not match their checksum"):
        States.load(edited)
    attrs = tmp_path / "attrs.nc"
    shutil.copy(path, attrs)
    with netCDF4.Dataset(attrs, "a") as nc:
        nc.setncattr("preset", '"paper"')
    with pytest.raises(InputError, match="attributes were changed"):
        States.load(attrs)
    st = States.load(path)
    other = tiny("hf.kT=0.002")
    assert states_fingerprint(other) != st.fingerprint
    with pytest.raises(InputError, match=r"hf\.kT: 0\.001 here, 0\.002 configured"):
        st.check(other)
    with pytest.raises(InputError, match="another configuration"):
        build_states(other, path, workers=1, processes=False, progress=False)


def test_fingerprint_covers_state_but_not_dataset_keys():
    base = states_fingerprint(tiny())
    assert states_fingerprint(tiny("dataset.seed=7", "dataset.n_offsets=5", "train.epochs=3")) == base
    for over in ("lattice.interlayer_distance=3.0", "hf.eps=5.0", "hf.tol=1e-7", "stm.eta=0.002",
                 "states.U_step=0.5", "states.candidates=[\"seed\"]"):
        assert states_fingerprint(tiny(over)) != base, over
    assert "hf.U" not in fingerprint_keys(tiny()) and "stm.eta" in fingerprint_keys(tiny())


# ------------------------------------------------------------------------------------------------
# the ladder rule on a model landscape: state A everywhere (every cold start), state B lower on
# 1 < U < 3 (E_B = (U − 2)² − 1 meV) that cold starts reach only at U = 2 and that survives a solve
# started from it for |U − 2| ≤ 1.6


def _E(state, U):
    return 0.0 if state == "A" else 1e-3 * ((U - 2.0) ** 2 - 1.0)


def fake_task(cfg, U, filling, candidates, starts, ldos_below, every):
    found = {}
    if candidates:
        found["seed"] = "B" if abs(U - 2.0) < 1e-9 else "A"
        found["ferro"] = "A"
    for branch, res in starts:
        b = res.occupations[0, 0] > 0.505
        found[branch] = "B" if b and abs(U - 2.0) <= 1.6 else "A"
    e = {k: _E(s, U) for k, s in found.items()}
    best = min(e, key=lambda k: (e[k], list(e).index(k)))
    code = 0.51 if found[best] == "B" else 0.5
    point = None
    if e[best] < ldos_below:
        sc = {k: 0.0 for k in ("kT", "fermi_level", "homo", "lumo", "gap", "staggered_moment", "total_moment",
                               "charge_spread", "residual", "seconds", "iterations")}
        sc |= {"U": U, "filling": filling, "total_energy": e[best], "energy_margin": math.nan, "from_U": math.nan,
               "max_moment": 0.01 if found[best] == "B" else 0.0}
        point = Point("ladder", U, filling, best, np.full((28, 2), code), np.zeros((2, 5)), np.zeros((3, 2, 28)), sc,
                      record={"converged": True, "state": found[best]})
    return {"point": point, "energy": e[best], "candidates": {k: {"state": s} for k, s in found.items()},
            "seconds": 1.0, "cpu_seconds": 1.0}


def test_sweeps_carry_the_lowest_state_and_stop_when_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "_task", fake_task)
    cfg = tiny("states.U_max=4.0", "states.U_step=0.5")
    path = tmp_path / "f.states.nc"
    rep = build_states(cfg, path, workers=2, extras=[1.3, 2.2, 3.7], processes=False, progress=False)
    assert rep.cold_run == 9 and rep.converged and rep.sweep_lowered == 2
    st = States.load(path)
    state = {p.U: p.record["state"] for p in st.points()}
    for U, s in state.items():
        want = "B" if (U - 2.0) ** 2 - 1.0 < -1e3 * SAME_STATE_E else "A"
        assert s == want, (U, s)
    assert {p.U: p.branch for p in st.points("ladder") if p.record["state"] == "B"} == {
        1.5: "sweep_down", 2.0: "seed", 2.5: "sweep_up"}
    # an off-ladder U holds the state of its ladder neighbours (any store, any seed: the rule sees only U)
    assert state[2.2] == "B" and st.get(2.2).branch in ("from_below", "from_above")
    assert state[1.3] == "B" and st.get(1.3).branch == "from_above" and state[3.7] == "A"
    # a further sweep repeats no step: every rung was tried from its neighbours' final states
    again = build_states(cfg, path, workers=2, extras=[1.3, 2.2, 3.7], processes=False, progress=False)
    assert again.sweep_steps == again.cold_run == again.extras_run == 0
    # --resweep: every step re-run from the stored states (2 × 8 on 9 rungs, and the 6 rungs beside the 3
    # off-ladder points from their states), nothing changes, converged again
    re = build_states(cfg, path, workers=2, extras=[1.3, 2.2, 3.7], processes=False, progress=False, resweep=True)
    assert re.sweep_steps == 16 + 6 and re.sweep_lowered == 0 and re.converged and re.extras_run == 0
    assert {p.U: p.record["state"] for p in States.load(path).points()} == state


def _E_c(state, U):
    return 0.0 if state == "A" else 1e-3 * (4.0 * (U - 3.2) ** 2 - 1.0)


def fake_task_c(cfg, U, filling, candidates, starts, ldos_below, every):
    """State A everywhere; C lower for |U − 3.2| < 0.5, reached cold only at U = 3.2 and from a C start only
    across |U − 3.2| ≤ 0.35 — shorter than the ladder's 0.5 eV step from any rung holding C to the next."""
    found = {}
    if candidates:
        found["seed"] = "C" if abs(U - 3.2) < 1e-9 else "A"
    for branch, res in starts:
        found[branch] = "C" if res.occupations[0, 0] > 0.515 and abs(U - 3.2) <= 0.35 else "A"
    e = {k: _E_c(s, U) for k, s in found.items()}
    best = min(e, key=lambda k: (e[k], list(e).index(k)))
    point = None
    if e[best] < ldos_below:
        sc = {k: 0.0 for k in ("kT", "fermi_level", "homo", "lumo", "gap", "staggered_moment", "total_moment",
                               "charge_spread", "residual", "seconds", "iterations", "max_moment")}
        sc |= {"U": U, "filling": filling, "total_energy": e[best], "energy_margin": math.nan, "from_U": math.nan}
        point = Point("ladder", U, filling, best, np.full((28, 2), 0.52 if found[best] == "C" else 0.5),
                      np.zeros((2, 5)), np.zeros((3, 2, 28)), sc, record={"converged": True, "state": found[best]})
    return {"point": point, "energy": e[best], "candidates": {k: {"state": s} for k, s in found.items()},
            "seconds": 1.0, "cpu_seconds": 1.0}


def test_a_state_found_off_the_ladder_goes_back_onto_the_rungs_beside_it(tmp_path, monkeypatch):
    """A lower state that no cold start reaches on the ladder and no ladder sweep carries (its basin is narrower
    than a ladder step) but that an off-ladder point found: the rungs beside that point take it, the sweeps and
    the off-ladder points are settled again, and a rerun repeats nothing."""
    monkeypatch.setattr(ladder, "_task", fake_task_c)
    cfg = tiny("states.U_max=4.0", "states.U_step=0.5")
    path = tmp_path / "c.states.nc"
    rep = build_states(cfg, path, workers=2, extras=[3.2, 3.1, 2.7], processes=False, progress=False)
    st = States.load(path)
    state = {p.U: p.record["state"] for p in st.points()}
    assert rep.converged and {U for U, s in state.items() if s == "C"} == {3.0, 3.1, 3.2, 3.5}
    # 3.5 takes C from the off-ladder 3.2 below it; 3.0 (whose nearest off-ladder point, 3.1, held A when it was
    # solved from the rungs' first states) then from the sweep down from 3.5; 3.1 is solved again from them
    assert (st.get(3.5).branch, st.get(3.5).scalars["from_U"]) == ("sweep_up", 3.2)
    assert (st.get(3.0).branch, st.get(3.0).scalars["from_U"]) == ("sweep_down", 3.5)
    assert st.get(3.1).branch in ("from_below", "from_above")
    assert state[2.5] == "A" and state[2.7] == "A"  # 0.5 / 0.3 eV from 3.2: outside C's basin
    assert st.attrs["sweeps"]["converged"]
    again = build_states(cfg, path, workers=2, extras=[3.2, 3.1, 2.7], processes=False, progress=False)
    assert again.sweep_steps == again.cold_run == again.extras_run == 0


# ------------------------------------------------------------------------------------------------
# rendering from states


def test_store_from_states_equals_store_from_hf(real_states, tmp_path):
    from moireu.data import build_dataset, open_store

    path, _ = real_states
    cfg = tiny("dataset.heldout=0")
    a = build_dataset(cfg, tmp_path / "a.zarr", states=path, processes=False, workers=1, progress=False)
    b = build_dataset(cfg, tmp_path / "b.zarr", recompute=True, processes=False, workers=1, progress=False)
    assert a.ok and b.ok
    da, db = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    # what the states carry, the per-atom LDOS of every point and bias, is the same to float32 rounding
    la, lb = da["ldos"].values, db["ldos"].values
    assert np.abs(la - lb).max() <= 1e-6 * np.abs(lb).max()
    # the images rendered from it: the same, but on this 28-atom cell at 16² one simulated acquisition in 18
    # can land on a near-tie of the alignment's peak choice, where an input difference of 4e-8 flips the
    # frame (seen 2 runs in 3, also before the states code changed); all others agree to 1e-4
    ia, ib = da["image"].values, db["image"].values
    agree = np.abs(ia - ib).max(axis=(1, 2)) <= 1e-4 * np.abs(ib).max()
    assert agree.sum() >= len(agree) - 1, agree
    np.testing.assert_allclose(da["hf_total_energy"].values, db["hf_total_energy"].values, atol=1e-6)
    assert '"source": "states"' in da.attrs["states"] and '"source": "solved"' in db.attrs["states"]


def test_another_config_solves_and_says_why(real_states, capsys):
    from moireu.data.build import choose_backend
    from moireu.data.tasks import StatesBackend

    path, _ = real_states
    be, used = choose_backend(tiny(), path, False)
    assert isinstance(be, StatesBackend) and used["source"] == "states"
    with pytest.raises(InputError, match="hf.eps"):
        choose_backend(tiny("hf.eps=5.0"), path, False)  # a file asked for by name must fit
    be, used = choose_backend(tiny("hf.eps=5.0"), None, False, print)
    assert used["source"] == "solved"  # the shipped demo states are of the demo preset, not of i = 1


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_shipped_states_are_intact_and_of_their_preset(preset):
    st = States.load(shipped_states_path(preset))
    st.check(load_config(preset))
    assert st.rungs_done(), "no rung stored"
    for p in st.points():
        assert p.converged and math.isfinite(p.total_energy)


def test_the_shipped_demo_states_hold_every_u_of_the_demo_store():
    """`make demo` renders its store without HF: every grid U of the preset (the ladder's and the extra ones at
    the transitions) and every held-out U of its seed is a stored point."""
    from moireu.data.plan import heldout_values
    from moireu.data.schema import U_DECIMALS

    cfg = load_config("demo")
    stored = {round(p.U, U_DECIMALS) for p in States.load(shipped_states_path("demo")).points()}
    wanted = {round(float(u), U_DECIMALS) for u in (*cfg.dataset.U_values, *heldout_values(cfg))}
    assert wanted <= stored, sorted(wanted - stored)


def test_a_start_stopped_unconverged_below_the_kept_state_is_reported():
    """The kept state is the lowest converged one; a lower unconverged start makes the point unresolved."""
    sc = {k: 0.0 for k in ("kT", "fermi_level", "homo", "lumo", "gap", "staggered_moment", "total_moment",
                           "charge_spread", "residual", "seconds", "iterations", "energy_margin", "from_U",
                           "max_moment", "filling")}

    def point(candidates):
        return Point("ladder", 2.0, 0.0, "seed", np.zeros((28, 2)), np.zeros((2, 5)), np.zeros((3, 2, 28)),
                     sc | {"U": 2.0, "total_energy": -1.0}, record={"converged": True, "candidates": candidates})

    seed = {"converged": True, "total_energy": -1.0, "iterations": 23, "max_moment": 0.048}
    lower = {"converged": False, "total_energy": -1.0107, "iterations": 300, "max_moment": 0.041}
    higher = {"converged": False, "total_energy": -0.99, "iterations": 300, "max_moment": 0.0}
    assert point({"seed": seed, "nonmagnetic": higher}).unresolved is None
    assert point({"seed": seed, "ferro": lower | {"total_energy": -1.0 - 0.5 * SAME_STATE_E}}).unresolved is None
    u = point({"seed": seed, "ferro": lower, "nonmagnetic": higher}).unresolved
    assert u == {"candidate": "ferro", "below_meV": -10.7, "iterations": 300, "max_moment": 0.041}
    assert point({"seed": seed, "ferro": lower}).summary()["unresolved"] == u


def test_shipped_demo_states_name_their_unresolved_rungs():
    info = States.load(shipped_states_path("demo")).info()
    for p in info["points"]:
        worse = [c for c in p["candidates"].values()
                 if not c["converged"] and c["total_energy"] < p["total_energy"] - SAME_STATE_E]
        assert (p["U"] in info["unresolved"]) == bool(worse), p["U"]


def test_concavity_names_the_rungs_below_their_neighbours_chord():
    """E_HF(U) is concave (a minimum of functions linear in U): a rung below its neighbours' chord proves a
    neighbour does not hold the lowest state."""
    sc0 = {k: 0.0 for k in ("kT", "fermi_level", "homo", "lumo", "gap", "staggered_moment", "total_moment",
                            "charge_spread", "residual", "seconds", "iterations", "energy_margin", "from_U",
                            "max_moment", "filling")}

    def pt(U, E):
        return Point("ladder", U, 0.0, "seed", np.zeros((28, 2)), np.zeros((2, 5)), np.zeros((3, 2, 28)),
                     sc0 | {"U": U, "total_energy": E})

    line = [pt(U, -U) for U in (0.0, 1.0, 2.0, 3.0, 4.0)]  # linear: concave at the margin
    assert States({"fillings": [0.0]}, {}, np.zeros(1), line).concavity() == []
    bump = line[:2] + [pt(2.0, -2.0 + 0.02)] + line[3:]  # the state stored at U = 2 is 20 meV too high
    c = States({"fillings": [0.0]}, {}, np.zeros(1), bump).concavity()
    assert [(x["U"], x["neighbours"]) for x in c] == [(1.0, [0.0, 2.0]), (3.0, [2.0, 4.0])]
    assert [x["below_chord_meV"] for x in c] == pytest.approx([-10.0, -10.0])
    within = line[:2] + [pt(2.0, -2.0 + 1.5 * SAME_STATE_E)] + line[3:]  # round-off, not a state
    assert States({"fillings": [0.0]}, {}, np.zeros(1), within).concavity() == []


def test_shipped_ladders_concavity_is_reported():
    """The demo ladder is concave everywhere since its U = 2.0 rung took the state of the off-ladder 1.875 (it held
    a state 3.6 meV higher, and 1.75 was flagged). The paper ladder is checked alike."""
    assert States.load(shipped_states_path("demo")).info()["concavity"] == []
    st = States.load(shipped_states_path("paper"))
    for c in st.info()["concavity"]:
        lo, hi = c["neighbours"]
        assert lo < c["U"] < hi and {lo, c["U"], hi} <= set(st.rungs_done()) and c["below_chord_meV"] < 0
