import json
import subprocess
import sys

import pytest

from .conftest import U_KINK


def _moireu(*args, timeout=300):
    code = "import sys; from moireu.cli import main; sys.argv = ['moireu'] + sys.argv[1:]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def test_analyze_and_report_commands(store, tmp_path):
    out = tmp_path / "run" / "analysis"
    r = _moireu("analyze", "--data", str(store), "--out", str(out), "--set", "analysis.n_bootstrap=30",
                "--set", "analysis.kernel_ridge=false", "--set", "analysis.baseline_components=[3]", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    res = json.loads((out / "analysis.json").read_text())
    for f in res["figures"].values():
        assert (out / f).stat().st_size > 5000
    # the HF order parameters of the synthetic store switch on at U_KINK: the combined estimate finds it
    hf = [e for e in res["crossover"]["estimates"] if e["quantity"] == "hf_staggered_moment"][0]
    assert hf["U_c"] == pytest.approx(U_KINK, abs=0.05) and hf["U_c_over_t"] == pytest.approx(1.0, abs=0.02)
    pca = [e for e in res["crossover"]["estimates"] if e["quantity"].startswith("PCA")][0]
    assert pca["supported"] and abs(pca["U_c"] - U_KINK) < 0.6
    assert summary["crossover"]["U_c"] == pytest.approx(U_KINK, abs=0.3)
    # baselines on the ML stage's split (60/20/20 of the grid samples, held-out untouched)
    assert res["split_sizes"]["heldout"] == res["store"]["n_heldout"]
    assert sum(res["split_sizes"][k] for k in ("train", "val", "test")) == res["store"]["n_grid"]
    assert res["baselines"][0]["metrics"]["test"]["r2"] > 0.5
    r = _moireu("report", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Band structure" in html and "band structure (moireu bands): not run" in html


def test_cli_refuses_bad_input(store, tmp_path):
    r = _moireu("analyze", "--data", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = _moireu("analyze", "--data", str(store), "--out", str(tmp_path / "o"), "--runs", str(tmp_path))
    assert r.returncode == 2 and "checkpoint.pt" in r.stderr
    r = _moireu("analyze", "--data", str(store), "--out", str(tmp_path / "o"), "--set", "analysis.mask_radius=0.7")
    assert r.returncode == 2 and "mask_radius" in r.stderr
    r = _moireu("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr
