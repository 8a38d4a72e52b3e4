"""``moireu scf`` / ``moireu sweep`` end to end on a tiny cell (TBG i = 1, 28 atoms)."""

import json
import sys

import pytest

from moireu.hf import HFResult

BASE = ["--preset", "demo", "--set", "lattice.index=1", "--set", "lattice.interlayer_distance=3.35",
        "--set", "hf.kmesh=[2,2]"]


class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def moireu(capsys, monkeypatch):
    """Run ``moireu ARGS`` in-process through the console entry point; returns rc/stdout/stderr."""
    from moireu.cli import main

    def run(*args, check=True):
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["moireu", *args])
        try:
            main()
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        if check and rc != 0:
            raise AssertionError(f"rc={rc}\n{err}")
        return _Run(rc, out, err)

    return run


def test_scf_json_and_result(moireu, tmp_path):
    p = moireu("scf", *BASE, "--set", "hf.U=8.0", "--json", "--out", str(tmp_path / "r"))
    s = json.loads(p.stdout)
    for key in ("converged", "iterations", "seconds", "fermi_level_eV", "max_moment", "staggered_moment",
                "charge_spread"):
        assert key in s
    assert s["converged"] and s["staggered_moment"] > 0.2
    assert "it    1" in p.stderr  # one progress line per iteration
    # the steps between building the system and iteration 1 are reported, and every line is logged
    assert p.stderr.index("reference state") < p.stderr.index("it    1")
    log = (tmp_path / "r" / "scf.log").read_text()
    for line in p.stderr.splitlines():
        assert line.strip() in log
    for key in ("homo_eV", "lumo_eV", "gap_eV"):
        assert key in s
    assert s["homo_eV"] < s["fermi_level_eV"] < s["lumo_eV"]
    res = HFResult.load(tmp_path / "r" / "hf_result.nc")
    assert res.converged and res.max_moment == pytest.approx(s["max_moment"])
    assert (tmp_path / "r" / "config.toml").exists()


def test_scf_unconverged_exits_nonzero(moireu, tmp_path):
    p = moireu("scf", *BASE, "--set", "hf.U=8.0", "--set", "hf.max_iter=2", "--out", str(tmp_path / "r"),
               check=False)
    assert p.returncode == 1 and "not converged" in p.stderr
    assert not (tmp_path / "r" / "hf_result.nc").exists() and (tmp_path / "r" / "checkpoint.nc").exists()
    p = moireu("scf", *BASE, "--set", "hf.U=8.0", "--set", "hf.max_iter=2", "--keep-unconverged",
               "--out", str(tmp_path / "k"))
    assert not HFResult.load(tmp_path / "k" / "hf_result.nc").converged


@pytest.mark.parametrize("override,word", [("hf.U=-1", "hf.U"), ("hf.eps=0", "hf.eps"), ("hf.filling=5", "filling"),
                                           ("hf.kmesh=[0,2]", "kmesh")])
def test_scf_bad_input(moireu, tmp_path, override, word):
    p = moireu("scf", *BASE, "--set", override, "--out", str(tmp_path / "r"), check=False)
    assert p.returncode == 2 and word in p.stderr
    assert not (tmp_path / "r").exists()


def test_sweep_writes_json_and_png(moireu, tmp_path):
    out = tmp_path / "sw"
    moireu("sweep", *BASE, "--U", "0:8:4", "--out", str(out))
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["U"] == [0.0, 4.0, 8.0] and doc["all_converged"] and doc["complete"]
    assert [p["U"] for p in doc["points"]] == [0.0, 4.0, 8.0]
    assert doc["points"][-1]["staggered_moment"] > doc["points"][0]["staggered_moment"]
    assert (out / "sweep.png").stat().st_size > 1000
    assert len(list((out / "results").glob("U_*.nc"))) == 3
    assert not (out / "sweep.partial.json").exists()
    p = moireu("sweep", *BASE, "--U", "3:1:1", "--out", str(tmp_path / "bad"), check=False)
    assert p.returncode == 2 and "U range" in p.stderr
