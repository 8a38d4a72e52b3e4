"""End to end with the real physics (TBG i = 1, 28 atoms): CLI build killed with SIGKILL, resumed,
reopened; metadata round-trips; info and export-png; bad input exits 2 without touching the store."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from moireu.config import config_from_json, load_config
from moireu.data import open_store
from moireu.data import schema as sc
from moireu.data.workdir import work_dir_for

SETS = ["dataset.refine=0", "lattice.index=1", "dataset.U_values=[0.0, 5.0]", "dataset.heldout=4", "dataset.n_offsets=2",
        "dataset.biases=[0.0]", "stm.n_pixels=16", "stm.patch_cells=2", "stm.kmesh=[2, 2]", "hf.kmesh=[2, 2]"]


def cli(*args, wait=True, env_extra=None):
    cmd = [sys.executable, "-c", "from moireu.cli import main; main()", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1"} | (env_extra or {})
    # SIGINT at its default, as in a terminal: a test run started in the background (`cmd &`, nohup)
    # inherits SIGINT ignored, and so would the CLI, which would then never see the Ctrl-C under test
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if not wait:
        return p
    out, err = p.communicate(timeout=300)
    return p.returncode, out.decode(), err.decode()


def invoke(*args):
    from typer.testing import CliRunner

    from moireu.cli import app

    return CliRunner().invoke(app, list(args))


def build_args(out, *extra):
    args = ["dataset", "build", "--preset", "demo", "--out", str(out), "--workers", "2", "--no-progress"]
    for s in SETS:
        args += ["--set", s]
    return args + list(extra)


def test_build_kill_resume_reopen(tmp_path):
    out = tmp_path / "ds.zarr"
    p = cli(*build_args(out), wait=False)
    solves = work_dir_for(out) / "solves"
    t0 = time.time()
    while not (solves.is_dir() and any(solves.glob("*.json"))):
        assert p.poll() is None, p.stderr.read().decode()[-3000:]
        assert time.time() - t0 < 240, "no solve committed"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and its dask workers, at once
    p.wait()
    assert not out.exists()
    n_done = len(list(solves.glob("*.json")))
    assert 1 <= n_done < 6
    # resume: the same build (workers as threads this time: cheaper to start) finishes and skips
    # what was committed
    rc, stdout, err = cli(*build_args(out, "--json", "--threads"))
    assert rc == 0, err[-3000:]
    rep = json.loads(stdout)
    assert rep["ok"] and rep["solves_total"] == 6 and rep["solves_skipped"] >= n_done
    assert rep["solves_run"] == 6 - rep["solves_skipped"]
    assert rep["store_samples"] == 6 * 2
    ds = open_store(out)
    # metadata round trip
    cfg = load_config("demo", overrides=SETS)
    assert config_from_json(ds.attrs["config"]) == cfg
    from moireu.stm import ImageTransform

    t = ImageTransform.from_dict(ds.attrs["image_transform"])
    assert t.n_pixels == 16 and t.to_dict() == json.loads(ds.attrs["image_transform"])
    np.testing.assert_allclose(ds["kx"].values, t.window.axes(16)[0])
    assert ds["image"].shape == (12, 16, 16) and np.isfinite(ds["image"].values).all()
    assert bool(ds["hf_converged"].all())
    u0 = ds["U"].values == 0.0
    assert np.all(ds["hf_max_moment"].values[u0] < 1e-6)  # no moment without interaction
    # ground-state selection recorded per sample: the candidate kept and the gap to the next state
    assert set(np.unique(ds["hf_branch"].values)) <= set(sc.BRANCH_CODES.values())
    assert ds["hf_branch"].attrs["flag_meanings"].split()[1:] == list(sc.BRANCH_CODES)
    margin = ds["hf_energy_margin"].values
    assert np.all(np.isnan(margin) | (margin >= 0))
    held = ds["U"].values[ds["split"].values == "heldout"]
    assert len(np.unique(held)) == 4 and np.all((held > 0) & (held < 5))
    # same U, same bias → variations are different acquisitions of the same solution
    a, b = ds["image"].values[u0]
    assert not np.array_equal(a, b)
    assert len(np.unique(ds["scan_rotation_deg"].values)) == 12  # a fresh scan per image
    # alignment measured the trained twist on every image (i = 1: 21.79°)
    np.testing.assert_allclose(ds["measured_twist_deg"].values, 21.787, atol=0.1)
    assert np.all(ds["align_quality"].values > 0.5)
    # per-point LDOS + geometry (contract D): the stored LDOS re-renders an image without HF
    assert ds["ldos"].dims == ("point", "bias_level", "atom") and ds["ldos"].shape == (6, 1, 28)
    assert ds["atom_xyz"].shape == (28, 3) and ds["cell"].shape == (2, 2)
    sp = ds["sample_point"].values
    np.testing.assert_array_equal(ds["point_U"].values[sp], ds["U"].values)
    from moireu.data.plan import SolvePoint, point_hash
    from moireu.stm.align import map_to_image
    from moireu.stm.measure import MeasurementSpec, draw_scan, scan_rng, simulate_map

    geom = {"positions": ds["atom_xyz"].values, "cell": ds["cell"].values, "layer": ds["atom_layer"].values,
            "sublattice": ds["atom_sublattice"].values}
    spec = MeasurementSpec.from_config(cfg.stm, ds["cell"].values)
    for j in (0, 7):  # the seed contract: the stored acquisition is re-drawn and re-rendered exactly
        pt = SolvePoint(str(ds["split"].values[j]), float(ds["U"].values[j]), float(ds["filling"].values[j]))
        scan = draw_scan(scan_rng(cfg.seed, point_hash(pt), 0, int(ds["variation"].values[j])), spec)
        assert scan.rotation_deg == ds["scan_rotation_deg"].values[j]
        img, _ = map_to_image(simulate_map(geom, ds["ldos"].values[sp[j], 0], scan), t)
        np.testing.assert_allclose(img.values, ds["image"].values[j], atol=1e-4)
    # info and export
    r = invoke("dataset", "info", str(out), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["samples"] == 12 and info["splits"] == {"grid": 4, "heldout": 8}
    assert info["config"]["lattice"]["index"] == 1 and info["git_commit"]
    r = invoke("dataset", "info", str(out))
    assert r.exit_code == 0 and "heldout" in r.stdout
    r = invoke("dataset", "export-png", str(out), str(tmp_path / "png"), "--limit", "2")
    assert r.exit_code == 0, r.output
    assert sorted(f.name for f in (tmp_path / "png").iterdir())[-1] == "overview.png"


@pytest.mark.parametrize("extra,msg", [
    (["--heldout", "-1"], "--heldout must be ≥ 0"),
    (["--set", "dataset.U_values=[]"], "empty"),
    (["--set", "dataset.U_values=[1.0, 1.0]"], "duplicate"),
])
def test_cli_bad_input(tmp_path, extra, msg):
    out = tmp_path / "ds.zarr"
    rc, _, err = cli(*build_args(out, *extra))
    assert rc == 2 and msg in err and not out.exists()


def test_cli_refuses_other_config(tmp_path):
    from moireu.errors import InputError

    out = tmp_path / "ds.zarr"
    r = invoke(*build_args(out, "--threads", "--set", "dataset.heldout=0"))
    assert r.exit_code == 0, r.output
    before = open_store(out)["image"].values.copy()
    r = invoke(*build_args(out, "--threads", "--set", "dataset.heldout=0", "--set", "stm.eta=0.01"))
    assert isinstance(r.exception, InputError)
    assert "different config" in str(r.exception) and "stm.eta" in str(r.exception)
    r = invoke(*build_args(out, "--threads", "--set", "dataset.heldout=0", "--set", "stm.eta=0.01", "--append"))
    assert isinstance(r.exception, InputError) and "must match" in str(r.exception)
    np.testing.assert_array_equal(open_store(out)["image"].values, before)



def test_cli_exits_1_when_points_fail(tmp_path, monkeypatch):
    """A point that fails both attempts is reported, listed in the store, and the build exits 1 (the sweeps
    in U, off by default, would give it its neighbour's state: test_sweeps_carry_the_lowest_state_across_u)."""
    import moireu.data.build as b
    from dataset_fakes import FakeBackend

    monkeypatch.setattr(b, "PhysicsBackend", lambda: FakeBackend(fail_U=(5.0,)))
    out = tmp_path / "ds.zarr"
    r = invoke(*build_args(out, "--threads", "--set", "dataset.heldout=0", "--json"))
    assert r.exit_code == 1, r.output
    assert "FAILED grid_U5.000000_nu+0.0000 (solve)" in r.output
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    assert not rep["ok"] and [f["key"] for f in rep["failures"]] == ["grid_U5.000000_nu+0.0000"]
    assert len(rep["failures"][0]["attempts"]) == 2  # retried once with another mixer
    assert rep["failures"][0]["attempts"][1]["hf_overrides"]["mixer"] == "linear"
    ds = open_store(out)
    assert ds.sizes["sample"] == 2 and json.loads(ds.attrs["failures"])[0]["U"] == 5.0


def test_ctrl_c_is_one_line_and_resumable(tmp_path):
    """Issue 13 defect 8: Ctrl-C during a LocalCluster build prints one `error:` line (no worker tracebacks)."""
    out = tmp_path / "ds.zarr"
    p = cli(*build_args(out), wait=False)
    solves = work_dir_for(out) / "solves"
    t0 = time.time()
    while not (solves.is_dir() and any(solves.glob("*.json"))):
        assert p.poll() is None and time.time() - t0 < 240
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    err = err.decode()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: interrupted; nothing was published — the finished points are kept in "
        f"{str(work_dir_for(out))!r}, rerun the same command to resume"], err
    assert not out.exists()


@pytest.mark.parametrize("extra,code,msg", [
    (["--scheduler", "tcp//nohost"], 2, "is not a dask scheduler address"),
    (["--out", "/proc/moireu/ds.zarr"], 2, "cannot write next to --out"),
    (["--set", "dataset.U_values=[0.0, nan]"], 2, "finite number"),
    (["--config", "."], 2, "is a directory"),
])
def test_cli_errors_are_one_line(tmp_path, extra, code, msg):
    rc, _, err = cli(*build_args(tmp_path / "ds.zarr", *extra))
    assert rc == code and "error: " in err and msg in err and "Traceback" not in err, err


def test_cli_no_workers_and_disk_full_exit_1(tmp_path, monkeypatch):
    from dask.distributed import LocalCluster

    import moireu.data.store as st

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=":0") as cluster:
        rc, _, err = cli(*build_args(tmp_path / "a.zarr", "--scheduler", cluster.scheduler_address,
                                     "--worker-timeout", "1"))
    assert rc == 1 and "error: no dask worker joined" in err and "Traceback" not in err, err
    assert not (tmp_path / "a.zarr").exists() and not work_dir_for(tmp_path / "a.zarr").exists()

    def full(ds, out):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st, "write_store", full)
    r = invoke(*build_args(tmp_path / "b.zarr", "--threads", "--set", "dataset.heldout=0"))
    assert r.exit_code == 1 and "error: writing the store" in r.output and "No space left" in r.output, r.output


def test_cli_damaged_store_is_an_error_line(tmp_path):
    out = tmp_path / "ds.zarr"
    r = invoke(*build_args(out, "--threads", "--set", "dataset.heldout=0"))
    assert r.exit_code == 0, r.output
    for chunk in (out / "hf_gap").rglob("c/*"):
        chunk.write_bytes(chunk.read_bytes()[:5])
    rc, _, err = cli("dataset", "info", str(out))
    assert rc == 2 and "error: dataset store" in err and "damaged" in err and "Traceback" not in err, err
