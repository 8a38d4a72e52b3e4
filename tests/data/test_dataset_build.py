"""Dataset builds with a cheap injected backend: store contract, resume, retries, failures, append."""

import json

import numpy as np
import pytest

from dataset_fakes import WARM, FakeBackend, calls
from moireu.config import config_from_json, load_config
from moireu.data import build_dataset, dataset_info, export_png, open_store
from moireu.data.workdir import work_dir_for
from moireu.errors import InputError


def tiny(*over):
    return load_config("demo", overrides=["dataset.refine=0", "dataset.U_values=[0.0, 1.0, 2.0, 3.0]", "dataset.heldout=2",
                                          "dataset.n_offsets=2", "dataset.biases=[0.0, 0.01]", *over])


def build(c, out, log=None, **kw):
    be = kw.pop("backend", None) or FakeBackend(log_dir=str(log) if log else None)
    return build_dataset(c, out, backend=be, processes=False, workers=2, progress=False, **kw)


def test_store_contract_and_metadata(tmp_path):
    c = tiny()
    out = tmp_path / "ds.zarr"
    r = build(c, out, tmp_path / "log")
    assert r.ok and r.solves_run == 6 and r.images_run == 6 * 4 and r.store_samples == 24
    assert not work_dir_for(out).exists()  # consolidated and cleaned up
    ds = open_store(out)
    assert ds["image"].dims == ("sample", "ky", "kx") and ds["image"].dtype == np.float32
    assert ds["image"].shape == (24, 8, 8)
    for v, dt in [("U", np.float64), ("filling", np.float64), ("bias", np.float64), ("variation", np.int32),
                  ("scan_origin_x", np.float64), ("scan_origin_y", np.float64), ("scan_rotation_deg", np.float64),
                  ("hf_converged", bool), ("hf_iterations", np.int32), ("hf_max_moment", np.float64),
                  ("hf_staggered_moment", np.float64), ("hf_charge_spread", np.float64),
                  ("hf_total_energy", np.float64), ("hf_gap", np.float64), ("kx", np.float64), ("ky", np.float64)]:
        assert ds[v].dtype == dt, v
    assert ds["split"].dtype == np.dtype("<U8")
    assert (ds["split"] == "grid").sum() == 16 and (ds["split"] == "heldout").sum() == 8
    # metadata round trip
    assert config_from_json(ds.attrs["config"]) == c
    assert json.loads(ds.attrs["image_transform"]) == {"kind": "fake", "n_pixels": 8}
    assert ds.attrs["moireu_version"] and ds.attrs["git_commit"]
    # every image sits at its own metadata: the fake image's peak value is U + 10 bias + m(U)
    img = ds["image"].values
    m = ds["hf_max_moment"].values
    np.testing.assert_allclose(img.max(axis=(1, 2)),
                               (ds["U"].values + 10 * ds["bias"].values + m) *
                               np.exp(-np.min((np.linspace(-1, 1, 8)[None, :] - 0.3 * ds["scan_origin_x"].values[:, None] / 10) ** 2, 1)
                                      - np.min((np.linspace(-1, 1, 8)[None, :] - 0.3 * ds["scan_origin_y"].values[:, None] / 10) ** 2, 1)),
                               rtol=1e-5)
    np.testing.assert_allclose(m, 0.5 * np.tanh(np.maximum(ds["U"].values - 2, 0)))
    # the default starts are all cold (10 iterations): no point is started from a chain predecessor
    assert set(ds["hf_iterations"].values.tolist()) == {10}
    # rerun = no-op
    r2 = build(c, out, tmp_path / "log")
    assert r2.ok and r2.solves_run == 0 and r2.images_run == 0 and r2.solves_skipped == 6
    assert len(calls(tmp_path / "log", "solve")) == 6
    info = dataset_info(out)
    assert info["samples"] == 24 and info["image_shape"] == [8, 8] and len(info["per_U"]) == 6
    assert info["splits"] == {"grid": 16, "heldout": 8}


def test_a_points_state_does_not_depend_on_the_other_points(tmp_path):
    """With the default (cold) starts a point's state is a function of its U alone, so two stores of
    different U sets hold the same state at a shared U. With a warm start among the candidates the
    state of a chain predecessor is carried along (the fake keeps its start's state, as HF does where
    states coexist), and the stores disagree — what made a never-seen store disagree with the training
    store (README 'One state per U')."""
    def states(over, U_values, name):
        c = tiny("dataset.heldout=0", f"dataset.U_values={U_values}", *over)
        r = build(c, tmp_path / name, backend=FakeBackend(low_state_U=(0.0,)))
        assert r.ok
        ds = open_store(tmp_path / name)
        return {float(u): float(m) for u, m in zip(ds["U"].values, ds["hf_max_moment"].values)}

    dense, sparse = states([], [0.0, 1.0, 2.0, 3.0], "a.zarr"), states([], [1.0, 3.0], "b.zarr")
    assert dense[0.0] == 0.25 and dense[1.0] == sparse[1.0] == 0.0 and dense[3.0] == sparse[3.0]
    dense_w, sparse_w = states([WARM], [0.0, 1.0, 2.0, 3.0], "c.zarr"), states([WARM], [1.0, 3.0], "d.zarr")
    assert dense_w[1.0] == 0.25 and sparse_w[1.0] == 0.0  # the chain from U = 0 carried its state


def test_warm_chains_when_asked(tmp_path):
    r = build(tiny(WARM), tmp_path / "ds.zarr")
    assert r.ok
    # the heads of the 2 chains start cold (10 iterations), the rest warm (3)
    assert open_store(tmp_path / "ds.zarr")["hf_iterations"].values.tolist().count(10) == 2 * 4  # 4 images a point


def test_retry_and_failures_flagged(tmp_path):
    c = tiny()
    out = tmp_path / "ds.zarr"
    be = FakeBackend(log_dir=str(tmp_path / "log"), unconverged_first=(1.0,), never_converge=(2.0,), fail_U=(3.0,))
    r = build(c, out, backend=be)
    assert not r.ok
    assert [f["key"] for f in r.failures] == ["grid_U3.000000_nu+0.0000"]
    assert [u["key"] for u in r.unconverged] == ["grid_U2.000000_nu+0.0000"]
    s = calls(tmp_path / "log", "solve")
    assert s.count("grid_U1.000000_nu+0.0000") == 2  # retried once, then converged
    assert s.count("grid_U2.000000_nu+0.0000") == 2 and s.count("grid_U3.000000_nu+0.0000") == 2
    ds = open_store(out)
    assert ds.sizes["sample"] == 5 * 4  # U=3 has no result → no images, listed in attrs
    conv = dict(zip(ds["U"].values.tolist(), ds["hf_converged"].values.tolist()))
    assert conv[1.0] and not conv[2.0]
    assert [f["key"] for f in json.loads(ds.attrs["failures"])] == ["grid_U3.000000_nu+0.0000"]
    assert work_dir_for(out).exists()  # kept: the failure is retried by the next run
    # rerun with a healthy backend retries only the failed point
    r2 = build(c, out, tmp_path / "log2")
    assert calls(tmp_path / "log2", "solve") == ["grid_U3.000000_nu+0.0000"]
    assert not r2.failures and [u["key"] for u in r2.unconverged] == ["grid_U2.000000_nu+0.0000"]
    assert open_store(out).sizes["sample"] == 24


def test_sweeps_carry_the_lowest_state_across_u(tmp_path):
    """A lower state found only at U = 1 (the fake's state 1, 10 meV below) is carried up and down the
    grid by the sweeps and kept at every point, with the sweep that brought it as the branch; a point
    whose own solve failed gets it too; the data do not depend on the number of workers."""
    from moireu.data.schema import BRANCH_CODES

    c = tiny("dataset.sweep=true")
    stores = []
    for n in (1, 2):
        out = tmp_path / f"ds{n}.zarr"
        be = FakeBackend(log_dir=str(tmp_path / f"log{n}"), low_state_U=(1.0,), fail_U=(3.0,))
        r = build_dataset(c, out, backend=be, processes=False, workers=n, progress=False)
        assert r.ok and not r.failures and r.sweep_lowered == 5 and r.sweep_steps == 12
        ds = open_store(out)
        U = ds["U"].values
        np.testing.assert_allclose(ds["hf_total_energy"].values, -U - 0.01)
        np.testing.assert_allclose(ds["hf_max_moment"].values, 0.5 * np.tanh(np.maximum(U - 2, 0)) + 0.25)
        br = ds["hf_branch"].values
        assert (br[U < 1] == BRANCH_CODES["sweep_down"]).all() and (br[U > 1] == BRANCH_CODES["sweep_up"]).all()
        assert (br[U == 1.0] == -1).all()  # its own state (the fake records no branch)
        np.testing.assert_allclose(ds["hf_energy_margin"].values[(U > 1) & (U < 3)], 0.01)
        sweeps = calls(tmp_path / f"log{n}", "sweep")
        # each sweep re-solves every point but its first — and the down sweep starts at the failed U = 3,
        # which has nothing to pass on
        assert len(sweeps) == 5 + 4
        stores.append(ds)
    np.testing.assert_array_equal(stores[0]["image"].values, stores[1]["image"].values)
    # rerunning a finished build solves nothing
    r = build(c, tmp_path / "ds2.zarr", tmp_path / "log3")
    assert r.sweep_steps == 0 and calls(tmp_path / "log3", "sweep") == []


def test_refuse_other_config_and_append(tmp_path):
    out = tmp_path / "ds.zarr"
    build(tiny(), out)
    before = open_store(out)["image"].values.copy()
    with pytest.raises(InputError, match="different config.*dataset.U_values"):
        build(tiny("dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0]"), out)
    with pytest.raises(InputError, match="stm.n_pixels, which must match"):
        build(tiny("stm.n_pixels=64", "dataset.U_values=[0.0, 4.0]"), out, append=True)
    np.testing.assert_array_equal(open_store(out)["image"].values, before)  # nothing lost
    # same U range → the held-out draws keep their first values; only new points are computed
    r = build(tiny("dataset.U_values=[0.0, 0.5, 1.0, 2.0, 3.0]", "dataset.heldout=3"), out,
              tmp_path / "log", append=True)
    assert r.ok
    s = calls(tmp_path / "log", "solve")
    assert len(s) == 2 and s[0] == "grid_U0.500000_nu+0.0000" and s[1].startswith("heldout_")
    ds = open_store(out)
    assert ds.sizes["sample"] == 8 * 4
    assert 0.5 in config_from_json(ds.attrs["config"]).dataset.U_values
    np.testing.assert_array_equal(ds["image"].values[ds["U"].values != 0.5][:4], before[:4])
    assert len(json.loads(ds.attrs["history"])) == 2


def test_not_a_store_refused(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a dataset store"):
        build(tiny(), out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="does not exist"):
        open_store(tmp_path / "nope.zarr")


def test_export_png(tmp_path):
    out = tmp_path / "ds.zarr"
    build(tiny(), out)
    files = export_png(out, tmp_path / "png", limit=3, progress=False)
    assert len(files) == 4 and (tmp_path / "png" / "overview.png").stat().st_size > 1000
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_second_concurrent_build_refused(tmp_path):
    from moireu.data.build import exclusive

    out = tmp_path / "ds.zarr"
    with exclusive(out):
        with pytest.raises(InputError, match="another `moireu dataset build`"):
            build(tiny(), out)
    assert not out.exists()
    assert build(tiny(), out).ok  # the lock is gone with its holder


def test_existing_scheduler(tmp_path):
    """--scheduler: the build runs on a cluster it did not start, and leaves it running."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=":0") as cluster:
        out = tmp_path / "ds.zarr"
        r = build_dataset(tiny(), out, backend=FakeBackend(log_dir=str(tmp_path / "log")),
                          scheduler=cluster.scheduler_address, progress=False)
        assert r.ok and r.workers == 3 and r.store_samples == 24
        with Client(cluster.scheduler_address) as c:  # still up
            assert c.submit(lambda: 41 + 1).result() == 42


def test_refinement_values_pick_the_steepest_intervals():
    from moireu.data.plan import refinement_values

    U = [0.0, 1.0, 2.0, 3.0, 4.0]
    rec = [{"max_moment": m, "charge_spread": 0.0} for m in (0.0, 0.0, 0.0, 0.4, 0.5)]
    assert refinement_values(U, rec, 1) == [2.5]
    assert refinement_values(U, rec, 2) == [2.5, 3.5]
    assert refinement_values(U[::-1], rec[::-1], 1) == [2.5]  # order of the input does not matter
    flat = [{"max_moment": 0.0}] * 5
    assert refinement_values(U, flat, 1) == [0.5]  # nothing changes: ties → lowest U
    assert refinement_values(U, rec, 0) == [] and refinement_values([1.0], rec[:1], 3) == []


def test_refinement_adds_grid_points_and_resumes(tmp_path):
    """refine = 1 adds the midpoint of the interval where the fake moment 0.5 tanh(U − 2) rises most."""
    c = tiny("dataset.refine=1", "dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0]")
    out = tmp_path / "ds.zarr"
    r = build(c, out, tmp_path / "log")
    assert r.ok and r.solves_total == 8 and r.solves_run == 8 and r.images_run == 8 * 4
    ds = open_store(out)
    grid_u = sorted(set(ds["U"].values[ds["split"].values == "grid"].tolist()))
    assert grid_u == [0.0, 1.0, 2.0, 2.5, 3.0, 4.0]
    r2 = build(c, out, tmp_path / "log")  # from the finished store: same refinement, nothing to do
    assert r2.ok and r2.solves_run == 0 and r2.images_run == 0 and r2.solves_total == 8
    assert len(calls(tmp_path / "log", "solve")) == 8


def test_chain_points_get_the_two_previous_converged_results(tmp_path):
    """A solve inside a chain is handed both earlier converged results (oldest first), so the HF
    start is their extrapolation in U; an unconverged predecessor breaks the chain."""
    from moireu.data.jobs import solve_task
    from moireu.data.plan import SolvePoint
    from moireu.data.store import data_fingerprint
    from moireu.data.workdir import WorkDir

    class Recording(FakeBackend):
        seen: dict = {}

        def solve(self, cfg, point, warm, hf_overrides, out):
            Recording.seen[point.U] = None if warm is None else [p.name for p in warm]
            return super().solve(cfg, point, warm, hf_overrides, out)

    c = tiny(WARM)
    root = work_dir_for(tmp_path / "ds.zarr")
    wd = WorkDir(root, "cccccccccccc", data_fingerprint(c))
    wd.write_manifest({"config": c.to_json()})
    be = Recording(never_converge=(3.0,))
    p = [SolvePoint("grid", u, 0.0) for u in (0.0, 1.0, 2.0, 3.0, 4.0)]
    args = (str(root), wd.token, wd.fingerprint)
    solve_task(be, c, p[0], *args, None)
    solve_task(be, c, p[1], *args, p[0])
    rec = solve_task(be, c, p[2], *args, p[1], None, p[0])
    assert Recording.seen[0.0] is None and len(Recording.seen[1.0]) == 1
    assert Recording.seen[2.0] == [wd.result_path(p[0]).name, wd.result_path(p[1]).name]
    assert rec["attempts"][0]["warm_chain"] == Recording.seen[2.0]
    solve_task(be, c, p[3], *args, p[2], None, p[1])  # never converges (retried cold)
    solve_task(be, c, p[4], *args, p[3], None, p[2])
    assert Recording.seen[4.0] is None  # the unconverged predecessor: no warm start at all
