import json
import subprocess
import sys

import pytest

MOIREU = [sys.executable, "-m", "moireu.cli.__main__"]


def run(*args, check=False):
    return subprocess.run([*MOIREU, *args], capture_output=True, text=True, timeout=600)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "bands" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and "moireu" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--preset", "nope"], "unknown preset"),
    (["--set", "lattice.index=0"], "lattice.index"),
    (["--set", "lattice.interlayer_distance=-1"], "lattice.interlayer_distance"),
    (["--set", "lattice.cutoff=1.0"], "a_cc"),
    (["--set", "lattice.bogus=1"], "unknown config key"),
])
def test_bad_input_exit_2(tmp_path, args, needle):
    r = run("bands", "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "error:" in r.stderr


@pytest.mark.parametrize("args,needle", [(["bands", "--bogus"], "No such option: --bogus"),
                                          (["nosuch"], "No such command"),
                                          (["train"], "Missing argument")])
def test_usage_errors_exit_2_without_traceback(args, needle):
    r = run(*args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_malformed_toml_exit_2(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text("lattice = [")
    r = run("bands", "--config", str(f), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "TOML" in r.stderr


def test_bands_small_cell(tmp_path):
    out = tmp_path / "b"
    r = run("bands", "--set", "lattice.index=2", "--set", "lattice.band_points=12", "--set", "lattice.dos_kmesh=3",
            "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["n_atoms"] == 76 and s["theta_deg"] == pytest.approx(13.174, abs=1e-3)
    assert s["central_bandwidth_meV"] > 0
    assert (out / "bands.png").stat().st_size > 1000
    assert (out / "config.toml").exists() and (out / "provenance.json").exists()
    # a finished run is not overwritten without --force
    r = run("bands", "--set", "lattice.index=2", "--out", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
