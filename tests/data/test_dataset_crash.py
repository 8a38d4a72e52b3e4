"""Kill a real build (subprocess + SIGKILL) at arbitrary moments and resume it: nothing finished is lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dataset_fakes import calls
from moireu.data import open_store
from moireu.data.store import is_store, recover
from moireu.data.workdir import work_dir_for

HERE = Path(__file__).resolve().parent

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from dataset_fakes import FakeBackend
from moireu.config import load_config
from moireu.data import build_dataset
cfg = load_config("demo", overrides=["dataset.U_values=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]",
                                     "dataset.heldout=2", "dataset.n_offsets=2", "dataset.biases=[0.0, 0.01]",
                                     "dataset.refine=2", "dataset.sweep={sweep}"])
r = build_dataset(cfg, {out!r}, backend=FakeBackend(log_dir={log!r}, solve_seconds={ss}, render_seconds={rs}),
                  processes=False, workers=2, progress=False)
sys.exit(0 if r.ok else 1)
"""


def run_build(out, log, ss=0.0, rs=0.0, wait=True, sweep=False):
    code = SCRIPT.format(here=str(HERE), out=str(out), log=str(log), ss=ss, rs=rs, sweep=str(sweep).lower())
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    return p


def committed(out):
    wd = work_dir_for(out)
    return (len(list((wd / "solves").glob("*.json"))) if (wd / "solves").is_dir() else 0,
            len(list((wd / "images").glob("*.npz"))) if (wd / "images").is_dir() else 0)


def kill_when(p, out, n_solves, n_images, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        s, i = committed(out)
        if s >= n_solves and i >= n_images:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return s, i
        assert p.poll() is None, "build finished before it could be killed"
        time.sleep(0.02)
    raise AssertionError("build made no progress")


# records in solves/: 12 point solves (10 planned + 2 refinement points: dataset.refine = 2);
# with the sweeps in U then 2 × 12 sweep steps, and images only once every point is solved and swept
@pytest.mark.parametrize("n_records,n_images,sweep", [(3, 1, False), (6, 4, False), (17, 0, True), (36, 4, True)],
                         ids=["solves", "renders", "sweeps", "sweeps-then-renders"])
def test_sigkill_then_resume(tmp_path, n_records, n_images, sweep):
    out, log = tmp_path / "ds.zarr", tmp_path / "log"
    p = run_build(out, log, ss=0.3, rs=0.05, wait=False, sweep=sweep)
    kill_when(p, out, n_records, n_images)
    names = [f.name[: -len(".json")] for f in (work_dir_for(out) / "solves").glob("*.json")]  # <key>.<token>[.<dir>]
    steps = [n for n in names if n.endswith((".up", ".down"))]
    points = {n.rsplit(".", 1)[0] for n in names if n not in steps}
    assert len(names) >= n_records
    # the kill left no store (it is written only at the end) and an intact work dir
    assert not out.exists()
    if n_records < 12:
        assert len(calls(log, "solve")) < 12
    # resume: finishes, and never redoes a committed solve or sweep step
    run_build(out, log, sweep=sweep)
    resumed = calls(log, "solve")[:]
    redone = [k for k in set(resumed) if resumed.count(k) > 1 and k in points]
    assert not redone, f"committed solves were recomputed: {redone}"
    if n_records == 17:
        assert len(steps) >= 5 and len(points) == 12  # killed during the sweeps
    # 11 + 11 re-solves in an uninterrupted build; at most one per worker (2) was in flight at the kill
    assert len(calls(log, "sweep")) <= (22 + 2 if sweep else 0), "committed sweep steps were recomputed"
    assert len(set(resumed)) == 12  # every point solved (once, except those in flight at the kill)
    ds = open_store(out)
    assert ds.sizes["sample"] == 12 * 4
    assert bool(ds["hf_converged"].all())
    assert not work_dir_for(out).exists()
    # identical to an uninterrupted build
    ref = tmp_path / "ref.zarr"
    from dataset_fakes import FakeBackend
    from moireu.config import load_config
    from moireu.data import build_dataset

    cfg = load_config("demo", overrides=["dataset.U_values=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]",
                                         "dataset.heldout=2", "dataset.n_offsets=2", "dataset.biases=[0.0, 0.01]",
                                         "dataset.refine=2", f"dataset.sweep={str(sweep).lower()}"])
    build_dataset(cfg, ref, backend=FakeBackend(), processes=False, workers=2, progress=False)
    r = open_store(ref)
    np.testing.assert_array_equal(ds["image"].values, r["image"].values)
    for v in ("U", "filling", "bias", "variation", "scan_origin_x", "scan_origin_y", "split", "hf_max_moment"):
        np.testing.assert_array_equal(ds[v].values, r[v].values)
    assert ds.attrs["config"] == r.attrs["config"]


def test_interrupted_store_swap_is_recovered(tmp_path):
    """A kill between the two renames of a store replacement leaves `.name.old`: readers restore it."""
    from dataset_fakes import FakeBackend
    from moireu.config import load_config
    from moireu.data import build_dataset

    out = tmp_path / "ds.zarr"
    build_dataset(load_config("demo", overrides=["dataset.heldout=0", "dataset.n_offsets=1"]), out,
                  backend=FakeBackend(), processes=False, workers=1, progress=False)
    n = open_store(out).sizes["sample"]
    os.replace(out, out.with_name(f".{out.name}.old"))
    (tmp_path / f".{out.name}.abc.tmp").mkdir()  # a half-written replacement
    assert not out.exists()
    ds = open_store(out)
    assert ds.sizes["sample"] == n and is_store(out)
    recover(out)
    assert not (tmp_path / f".{out.name}.abc.tmp").exists()
