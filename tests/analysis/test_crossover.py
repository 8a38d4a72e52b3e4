import numpy as np
import pytest

from moireu.analysis.crossover import (combine_estimates, fit_hinge, order_parameter_crossover,
                                       trajectory_crossover)
from moireu.errors import InputError


@pytest.mark.parametrize("uc", [1.3, 2.7, 4.1])
def test_hinge_recovers_kink_with_noise(uc):
    rng = np.random.default_rng(3)
    U = np.repeat(np.linspace(0, 6, 25), 3)
    y = 0.5 - 0.1 * U + 0.8 * np.maximum(U - uc, 0) + 0.03 * rng.standard_normal(U.size)
    fit = fit_hinge(U, y)
    assert fit.u_c == pytest.approx(uc, abs=0.1)
    assert fit.delta_bic > 10


def test_straight_line_has_no_supported_kink():
    rng = np.random.default_rng(0)
    U = np.repeat(np.linspace(0, 6, 13), 6)
    Y = np.stack([1 + 0.2 * U, -U], axis=1) + 0.05 * rng.standard_normal((U.size, 2))
    e = trajectory_crossover(U, Y, "m", "line", n_boot=30, seed=0)
    assert not e.supported
    assert "no kink" in e.note


def test_order_parameter_onset_mean_field():
    U = np.linspace(0, 6, 13)
    m = 0.4 * np.sqrt(np.maximum(U - 2.7, 0))
    e = order_parameter_crossover(U, m, "m", t=2.7, n_boot=50, seed=1)
    assert e.U_c == pytest.approx(2.7, abs=0.02)
    assert e.U_c_over_t == pytest.approx(1.0, abs=0.01)
    assert e.supported
    # noisy version: still recovered within its bootstrap uncertainty (plus a grid-spacing margin)
    rng = np.random.default_rng(2)
    mn = np.abs(m + 0.01 * rng.standard_normal(U.size))
    en = order_parameter_crossover(U, mn, "m", n_boot=100, seed=1)
    assert abs(en.U_c - 2.7) < 3 * en.U_c_err + 0.1
    assert en.ci68[0] < en.U_c < en.ci68[1]
    # no onset in range
    e0 = order_parameter_crossover(U, np.zeros_like(U), "m")
    assert e0.U_c is None and not e0.supported and "no onset" in e0.note


def test_trajectory_bootstrap_covers_truth_and_is_seeded():
    rng = np.random.default_rng(5)
    U = np.repeat(np.linspace(0, 6, 13), 8)
    Y = np.stack([0.2 * U - 1.5 * np.maximum(U - 3.2, 0), 0.05 * U], axis=1) + 0.15 * rng.standard_normal((U.size, 2))
    a = trajectory_crossover(U, Y, "m", "traj", n_boot=60, seed=4)
    b = trajectory_crossover(U, Y, "m", "traj", n_boot=60, seed=4)
    assert a.U_c == b.U_c and a.U_c_err == b.U_c_err
    assert abs(a.U_c - 3.2) < 3 * a.U_c_err + 0.05
    assert 0 < a.U_c_err < 0.5


def test_combine_and_errors():
    U = np.linspace(0, 6, 13)
    e1 = order_parameter_crossover(U, np.sqrt(np.maximum(U - 2.5, 0)), "a", n_boot=20)
    e2 = order_parameter_crossover(U, np.sqrt(np.maximum(U - 3.0, 0)), "b", n_boot=20)
    c = combine_estimates([e1, e2], resolution=1.0)  # a coarse grid cannot tell them apart
    assert c["n"] == 2 and 2.5 <= c["U_c"] <= 3.0 and c["spread"] == pytest.approx(0.5, abs=0.02)
    assert c["consistent"] and len(c["features"]) == 1
    # without the grid resolution the two noise-free kinks 0.5 eV apart are distinct features
    c0 = combine_estimates([e1, e2], resolution=0.0)
    assert not c0["consistent"] and [f["n"] for f in c0["features"]] == [1, 1]
    assert c0["U_c"] == pytest.approx(c0["features"][0]["U_c"])  # tie → the lower U
    assert combine_estimates([])["U_c"] is None
    with pytest.raises(InputError):
        fit_hinge(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0]))


def test_onset_bracket_on_a_grid():
    from moireu.analysis.crossover import order_parameter_onset

    U = np.repeat(np.arange(0.0, 6.01, 0.5), 3)
    m = np.where(U > 2.2, 0.02 * np.sqrt(np.clip(U - 2.2, 0, None)) + 0.05 * np.clip(U - 5.0, 0, None), 0.0)
    e = order_parameter_onset(U, m, "m", t=2.7)
    assert e.ci68 == (2.0, 2.5) and e.U_c == pytest.approx(2.25)
    assert e.U_c_err == pytest.approx(0.5 / np.sqrt(12)) and e.supported
    assert e.U_c_over_t == pytest.approx(2.25 / 2.7)
    none = order_parameter_onset(U, np.zeros_like(U), "m")
    assert none.U_c is None and not none.supported


def test_combine_groups_disagreeing_estimates():
    """Estimates that disagree are not averaged; the headline is the group holding the HF moment onset
    (the physical crossover), else the majority group; all groups are listed."""
    from moireu.analysis.crossover import CrossoverEstimate

    def est(u, err, q):
        return CrossoverEstimate("m", q, u, err, None, u / 2.7, err / 2.7, 10.0, 13, 0)

    ests = [est(2.1, 0.07, "onset"), est(5.6, 0.3, "a"), est(4.8, 0.5, "b"), est(5.45, 0.2, "c"),
            est(5.5, 0.0, "d"), est(9.0, 0.1, "unsupported")]
    ests[-1] = CrossoverEstimate("m", "unsupported", 9.0, 0.1, None, 9 / 2.7, 0.1 / 2.7, -5.0, 13, 0)
    c = combine_estimates(ests, resolution=0.5)
    assert not c["consistent"]
    assert [f["n"] for f in c["features"]] == [1, 4]
    assert c["n"] == 1 and c["used"] == ["onset"] and c["U_c"] == pytest.approx(2.1)
    assert "onset" in c["headline_rule"]
    assert set(c["features"][1]["used"]) == {"a", "b", "c", "d"} and 5.3 < c["features"][1]["U_c"] < 5.6
    # without an onset estimate the group with most estimates leads
    m = combine_estimates(ests[1:], resolution=0.5)
    assert m["n"] == 4 and 5.3 < m["U_c"] < 5.6 and m["headline_rule"] == "the group with most estimates"
    assert all("unsupported" not in f["used"] for f in c["features"])
