"""Leak-free splits, normalised conformal calibration, the out-of-distribution score, and where
``evaluate`` may write."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import make_store, synthetic_images
from moireu.cli import app
from moireu.config import load_config
from moireu.errors import InputError
from moireu.ml import calibrate, evaluate_run, fit_difficulty, load_run, split_indices, train_run
from moireu.ml.uncertainty import sigma_hat

FAST = ["train.epochs=3", "train.width=4", "train.input_size=16", "train.ensemble=2", "train.batch_size=8"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=8, max_size=300), st.integers(0, 2**31 - 1))
def test_variation_split_parts_are_disjoint_in_variation_ids(var, seed):
    var = np.asarray(var)
    if np.unique(var).size < 4:
        with pytest.raises(InputError, match="at least 4"):
            split_indices("variation", var.size, var, seed=seed)
        return
    parts = split_indices("variation", var.size, var, seed=seed)
    pos = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(pos), np.arange(var.size))  # a partition of the samples
    ids = {k: set(var[v].tolist()) for k, v in parts.items()}
    for a in ids:
        assert ids[a], a  # every part gets at least one variation id
        for b in ids:
            if a < b:
                assert not ids[a] & ids[b], (a, b)
    again = split_indices("variation", var.size, var, seed=seed)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)  # seeded


def test_split_modes():
    var = np.tile(np.arange(26), 15)
    a = split_indices("variation", var.size, var, seed=0)
    b = split_indices("variation", var.size, var, seed=1)
    assert [len(np.unique(var[a[k]])) for k in ("train", "val", "cal", "test")] == [14, 4, 4, 4]
    assert not np.array_equal(a["test"], b["test"])
    p = split_indices("paper", 100, seed=7)  # the reference split: seed 42, by image, 60/20/20
    assert [p[k].size for k in ("train", "val", "test")] == [60, 20, 20]
    assert np.array_equal(p["train"], split_indices("paper", 100, seed=0)["train"])
    assert np.array_equal(p["cal"], p["val"])
    with pytest.raises(InputError, match="split mode"):
        split_indices("random", 10)
    with pytest.raises(InputError, match="variation ids"):
        split_indices("variation", 10)


def test_normalised_conformal_covers_and_adapts_on_synthetic_heteroscedastic_data():
    """y = μ + s(x)·ε with s ∝ 1 + 3·d: σ̂ fitted on one set, q on another, coverage on a third."""
    rng = np.random.default_rng(0)

    def draw(n):
        d = rng.uniform(0.5, 3.0, n)  # an input-distance term
        spread = rng.uniform(0.0, 0.1, n)
        s = 0.05 * (1 + 3 * d)
        return d, spread, s * rng.standard_normal(n)

    d_v, sp_v, e_v = draw(3000)
    coef = fit_difficulty(np.abs(e_v), sp_v, d_v)
    # E|ε| = √(2/π) s = 0.0399 + 0.1197 d: the distance carries the scale, the spread next to nothing
    assert coef[2] == pytest.approx(0.1197, abs=0.015) and coef[1] * 0.1 < 0.1 * coef[2]
    d_c, sp_c, e_c = draw(2000)
    cal = calibrate(np.zeros(2000), e_c, sigma_hat(coef, sp_c, d_c), alpha=0.1)
    d_t, sp_t, e_t = draw(20000)
    half = cal["q"] * sigma_hat(coef, sp_t, d_t)
    inside = np.abs(e_t) <= half
    assert 0.88 < inside.mean() < 0.92
    # conditional coverage holds at both ends of the difficulty range (the plain score would not)
    assert 0.85 < inside[d_t < 1.0].mean() < 0.95 and 0.85 < inside[d_t > 2.5].mean() < 0.95
    assert half[d_t > 2.5].mean() > 2.5 * half[d_t < 1.0].mean()


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "run"
    train_run(store, out, load_config("demo", None, FAST), progress=False)
    return out


def test_calibration_is_on_unseen_crops_and_train_json_is_strict(run_dir, store):
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    sp = ck["split"]
    from moireu.ml import open_dataset

    var = np.asarray(open_dataset(store)["variation"].values)
    ids = {k: set(var[np.asarray(sp[k])].tolist()) for k in ("train", "val", "cal", "test")}
    assert not ids["cal"] & (ids["train"] | ids["val"]) and not ids["test"] & (ids["train"] | ids["val"] | ids["cal"])
    text = (run_dir / "train.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    s = json.loads(text)
    assert s["split"] == "variation" and s["n_cal"] == 14 and s["u_range"] == [0.0, 6.0]
    assert s["cal_in_distribution"] >= 0.99 - 1e-9 and math.isfinite(s["ood"]["threshold"])


def test_ood_flags_noise_zero_and_other_angle_but_not_heldout(run_dir, store):
    from moireu.ml import open_dataset
    from moireu.ml.data import load_split

    model = load_run(run_dir).model
    held = load_split(open_dataset(store), "heldout")
    d_held = model.predict_details(torch.from_numpy(held.images))
    assert d_held["in_distribution"].mean() >= 0.8
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((3, 32, 32)).astype(np.float32)
    zero = np.zeros((1, 32, 32), np.float32)
    other = synthetic_images(np.array([1.0, 3.0, 5.0]), 32, seed=9, satellite_radius=0.5)
    for name, x in (("noise", noise), ("zero", zero), ("other angle", other)):
        d = model.predict_details(torch.from_numpy(x))
        assert not d["in_distribution"].any(), (name, d["ood_score"], model.ood["threshold"])
        # out of distribution: the interval is the whole trained range, the prediction inside it
        assert np.all(d["lower"] == 0.0) and np.all(d["upper"] == 6.0)
        assert np.all((d["mean"] >= 0.0) & (d["mean"] <= 6.0))
    assert np.isinf(model.predict_details(torch.from_numpy(zero))["ood_score"][0])


def test_interval_widens_with_distance_from_training(run_dir, store):
    from moireu.ml import open_dataset
    from moireu.ml.data import load_split

    model = load_run(run_dir).model
    a, b, c = model.conformal["coef"]
    assert a > 0 and b >= 0 and c >= 0
    held = load_split(open_dataset(store), "heldout").images
    noisy = held + 0.3 * np.random.default_rng(0).standard_normal(held.shape).astype(np.float32)
    d0 = model.predict_details(torch.from_numpy(held))
    d1 = model.predict_details(torch.from_numpy(noisy))
    assert (d1["dist"] > d0["dist"]).all()
    if c > 0:
        assert (d1["sigma_hat"] - b * d1["sigma"] > d0["sigma_hat"] - b * d0["sigma"]).all()


def _files(d):
    return {p.name: p.stat().st_mtime_ns for p in d.iterdir()}


def test_evaluate_never_writes_into_the_run_for_another_store(run_dir, store, tmp_path):
    other = make_store(tmp_path / "other.zarr", seed=5)
    before = _files(run_dir)
    res = evaluate_run(run_dir, other, "heldout")
    assert not res["same_store"] and res["written_to"] is None and _files(run_dir) == before
    res = evaluate_run(run_dir, other, "test", out=tmp_path / "elsewhere")
    assert _files(run_dir) == before
    assert json.loads((tmp_path / "elsewhere" / "eval_test.json").read_text())["mae"] == pytest.approx(res["mae"])
    r = CliRunner().invoke(app, ["evaluate", str(run_dir), str(other), "--split", "heldout", "--json"])
    assert r.exit_code == 0 and _files(run_dir) == before
    out = json.loads(r.stdout[r.stdout.index("{"):])  # what ../shared/tools/blind-check reads
    assert {"mae", "r2", "coverage90", "n"} <= set(out) and out["n"] == 6
    # the training store: the run's own scores go into the run
    res = evaluate_run(run_dir, store, "test")
    assert res["same_store"] and (run_dir / "eval_test.json").exists()


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_predict_exit_code_3_for_out_of_distribution_maps(run_dir, tmp_path):
    np.save(tmp_path / "noise.npy", np.random.default_rng(1).standard_normal((32, 32)).astype(np.float32))
    np.save(tmp_path / "zero.npy", np.zeros((32, 32), np.float32))
    for f in ("noise.npy", "zero.npy"):
        r = _invoke("predict", run_dir, tmp_path / f, "--json")
        assert r.exit_code == 3, (f, r.output)
        res = json.loads(r.stdout)
        assert res["in_distribution"] is False and res["ood_threshold"] > 0
        assert "warning" in r.stderr and "out of the training distribution" in r.stderr
    assert json.loads(_invoke("predict", run_dir, tmp_path / "zero.npy", "--json").stdout)["constant_input"]
    np.save(tmp_path / "zero_map.npy", np.zeros((64, 64)))  # a real-space map: no FT image at all
    r = _invoke("predict", run_dir, tmp_path / "zero_map.npy", "--pixel-size", "0.5", "--json")
    assert r.exit_code == 3 and "constant" in r.stderr
    res = json.loads(r.stdout)
    assert res["in_distribution"] is False and res["U"] is None
    img = synthetic_images(np.array([2.0]), 32, seed=11)[0]
    np.save(tmp_path / "good.npy", img)
    r = _invoke("predict", run_dir, tmp_path / "good.npy", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["in_distribution"] is True


def test_cli_errors_without_tracebacks(run_dir, tmp_path):
    """`--pixel-size abc` and a corrupt checkpoint: `error: …`, exit 2, no torch advice (issue 13)."""
    np.save(tmp_path / "m.npy", np.ones((40, 40)))
    bad = tmp_path / "badrun"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip" * 20)
    for args in (["predict", run_dir, tmp_path / "m.npy", "--pixel-size", "abc"],
                 ["predict", bad, tmp_path / "m.npy"],
                 ["evaluate", bad, tmp_path / "m.npy"]):
        p = subprocess.run([sys.executable, "-m", "moireu", *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr
        assert "weights_only" not in p.stderr and "unsafe" not in p.stderr.lower()
