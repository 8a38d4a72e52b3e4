import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import U_KINK


def _moireu(*args, timeout=300):
    code = "import sys; from moireu.cli import main; sys.argv = ['moireu'] + sys.argv[1:]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):
    """A run directory with a tiny CNN trained by the ML stage (1 epoch) and its config."""
    from moireu.config import load_config, save_resolved
    from moireu.ml.train import train_run

    rd = tmp_path_factory.mktemp("run")
    cfg = load_config("demo", overrides=["train.model=cnn", "train.epochs=1", "train.width=4", "train.ensemble=1"])
    save_resolved(cfg, rd)
    train_run(store, rd / "train_cnn", cfg, progress=False)
    return rd


def test_analyze_and_report_commands(store, run_dir):
    out = run_dir / "analysis"
    r = _moireu("analyze", "--data", str(store), "--runs", str(run_dir), "--out", str(out),
                "--set", "analysis.n_bootstrap=30", "--set", "analysis.kernel_ridge=false",
                "--set", "analysis.attribution_per_u=2", "--set", "analysis.baseline_components=[3]", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    res = json.loads((out / "analysis.json").read_text())
    for f in res["figures"].values():
        assert (out / f).stat().st_size > 5000
    # the HF order parameters of the synthetic store switch on at U_KINK: the estimators find it
    hf = [e for e in res["crossover"]["estimates"] if e["quantity"] == "hf_staggered_moment"][0]
    assert hf["U_c"] == pytest.approx(U_KINK, abs=0.05) and hf["U_c_over_t"] == pytest.approx(1.0, abs=0.02)
    pca = [e for e in res["crossover"]["estimates"] if e["quantity"].startswith("PCA")][0]
    assert pca["supported"] and abs(pca["U_c"] - U_KINK) < 0.6
    assert summary["crossover"]["U_c"] == pytest.approx(U_KINK, abs=0.3)
    # interpretability of the trained model, loaded through moireu.ml.load_run
    assert res["models"][0]["name"] == "cnn"
    assert {e["method"] for e in res["interpretability"]} == {"gradcam", "guided_backprop"}
    for e in res["interpretability"]:
        if e["all_zero"]:  # e.g. Grad-CAM of a 1-epoch net: flagged, no shares, no crossover estimate
            assert "attention" not in e and any("every map is zero" in n for n in res["notes"])
            assert not any(f"({e['model']}, {e['method']})" in x["quantity"] for x in res["crossover"]["estimates"])
        else:
            assert np.allclose(np.sum(e["attention"]["mean"], axis=1), 1.0)
    assert not [e for e in res["interpretability"] if e["method"] == "guided_backprop"][0]["all_zero"]
    assert any(e["quantity"].startswith("attention shift") for e in res["crossover"]["estimates"])
    assert "attr_cnn_gradcam" in res["figures"] and "attention" in res["figures"]
    # baselines on exactly the split recorded in the checkpoint (held-out untouched)
    import torch

    sp = torch.load(run_dir / "train_cnn" / "checkpoint.pt", weights_only=True)["split"]
    assert res["split_sizes"]["test"] == len(sp["test"]) and res["split_sizes"]["train"] == len(sp["train"])
    assert res["split_sizes"]["heldout"] == res["store"]["n_heldout"]
    assert sum(v for k, v in res["split_sizes"].items() if k != "heldout") == res["store"]["n_grid"]
    assert res["baselines"][0]["metrics"]["test"]["r2"] > 0.5
    r = _moireu("report", str(run_dir))
    assert r.returncode == 0, r.stderr
    html = (run_dir / "report.html").read_text()
    assert "band structure (moireu bands): not run" in html and "attr_cnn" not in html
    assert html.count("<img ") >= 10


def test_split_without_models_is_the_ml_split(data):
    """Without trained runs the baselines use the ML stage's split: by variation group (no crop in two
    parts) when the store has variation ids, the stratified split by image for a store without."""
    import dataclasses

    from moireu.analysis.run import default_split as split_indices
    from moireu.ml.data import split_indices as ml_split
    from moireu.ml.data import stratified_split

    grid = np.flatnonzero(data.grid)
    var = np.arange(data.n) % 7
    idx = split_indices(dataclasses.replace(data, variation=var), seed=3)
    parts = ml_split("variation", grid.size, var[grid], seed=3, fractions=(0.55, 0.15, 0.15, 0.15))
    for k in ("train", "val", "cal", "test"):
        assert np.array_equal(idx[k], grid[parts[k]])
    assert not set(var[idx["train"]]) & set(var[idx["test"]])
    assert np.array_equal(idx["heldout"], np.flatnonzero(data.heldout))
    old = split_indices(dataclasses.replace(data, variation=None), seed=3)
    tr, va, te = stratified_split(data.U[grid], (0.6, 0.2, 0.2), seed=3)
    assert np.array_equal(old["train"], grid[tr]) and np.array_equal(old["test"], grid[te])


def test_analyze_without_trained_runs(store, tmp_path):
    """Similarity, PCA, baselines and crossover need no network: the ML stage's split stands in."""
    out = tmp_path / "a"
    r = _moireu("analyze", "--data", str(store), "--out", str(out), "--set", "analysis.n_bootstrap=20",
                "--set", "analysis.kernel_ridge=false", "--set", "analysis.baseline_components=[3]")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "analysis.json").read_text())
    assert res["baselines"] and not res.get("models")


def test_cli_refuses_bad_input(store, tmp_path):
    r = _moireu("analyze", "--data", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = _moireu("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    from moireu.analysis.run import find_model_runs
    from moireu.cli.report import _analysis_config
    from moireu.errors import InputError

    with pytest.raises(InputError, match="checkpoint.pt"):
        find_model_runs([tmp_path])
    with pytest.raises(InputError, match="mask_radius"):
        _analysis_config({}, None, None, ["analysis.mask_radius=0.7"])
