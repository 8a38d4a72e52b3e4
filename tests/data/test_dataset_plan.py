"""The build plan: points, held-out U, variations, warm-start chains, bad input."""

import numpy as np
import pytest

from moireu.config import load_config
from moireu.data.plan import heldout_values, make_chains, make_plan, variations
from moireu.errors import InputError


def cfg(*over):
    return load_config("demo", overrides=list(over))


def test_counts_and_specs():
    c = cfg("dataset.U_values=[0.0, 1.0, 2.0]", "dataset.heldout=4", "dataset.fillings=[0.0, 0.5]",
            "dataset.biases=[0.0, 0.01]", "dataset.n_offsets=6")
    plan = make_plan(c, 2)
    assert len(plan.points) == (3 + 4) * 2
    assert len(plan.specs) == 2 * 3 * 2
    assert plan.n_images == 14 * 12
    assert len({p.key for p in plan.points}) == len(plan.points)
    assert sorted(p.U for p in plan.points if p.split == "grid" and p.filling == 0.0) == [0.0, 1.0, 2.0]
    # variations are the acquisition indices 0 … n_offsets − 1 (the scan is drawn per image at render time)
    assert [v.id for v in variations(c)] == list(range(6))


def test_heldout_seeded_prefix_and_range():
    c = cfg("dataset.heldout=10")
    h10 = heldout_values(c)
    assert len(h10) == 10 and len(set(h10)) == 10
    assert np.all((h10 > 0.0) & (h10 < 6.0))
    assert not set(h10) & set(c.dataset.U_values)
    # the first values do not depend on N (append-friendly), and the seed changes them
    np.testing.assert_array_equal(heldout_values(c, 4), h10[:4])
    np.testing.assert_array_equal(heldout_values(cfg("dataset.heldout=10")), h10)
    assert not np.allclose(heldout_values(cfg("dataset.heldout=10", "dataset.seed=7")), h10)
    # uniform in (0, 6): a large sample has the right mean
    big = heldout_values(cfg("dataset.heldout=4000"))
    assert abs(big.mean() - 3.0) < 0.1


def test_chains_contiguous_balanced_and_cover():
    c = cfg("dataset.heldout=6")
    plan = make_plan(c, 3)
    assert len(plan.chains) == 3
    flat = [p for ch in plan.chains for p in ch]
    assert sorted(flat) == sorted(plan.points)
    lens = [len(ch) for ch in plan.chains]
    assert max(lens) - min(lens) <= 1
    # neighbouring U in each chain, chains are ordered ranges
    for ch in plan.chains:
        us = [p.U for p in ch]
        assert us == sorted(us)
    assert max(p.U for p in plan.chains[0]) < min(p.U for p in plan.chains[1])
    pred = plan.predecessor()
    assert sum(v is None for v in pred.values()) == 3
    # one chain per filling at least; never more chains than points
    assert len(make_chains(plan.points[:2], 8)) == 2


@pytest.mark.parametrize("over,msg", [
    ("dataset.U_values=[]", "empty"),
    ("dataset.U_values=[1.0, 2.0, 1.0]", "duplicate"),
    ("dataset.heldout=-1", "dataset.heldout"),
    ("dataset.U_values=[-1.0, 2.0]", "≥ 0"),
])
def test_bad_config(over, msg):
    with pytest.raises(InputError, match=msg):
        cfg(over)


def test_heldout_negative_direct():
    with pytest.raises(InputError, match="≥ 0"):
        heldout_values(cfg(), -3)


def test_worker_environment():
    from moireu.data.cluster import worker_environ

    env = worker_environ(cores=16, n_workers=4)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4"
    assert worker_environ(2, 8)["OMP_NUM_THREADS"] == "1"
    # dask's 64 kiB trim threshold is replaced (it disables glibc's dynamic mmap threshold)
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= 2**27 and int(env["MALLOC_MMAP_THRESHOLD_"]) >= 2**27


def test_chains_only_with_warm_starts():
    """Cold starts only (the default): every point is its own run, so no solve waits for another."""
    cold = make_plan(cfg("dataset.heldout=6"))
    assert all(len(ch) == 1 for ch in cold.chains) and sorted(p for ch in cold.chains for p in ch) == sorted(cold.points)
    warm = make_plan(cfg("dataset.heldout=6", "dataset.ground_state=['warm', 'seed']", "dataset.chain_length=4"))
    assert max(len(ch) for ch in warm.chains) == 4
