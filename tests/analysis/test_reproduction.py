"""docs/paper-reproduction.md and reproduction.json are written from measured JSON only."""

import json

import numpy as np

from moireu.analysis.reproduction import aggregate, collect, write_doc


def _eval(d, split, mae, rmse, r2, n=10, cov=None):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"eval_{split}.json").write_text(json.dumps({"mae": mae, "rmse": rmse, "r2": r2, "n": n, "coverage90": cov}))


def test_aggregate_is_mean_and_sample_std():
    assert aggregate([0.1, 0.3]) == f"0.20 ± {np.std([0.1, 0.3], ddof=1):.2f}"
    assert aggregate([0.25]) == "0.25" and aggregate([]) == "–" and aggregate([None, float("nan")]) == "–"


def test_collect_and_write_doc(tmp_path):
    run = tmp_path / "run"
    for s, (a, b) in enumerate([(0.2, 0.6), (0.4, 0.8)]):
        _eval(run / "repro" / f"cnn_paper_s{s}", "test", a, a + 0.1, 0.95)
        _eval(run / "repro" / f"cnn_paper_s{s}", "heldout", b, b + 0.1, 0.8, n=4)
        _eval(run / "ours" / f"cnn_s{s}", "test", a / 4, a / 3, 0.999)
    _eval(run / "ours" / "cnn_s0" / "blind", "heldout", 0.09, 0.12, 0.99, n=60, cov=0.9)
    (run / "analysis_paper").mkdir(parents=True)
    (run / "analysis_paper" / "analysis.json").write_text(json.dumps({
        "pca": {"first3_percent": [60.0, 30.0, 5.0], "fitted_on": "per-U mean images"},
        "similarity": {"min_similarity": 0.9999}, "figures": {"similarity": "similarity.png"},
        "baselines": [{"name": "paper PCA(3)+ridge", "metrics": {"test": {"mae": 0.5, "rmse": 0.6, "r2": 0.9}}}],
        "crossover": {"combined": {"U_c": 2.5, "U_c_over_t": 0.93}}, "store": {"n_samples": 30}}))
    (run / "analysis_paper" / "similarity.png").write_bytes(b"\x89PNG fake")
    (run / "stages.json").write_text(json.dumps({"config": {"lattice": {"index": 2}, "preset": "paper"},
                                                 "stages": [{"stage": "analysis paper", "command": "moireu analyze X",
                                                             "skipped": False}]}))
    res = collect(run)
    rows = {(r["source"], r["model"]): r for r in res["rows"]}
    assert rows[("paper", "CNN")]["heldout_mae"] == "0.50 ± 0.08"
    rep = rows[("reproduction", "CNN")]
    assert rep["runs"] == 2 and rep["test_mae"] == aggregate([0.2, 0.4], 3) and rep["heldout_n"] == 4
    assert rows[("reproduction", "ResNet-18")]["runs"] == 0  # not run: shown, with no number
    assert rows[("ours", "cnn")]["heldout_mae"] == "–"  # not measured: never invented
    assert rows[("ours", "cnn")]["blind_mae"] == "0.090" and rows[("ours", "cnn")]["blind_coverage90"] == "0.90"
    assert rows[("ours", "cnn")]["runs"] == 2 and rows[("ours", "cnn")]["blind_n"] == 60
    doc = tmp_path / "docs" / "paper-reproduction.md"
    write_doc(run, doc)
    text = doc.read_text()
    assert "not the paper's setting" in text and "i = 2" in text
    assert "| reproduction | CNN | 2 |" in text and "moireu analyze X" in text
    assert "blind MAE" in text and "60 images" in text
    img = tmp_path / "docs" / "img" / "paper-reproduction"
    assert (img / "paper_similarity.png").is_file()
    # a figure of an earlier run that this run did not make is removed
    (img / "paper_stale.png").write_bytes(b"x")
    write_doc(run, doc)
    assert not (img / "paper_stale.png").exists() and (img / "paper_similarity.png").is_file()
    assert json.loads((run / "reproduction.json").read_text())["rows"][0]["source"] == "paper"
