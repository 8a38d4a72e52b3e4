"""Issue 13: a store that cannot be corrupted or mixed, one schema, failures reported without tracebacks.

Each test names the defect of the issue it covers (cheap fake backend; real ``dask`` processes
where the defect is about the cluster).
"""

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from dataset_fakes import WARM, FakeBackend, calls
from moireu.config import load_config
from moireu.data import BuildError, build_dataset, open_store
from moireu.data import schema as sc
from moireu.data.build import exclusive
from moireu.data.jobs import render_task, solve_task
from moireu.data.plan import SolvePoint
from moireu.data.store import data_fingerprint
from moireu.data.workdir import WorkDir, work_dir_for
from moireu.errors import InputError

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def tiny(*over):
    return load_config("demo", overrides=["dataset.refine=0", "dataset.U_values=[0.0, 1.0, 2.0, 3.0]",
                                          "dataset.heldout=2", "dataset.n_offsets=2", "dataset.biases=[0.0, 0.01]",
                                          *over])


def build(c, out, **kw):
    be = kw.pop("backend", None) or FakeBackend()
    kw.setdefault("workers", 2)
    return build_dataset(c, out, backend=be, processes=False, progress=False, **kw)


# ------------------------------------------------------------------------------------------------
# schema and format


def test_schema_store_is_core_zarr_v3_and_reads_without_warnings(tmp_path):
    """One schema: every variable with its dtype/units, split as int8 flags, blosc codec, no strings."""
    import xarray as xr
    import zarr

    out = tmp_path / "ds.zarr"
    assert build(tiny(), out, backend=FakeBackend(contract=True)).ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = xr.open_zarr(out)  # plain calls, default arguments
        xr.open_dataset(out, engine="zarr").close()
        assert json.loads((out / "zarr.json").read_text())["consolidated_metadata"]["must_understand"] is False
        g = zarr.open_group(out, mode="r")
        for name in g.array_keys():
            meta = json.loads((out / name / "zarr.json").read_text())
            assert meta["zarr_format"] == 3
            assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc"], name
            assert meta["data_type"] in ("float32", "float64", "int8", "int32", "bool"), (name, meta["data_type"])
    for name in raw.variables:
        v = sc.VARIABLES[str(name)]
        assert raw[name].dtype == v.np_dtype and raw[name].dims == v.dims, name
        assert raw[name].attrs["units"] == v.units and raw[name].attrs["long_name"] == v.long_name
    assert raw["split"].dtype == np.int8
    assert raw["split"].attrs["flag_values"] == [0, 1] and raw["split"].attrs["flag_meanings"] == "grid heldout"
    assert raw.attrs["schema_version"] == sc.SCHEMA_VERSION
    # contract A/D: per-image scan columns, per-atom LDOS by point, geometry, the point index
    ds = open_store(out)
    assert set(ds["split"].values.tolist()) == {"grid", "heldout"}
    assert ds.sizes["point"] == 6 and ds["ldos"].shape == (6, 2, 4) and ds["atom_xyz"].shape == (4, 3)
    np.testing.assert_array_equal(ds["bias_level"].values, [0.0, 0.01])
    sp = ds["sample_point"].values
    np.testing.assert_array_equal(ds["point_U"].values[sp], ds["U"].values)
    np.testing.assert_array_equal(ds["point_split"].values[sp], ds["split"].values)
    # the fake LDOS is U + bias + m(U)·(−1)^atom at each point
    m = ds["hf_max_moment"].values
    first = np.array([np.flatnonzero(sp == i)[0] for i in range(6)])
    np.testing.assert_allclose(ds["ldos"].values[:, 1, 0], ds["point_U"].values + 0.01 + m[first])
    np.testing.assert_allclose(ds["scan_origin_x"].values, ds["scan_origin_x"].values)  # present, finite
    assert np.isfinite(ds["align_quality"].values).all() and "offset_x" not in ds
    assert sc.markdown_table().count("\n") == len(sc.VARIABLES) + 1


def test_round_u_and_point_key():
    assert sc.round_u(0.1 + 0.2) == 0.3 and sc.point_key("grid", 1.0000004, 0) == ("grid", 1.0, 0.0)
    np.testing.assert_array_equal(sc.decode_split(sc.encode_split(["heldout", "grid"])), ["heldout", "grid"])
    with pytest.raises(ValueError, match="unknown split"):
        sc.encode_split(["train"])


def test_truncated_chunk_is_an_input_error_not_a_codec_traceback(tmp_path):
    out = tmp_path / "ds.zarr"
    build(tiny(), out)
    chunk = next(p for p in (out / "image").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])
    ds = open_store(out)
    with pytest.raises(InputError, match="'image' cannot be read.*damaged"):
        sc.values(ds, "image")
    from moireu.analysis.data import load_store

    with pytest.raises(InputError, match="damaged"):
        load_store(out)
    from moireu.ml.data import load_split, open_dataset

    with pytest.raises(InputError, match="damaged"):
        load_split(open_dataset(out), "grid")


# ------------------------------------------------------------------------------------------------
# defect 1: readers never destroy a store being written; the writer verifies what it publishes


def test_reader_never_repairs_while_a_build_holds_the_lock(tmp_path):
    out = tmp_path / "ds.zarr"
    build(tiny(), out)
    n = open_store(out).sizes["sample"]
    with exclusive(out):  # a build is running: it has moved the old store aside and is writing the new one
        tmp = tmp_path / f".{out.name}.x1.tmp"
        (tmp / out.name).mkdir(parents=True)
        (tmp / out.name / "zarr.json").write_text("{}")
        old = tmp_path / f".{out.name}.old"
        os.replace(out, old)
        with pytest.raises(InputError, match="being replaced by a running build"):
            open_store(out)
        assert tmp.is_dir() and old.is_dir() and not out.exists()  # nothing touched
        os.replace(old, out)
        assert open_store(out).sizes["sample"] == n
        assert tmp.is_dir()
    # no build running: the reader repairs an interrupted swap
    os.replace(out, tmp_path / f".{out.name}.old")
    assert open_store(out).sizes["sample"] == n and not (tmp_path / f".{out.name}.old").exists()


READER_LOOP = """
import sys, time
sys.path.insert(0, {here!r})
from moireu.data import dataset_info
from moireu.errors import InputError
ok = bad = 0
t_end = time.time() + 60
while time.time() < t_end:
    try:
        info = dataset_info({out!r})
        assert info["samples"] > 0
        ok += 1
    except InputError as exc:
        bad += 1
    import os
    if os.path.exists({stop!r}):
        break
print(ok, bad)
"""

BUILD = """
import sys
sys.path.insert(0, {here!r})
from dataset_fakes import FakeBackend
from moireu.config import load_config
from moireu.data import build_dataset
cfg = load_config("demo", overrides={over!r})
r = build_dataset(cfg, {out!r}, backend=FakeBackend(render_seconds=0.02, contract=True), processes=False,
                  workers=2, progress=False, append=True)
print("OK" if r.ok else "NOTOK", r.store_samples)
"""


def test_reader_loop_during_build_and_append_never_corrupts(tmp_path):
    """`dataset info` in a loop while a build and then an --append write the store (defect 1)."""
    out, stop = tmp_path / "ds.zarr", tmp_path / "stop"
    base = ["dataset.refine=0", "dataset.n_offsets=2", "dataset.biases=[0.0, 0.01]", "dataset.heldout=0"]
    env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for grid, n in (("[0.0, 1.0, 2.0, 3.0]", 16), ("[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]", 28)):
        stop.unlink(missing_ok=True)
        readers = [subprocess.Popen([sys.executable, "-c", READER_LOOP.format(here=str(HERE), out=str(out),
                                                                               stop=str(stop))],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
        b = subprocess.run([sys.executable, "-c", BUILD.format(here=str(HERE), out=str(out),
                                                               over=base + [f"dataset.U_values={grid}"])],
                           capture_output=True, text=True, env=env, timeout=300)
        time.sleep(0.5)
        stop.touch()
        for r in readers:
            o, e = r.communicate(timeout=120)
            assert r.returncode == 0, e.decode()[-2000:]  # InputError at most, never a traceback
        assert b.returncode == 0 and b.stdout.split() == ["OK", str(n)], b.stderr[-3000:]
        ds = open_store(out)
        assert ds.sizes["sample"] == n and not sc.missing_parts(ds)
        assert np.isfinite(ds["image"].values).all()
    assert not work_dir_for(out).exists()
    assert not list(tmp_path.glob(".ds.zarr.*.tmp"))


def test_writer_verifies_and_never_publishes_a_partial_store(tmp_path, monkeypatch):
    """A write that loses variables is caught before the rename; --append keeps the complete store."""
    import xarray as xr

    out = tmp_path / "ds.zarr"
    build(tiny(), out)
    before = open_store(out)["image"].values.copy()
    real = xr.Dataset.to_zarr

    def lossy(self, *a, **kw):
        kw["encoding"] = {k: v for k, v in kw.get("encoding", {}).items() if k != "hf_gap"}
        return real(self.drop_vars("hf_gap"), *a, **kw)

    monkeypatch.setattr(xr.Dataset, "to_zarr", lossy)
    with pytest.raises(BuildError, match="lacks variable 'hf_gap'.*untouched"):
        build(tiny("dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0]"), out, append=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(open_store(out)["image"].values, before)
    assert not list(tmp_path.glob(".ds.zarr.*.tmp"))
    assert work_dir_for(out).exists()  # the finished points are kept: the rerun only writes
    r = build(tiny("dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0]"), out, append=True)
    assert r.ok and r.solves_run == 0 and r.store_samples == 36  # U = 4 and 2 new held-out U (wider range)


# ------------------------------------------------------------------------------------------------
# defect 2: leftovers of another build never enter this one


def test_leftover_tasks_of_another_build_never_commit(tmp_path):
    out = tmp_path / "ds.zarr"
    c_old, c_new = tiny(), tiny("hf.kT=0.01")
    assert data_fingerprint(c_old) != data_fingerprint(c_new)  # hf.kT is in the fingerprint
    root = work_dir_for(out)
    old = WorkDir(root, "aaaaaaaaaaaa", data_fingerprint(c_old))
    old.write_manifest({"config": c_old.to_json()})
    p = SolvePoint("grid", 1.0, 0.0)
    be = FakeBackend(tag_kT=True)
    assert solve_task(be, c_old, p, str(root), old.token, old.fingerprint, None)["status"] == "ok"
    # the user deletes the folder and starts the corrected build; the killed client's tasks still run
    import shutil

    shutil.rmtree(root)
    new = WorkDir(root, "bbbbbbbbbbbb", data_fingerprint(c_new))
    new.write_manifest({"config": c_new.to_json()})
    q = SolvePoint("grid", 2.0, 0.0)
    res = solve_task(be, c_old, q, str(root), old.token, old.fingerprint, None)
    assert res["status"] == "stale" and not list((root / "solves").iterdir())
    assert render_task(be, c_old, q, str(root), old.token, old.fingerprint, [], {})["status"] == "stale"
    # records planted with another fingerprint or token are ignored, and removed by the build
    rec = {"key": q.key, "split": "grid", "U": 2.0, "filling": 0.0, "status": "ok", "converged": True}
    (root / "solves" / f"{q.key}.{new.token}.json").write_text(json.dumps(rec | {"token": new.token,
                                                                                 "fingerprint": "0" * 16}))
    (root / "solves" / f"{q.key}.{old.token}.json").write_text(json.dumps(rec | {"token": old.token,
                                                                                 "fingerprint": old.fingerprint}))
    assert new.solve_record(q) is None
    assert new.clean() == 1 and not (root / "solves" / f"{q.key}.{old.token}.json").exists()


def test_killed_client_leftovers_do_not_mix_configs(tmp_path):
    """Issue repro: build on an external cluster, SIGKILL the client, delete the work folder as told,
    rebuild with hf.kT changed — the store equals a clean build of the new config."""
    from dask.distributed import LocalCluster

    out, ref = tmp_path / "ds.zarr", tmp_path / "ref.zarr"
    over = ["dataset.refine=0", "dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]", "dataset.heldout=0",
            "dataset.n_offsets=1", "dataset.chain_length=1"]
    code = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from dataset_fakes import FakeBackend
from moireu.config import load_config
from moireu.data import build_dataset
build_dataset(load_config("demo", overrides={over!r}), {str(out)!r}, backend=FakeBackend(solve_seconds=1.5,
              tag_kT=True), scheduler=sys.argv[1], progress=False)
"""
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, protocol="tcp://",
                      dashboard_address=":0") as cluster:
        env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        p = subprocess.Popen([sys.executable, "-c", code, cluster.scheduler_address], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while not (work_dir_for(out) / "manifest.json").exists() and time.time() - t0 < 60:
            time.sleep(0.05)
        time.sleep(0.5)  # three solves are running on the cluster now
        p.kill()
        p.wait()
        import shutil

        shutil.rmtree(work_dir_for(out))
        new = load_config("demo", overrides=over + ["hf.kT=0.01"])
        r = build_dataset(new, out, backend=FakeBackend(tag_kT=True), scheduler=cluster.scheduler_address,
                          progress=False)
        time.sleep(2.0)  # let the leftovers finish: they must not have touched the new build
    assert r.ok
    build_dataset(new, ref, backend=FakeBackend(tag_kT=True), processes=False, workers=1, progress=False)
    np.testing.assert_array_equal(open_store(out)["image"].values, open_store(ref)["image"].values)
    assert not work_dir_for(out).exists() or not list((work_dir_for(out) / "solves").glob("*.json"))


# ------------------------------------------------------------------------------------------------
# defects 4–11


def test_no_images_at_all_reports_and_writes_nothing(tmp_path):
    out = tmp_path / "ds.zarr"
    r = build(tiny("dataset.heldout=0"), out, backend=FakeBackend(fail_U=(0.0, 1.0, 2.0, 3.0)))
    assert not r.ok and r.store_samples == 0 and len(r.failures) == 4 and not out.exists()
    assert "  store  : not written (no point has images)" in r.summary_lines()


def test_data_do_not_depend_on_the_number_of_workers(tmp_path):
    """Warm-start chains come from the config (dataset.chain_length), not from the cluster."""
    stores = []
    for w in (1, 3):
        out = tmp_path / f"w{w}.zarr"
        build(tiny(WARM), out, workers=w)
        stores.append(open_store(out))
    a, b = stores
    for v in ("image", "hf_iterations", "U", "split"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    # 6 points in chains of ≤ 4 → 2 chains: their heads start cold (10 fake iterations)
    assert sorted(set(a["hf_iterations"].values.tolist())) == [3, 10]
    assert (a["hf_iterations"].values == 10).sum() == 2 * 4


def test_io_error_is_reported_not_retried(tmp_path):
    out, log = tmp_path / "ds.zarr", tmp_path / "log"
    r = build(tiny("dataset.heldout=0"), out, backend=FakeBackend(log_dir=str(log), io_error_U=(2.0,)))
    assert not r.ok and [f["key"] for f in r.failures] == ["grid_U2.000000_nu+0.0000"]
    f = r.failures[0]
    assert f["io_error"] and "I/O error" in f["error"] and "No space left" in f["error"] and len(f["attempts"]) == 1
    assert calls(log, "solve").count("grid_U2.000000_nu+0.0000") == 1


def test_zero_workers_is_a_clear_error_and_leaves_nothing(tmp_path):
    from dask.distributed import LocalCluster

    out = tmp_path / "ds.zarr"
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        t0 = time.time()
        with pytest.raises(BuildError, match="no dask worker joined.*within 1 s"):
            build_dataset(tiny(), out, backend=FakeBackend(), scheduler=cluster.scheduler_address,
                          worker_timeout=1.0, progress=False)
        assert time.time() - t0 < 20
    assert not out.exists() and not work_dir_for(out).exists()  # no manifest that refuses the next command


def test_manifest_of_a_build_without_results_does_not_refuse_the_corrected_command(tmp_path):
    out = tmp_path / "ds.zarr"
    wrong = tiny("stm.eta=0.5")
    WorkDir(work_dir_for(out), "cccccccccccc", data_fingerprint(wrong)).write_manifest({"config": wrong.to_json()})
    assert build(tiny(), out).ok


def test_malformed_scheduler_and_unwritable_out_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not a dask scheduler address"):
        build_dataset(tiny(), tmp_path / "a.zarr", scheduler="tcp//nohost", backend=FakeBackend())
    with pytest.raises(InputError, match="cannot write next to --out"):
        build_dataset(tiny(), Path("/proc/moireu-test/ds.zarr"), backend=FakeBackend())


def test_disk_full_at_the_final_write_is_a_build_error(tmp_path, monkeypatch):
    import moireu.data.store as st

    def full(ds, out):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st, "write_store", full)
    out = tmp_path / "ds.zarr"
    with pytest.raises(BuildError, match="No space left on device.*kept in"):
        build(tiny(), out)
    monkeypatch.undo()
    assert not out.exists()
    r = build(tiny(), out)  # the rerun only writes
    assert r.ok and r.solves_run == 0 and r.store_samples == 24


def test_atomic_writes_respect_the_umask(tmp_path):
    from moireu.provenance import write_bytes_atomic

    old = os.umask(0o022)
    try:
        assert (write_bytes_atomic(tmp_path / "a", b"x").stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        assert (write_bytes_atomic(tmp_path / "b", b"x").stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


def test_progress_counts_failed_renders_as_failed(capsys):
    from moireu.progress import BuildProgress

    bar = BuildProgress(2, 8, enabled=True)
    with bar:
        bar.images_done(4, "render x: failed", True, failed=True)
        bar.images_done(4, "render y: ok", False)
    err = capsys.readouterr().err.splitlines()
    assert "images 4/8 (4 failed)" in err[0] and "images 8/8 (4 failed)" in err[1]


# ------------------------------------------------------------------------------------------------
# defects 3 and 7: real `dask scheduler` / `dask worker` processes on localhost


class DaskProcs:
    """A `dask scheduler` and `dask worker` processes on localhost (tests/data importable on the workers)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")]),
                                 "OMP_NUM_THREADS": "1"}
        self.dask = str(Path(sys.executable).with_name("dask"))
        sf = tmp / "scheduler.json"
        self.scheduler = self._start([self.dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--no-dashboard", "--scheduler-file", str(sf)], "scheduler")
        t0 = time.time()
        while not sf.exists() and time.time() - t0 < 60:
            time.sleep(0.1)
        self.address = json.loads(sf.read_text())["address"]
        self.workers: list[subprocess.Popen] = []

    def _start(self, cmd: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        return subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, start_new_session=True)

    def add_worker(self) -> subprocess.Popen:
        w = self._start([self.dask, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                         "--host", "127.0.0.1"], f"worker{len(self.workers)}")
        self.workers.append(w)
        return w

    def n_workers(self) -> int:
        from dask.distributed import Client

        with Client(self.address, timeout="10s") as c:
            return len(c.scheduler_info()["workers"])

    def close(self) -> None:
        for p in self.workers + [self.scheduler]:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def dask_procs(tmp_path):
    procs = DaskProcs(tmp_path)
    yield procs
    procs.close()


def _wait(pred, timeout=60.0):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _committed(out):
    d = work_dir_for(out) / "solves"
    return len(list(d.glob("*.json"))) if d.is_dir() else 0


def test_build_survives_the_loss_of_every_original_worker(tmp_path, dask_procs):
    """Defect 3: nothing is scattered — tasks run on workers that joined after all original ones left."""
    out, ref = tmp_path / "ds.zarr", tmp_path / "ref.zarr"
    c = tiny("dataset.heldout=0", "dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]", "dataset.chain_length=2")
    first = dask_procs.add_worker()
    result: dict = {}

    def run():
        try:
            result["r"] = build_dataset(c, out, backend=FakeBackend(solve_seconds=0.4), scheduler=dask_procs.address,
                                        progress=False, worker_timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["e"] = exc

    t = threading.Thread(target=run)
    t.start()
    _wait(lambda: _committed(out) >= 1)
    first.kill()  # every original worker is gone (a batch system's walltime) ...
    first.wait()
    _wait(lambda: dask_procs.n_workers() == 0)
    dask_procs.add_worker()  # ... and a fresh one joins
    t.join(timeout=180)
    assert not t.is_alive() and "e" not in result, result.get("e")
    r = result["r"]
    assert r.ok and r.store_samples == 6 * 4, r.summary_lines()
    build_dataset(c, ref, backend=FakeBackend(), processes=False, workers=1, progress=False)
    for v in ("image", "hf_iterations", "U"):
        np.testing.assert_array_equal(open_store(out)[v].values, open_store(ref)[v].values)


def test_losing_the_scheduler_never_publishes(tmp_path, dask_procs):
    """Defect 7: the scheduler dies mid-build → BuildError, no store at --out, the committed points kept."""
    out = tmp_path / "ds.zarr"
    c = tiny("dataset.heldout=0", "dataset.U_values=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]", "dataset.chain_length=6")
    dask_procs.add_worker()
    result: dict = {}

    def run():
        try:
            result["r"] = build_dataset(c, out, backend=FakeBackend(solve_seconds=0.5), scheduler=dask_procs.address,
                                        progress=False, worker_timeout=60)
        except BaseException as exc:  # noqa: BLE001
            result["e"] = exc

    t = threading.Thread(target=run)
    t.start()
    _wait(lambda: _committed(out) >= 2)
    dask_procs.scheduler.kill()
    dask_procs.scheduler.wait()
    t.join(timeout=180)
    assert not t.is_alive()
    assert isinstance(result.get("e"), BuildError), result
    assert "lost the dask cluster" in str(result["e"]) and "rerun" in str(result["e"])
    assert not out.exists() and _committed(out) >= 2


def test_architecture_doc_embeds_the_generated_schema_table():
    doc = (HERE.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    table = doc.split("<!-- schema-table:begin -->\n")[1].split("\n<!-- schema-table:end -->")[0]
    assert table == sc.markdown_table()
