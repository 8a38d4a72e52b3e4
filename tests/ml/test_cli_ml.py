"""``moireu train / evaluate / predict`` end to end on a tiny store, every predict input format."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from moireu.cli import app
from moireu.errors import InputError

FAST = ["--set", "train.epochs=2", "--set", "train.width=4", "--set", "train.input_size=16",
        "--set", "train.ensemble=2", "--set", "train.batch_size=8"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    r = invoke("train", store, "--model", "cnn", "--out", out, "--quiet", "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["model"] == "cnn" and s["n_train"] > 0
    return out


def test_train_writes_run_directory(run_dir, store):
    for f in ("checkpoint.pt", "curves.png", "train.json", "config.toml", "provenance.json"):
        assert (run_dir / f).exists(), f
    assert 'model = "cnn"' in (run_dir / "config.toml").read_text()
    r = invoke("train", store, "--out", run_dir, "--quiet", *FAST)  # finished run: refuse without --force
    assert isinstance(r.exception, InputError) and "--force" in str(r.exception)


def test_evaluate_json_and_robustness(run_dir, store):
    r = invoke("evaluate", run_dir, store, "--split", "test", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert {"mae", "rmse", "r2", "coverage90", "n", "per_U"} <= set(res) and res["n"] == 14
    r = invoke("evaluate", run_dir, store, "--split", "heldout", "--augment", "all", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["robustness"]
    assert [row["profile"] for row in rows] == ["clean", "mild", "symb", "noisy"]
    r = invoke("evaluate", run_dir, store, "--split", "valid")
    assert isinstance(r.exception, InputError)


def _predict(run_dir, path, *extra):
    """Predict through the CLI: exit 0 in distribution, 3 (and a warning) out of it; the JSON either way."""
    r = invoke("predict", run_dir, path, "--json", *extra)
    assert r.exit_code in (0, 3), (r.output, r.exception)
    res = json.loads(r.stdout)
    assert (r.exit_code == 0) == res["in_distribution"]
    assert res["U_low"] <= res["U"] <= res["U_high"] and len(res["members"]) == 2
    assert res["U_range"][0] <= res["U"] <= res["U_range"][1]
    if r.exit_code == 3:
        assert "warning" in r.stderr and res["ood_reasons"]
        assert [res["U_low"], res["U_high"]] == res["U_range"]  # out of distribution: no claim beyond the range
    return res


def test_predict_ready_ftldos_npy_matches_the_store_prediction(run_dir, store, tmp_path):
    from moireu.ml import load_run, open_dataset, predict_tensor
    from moireu.ml.data import load_split

    img = load_split(open_dataset(store), "heldout").images[2]
    np.save(tmp_path / "ft.npy", img)
    res = _predict(run_dir, tmp_path / "ft.npy")
    import torch

    mu, lo, hi = predict_tensor(load_run(run_dir).model, torch.from_numpy(img)[None, None])
    assert res["U"] == pytest.approx(float(mu[0]), abs=1e-6)
    assert res["U_high"] == pytest.approx(float(hi[0]), abs=1e-6)


def _graphene_points(L=30.0):
    a = 2.46
    a1, a2 = np.array([a, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2])
    pts = []
    for i in range(-20, 21):
        for j in range(-20, 21):
            for b in (np.zeros(2), (a1 + a2) / 3):
                p = i * a1 + j * a2 + b
                if 0 <= p[0] < L and 0 <= p[1] < L:
                    pts.append(p)
    return np.array(pts)


def test_predict_every_map_format(run_dir, tmp_path, sxm_writer):
    rng = np.random.default_rng(0)
    xy = _graphene_points()
    table = np.column_stack([xy, 1 + 0.1 * rng.random(len(xy))])
    np.savetxt(tmp_path / "atoms.csv", table, delimiter=",", header="x,y,ldos", comments="")
    _predict(run_dir, tmp_path / "atoms.csv")
    grid = 1 + 0.2 * rng.random((64, 64))
    np.save(tmp_path / "real.npy", grid)
    res_npy = _predict(run_dir, tmp_path / "real.npy", "--pixel-size", "0.5")
    from PIL import Image

    Image.fromarray((grid * 100).astype(np.uint8)).save(tmp_path / "map.png")
    _predict(run_dir, tmp_path / "map.png", "--pixel-size", "0.5")
    sxm_writer(tmp_path / "scan.sxm", np.stack([grid, grid])[None].astype(np.float32), ["LI_Demod_1_X"], 32e-10)
    res_sxm = _predict(run_dir, tmp_path / "scan.sxm")
    assert np.isfinite(res_npy["U"]) and np.isfinite(res_sxm["U"])


def test_predict_refuses_bad_maps(run_dir, tmp_path):
    img = np.zeros((32, 32), np.float32)
    img[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", img)
    r = invoke("predict", run_dir, tmp_path / "nan.npy")
    assert isinstance(r.exception, InputError) and "NaN" in str(r.exception)
    np.save(tmp_path / "small.npy", np.ones((20, 20), np.float32))
    r = invoke("predict", run_dir, tmp_path / "small.npy", "--kind", "ftldos")
    assert isinstance(r.exception, InputError) and "32×32" in str(r.exception)
    r = invoke("predict", run_dir, tmp_path / "small.npy", "--pixel-size", "3.0")  # far too coarse
    assert isinstance(r.exception, InputError)
    (tmp_path / "bad.sxm").write_bytes(b"not an sxm file")
    r = invoke("predict", run_dir, tmp_path / "bad.sxm")
    assert isinstance(r.exception, InputError)
    r = invoke("predict", tmp_path / "no_run", tmp_path / "nan.npy")
    assert isinstance(r.exception, InputError) and "does not exist" in str(r.exception)


def test_models_command_lists_the_registry():
    r = invoke("models", "--json")
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.stdout)["variants"]}
    assert rows["cnn_paper"]["parameters"] == 320_609 and rows["cnn_paper"]["recipe"] == "paper"
    assert rows["cnn_mild"]["train"] == {"augment": "mild"}
    t = invoke("models")
    assert t.exit_code == 0 and "320,609" in t.output and "resnet18_paper" in t.output


def test_paper_images_command_refuses_a_store_without_ldos(store, tmp_path):
    r = invoke("dataset", "paper-images", store, "--out", tmp_path / "p.zarr")
    assert r.exit_code != 0 and isinstance(r.exception, InputError) and "contract D" in str(r.exception)
