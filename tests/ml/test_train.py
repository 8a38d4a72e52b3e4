"""Training on a tiny synthetic store: split, determinism, resume, checkpoint round trip, conformal."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import make_store
from moireu.config import load_config
from moireu.errors import InputError
from moireu.ml import (calibrate, conformal_quantile, evaluate_run, load_run, open_dataset, predict_tensor,
                       resolve_recipe, stratified_split, train_run)
from moireu.ml.data import Preprocess, load_split

FAST = ["train.epochs=3", "train.width=4", "train.input_size=16", "train.ensemble=2", "train.batch_size=8"]


def cfg_for(*extra, recipe="ours", model="cnn"):
    return load_config("demo", None, FAST + [f'train.recipe="{recipe}"', f'train.model="{model}"', *extra])


def test_stratified_split_is_seeded_and_stratified():
    U = np.repeat(np.arange(5.0), 10)
    a = stratified_split(U, (0.6, 0.2, 0.2), seed=3)
    b = stratified_split(U, (0.6, 0.2, 0.2), seed=3)
    c = stratified_split(U, (0.6, 0.2, 0.2), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    tr, va, te = a
    assert len(set(tr) | set(va) | set(te)) == 50 and len(tr) == 30 and len(va) == 10 and len(te) == 10
    for u in range(5):  # every U value appears 6/2/2 times
        assert [int((U[p] == u).sum()) for p in a] == [6, 2, 2]
    with pytest.raises(InputError, match="at least 3 images per U"):
        stratified_split(np.array([0.0, 1.0]), (0.6, 0.2, 0.2))


def test_conformal_quantile_known_answer_and_coverage():
    assert conformal_quantile(np.arange(1, 10), 0.1) == 9.0  # ceil(10·0.9) = 9th smallest
    assert conformal_quantile(np.arange(1, 20), 0.1) == 18.0  # ceil(20·0.9) = 18
    assert math.isinf(conformal_quantile(np.arange(1, 5), 0.1))
    rng = np.random.default_rng(0)
    y = rng.normal(size=4000)
    cal = calibrate(np.zeros((1, 2000)), y[:2000], alpha=0.1)
    assert abs(cal["q"] - 1.645) < 0.1  # the 90 % two-sided normal quantile
    cover = np.mean(np.abs(y[2000:]) <= cal["q"])
    assert 0.87 < cover < 0.93


def test_preprocess_standardises_on_train_stats():
    x = torch.randn(10, 1, 32, 32) * 3 + 2
    p = Preprocess((32, 32), input_size=16, per_image="zscore")
    z = p.resize(x)
    assert z.shape == (10, 1, 16, 16)
    torch.testing.assert_close(z.mean(), x.mean(), atol=1e-5, rtol=0)  # area averaging keeps the mean
    p.fit(z)
    out = p.normalise(z)
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-4
    with pytest.raises(InputError, match="does not match"):
        p(torch.randn(2, 1, 24, 24))


def test_train_is_deterministic_and_checkpoint_round_trips(store, tmp_path):
    cfg = cfg_for()
    s1 = train_run(store, tmp_path / "a", cfg, progress=False)
    s2 = train_run(store, tmp_path / "b", cfg, progress=False)
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert len(ca["members"]) == 2
    for ma, mb in zip(ca["members"], cb["members"]):
        for k in ma:
            assert torch.equal(ma[k], mb[k]), k
    assert s1["val_mae"] == s2["val_mae"]
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert not (tmp_path / "a" / "last.pt").exists()
    # normalisation stats live in the checkpoint, computed on the training split only
    ds = open_dataset(store)
    grid = load_split(ds, "grid")
    tr = np.array([np.flatnonzero(grid.index == i)[0] for i in ca["split"]["train"]])
    assert ca["target"]["mean"] == pytest.approx(grid.U[tr].mean())
    assert len(set(ca["split"]["train"]) & set(ca["split"]["test"])) == 0
    # round trip: the reloaded model gives the predictions the training-time model gave
    model, meta, prep = load_run(tmp_path / "a")
    assert meta["recipe"]["name"] == "ours" and prep.image_shape == (32, 32)
    x = torch.from_numpy(grid.images[:5])[:, None]
    mu, lo, hi = predict_tensor(model, x)
    mu2, _, _ = predict_tensor(load_run(tmp_path / "b").model, x)
    torch.testing.assert_close(mu, mu2, rtol=0, atol=0)
    assert (lo <= mu).all() and (mu <= hi).all()
    assert model.gradcam_layer == "members.0.features.3"
    assert model.get_submodule(model.gradcam_layer) is not None


def test_device_choice_is_recorded_and_cpu_stays_deterministic(store, tmp_path, monkeypatch):
    from moireu.ml.train import resolve_device

    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(InputError, match="train.device must be one of"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(InputError, match="sees no CUDA device"):
        resolve_device("cuda")
    s_auto = train_run(store, tmp_path / "auto", cfg_for("train.epochs=2"), progress=False)
    s_cpu = train_run(store, tmp_path / "cpu", cfg_for("train.epochs=2", 'train.device="cpu"'), progress=False)
    assert s_auto["device"]["device"] == s_cpu["device"]["device"] == "cpu"
    assert s_auto["val_mae"] == s_cpu["val_mae"] and s_cpu["seconds_per_epoch"] > 0
    with pytest.raises(Exception, match="device"):
        cfg_for('train.device="gpu"')


def test_interrupted_training_resumes_to_identical_weights(store, tmp_path):
    cfg = cfg_for("train.ensemble=2", "train.epochs=3")
    train_run(store, tmp_path / "full", cfg, progress=False)

    class Stop(Exception):
        pass

    def bomb(rec):
        if rec["member"] == 1 and rec["epoch"] == 0:
            raise Stop

    with pytest.raises(Stop):
        train_run(store, tmp_path / "cut", cfg, progress=False, callback=bomb)
    assert (tmp_path / "cut" / "last.pt").exists() and not (tmp_path / "cut" / "checkpoint.pt").exists()
    with pytest.raises(InputError, match="resume"):
        load_run(tmp_path / "cut")
    seen = []
    train_run(store, tmp_path / "cut", cfg, progress=False, callback=lambda r: seen.append((r["member"], r["epoch"])))
    assert seen[0] == (1, 1)  # picked up after the last finished epoch
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["members"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["members"]
    for ma, mb in zip(a, b):
        for k in ma:
            assert torch.equal(ma[k], mb[k]), k
    # a different configuration refuses to resume from a foreign state
    with pytest.raises(Stop):
        train_run(store, tmp_path / "cut2", cfg, progress=False, callback=bomb)
    with pytest.raises(InputError, match="other settings"):
        train_run(store, tmp_path / "cut2", cfg_for("train.ensemble=2", "train.epochs=4"), progress=False)


def test_paper_recipe_and_retrain_full(store, tmp_path):
    r = resolve_recipe(load_config("paper", None, ['train.recipe="paper"', 'train.model="cnn_paper"']).train)
    assert (r.lr, r.batch_size, r.weight_decay, r.grad_clip, r.loss, r.per_image, r.standardise_inputs,
            r.standardise_targets, r.clamp_min, r.ensemble, r.augment, r.patience, r.epochs, r.schedule, r.lr_min,
            r.split, r.input_size, r.model_kwargs) == (1e-3, 32, 1e-4, 1.0, "mse", "none", True, False, 0.0, 1,
                                                       "clean", 10, 40, "epoch", 1e-6, "paper", 0, {})
    cfg = cfg_for("train.retrain_full=true", "train.epochs=2", recipe="paper", model="fc")
    s = train_run(store, tmp_path / "p", cfg, progress=False)
    assert s["recipe"]["name"] == "paper"
    model, meta, _ = load_run(tmp_path / "p")
    assert len(meta["info"]["members"][0]["retrain_history"]) == meta["info"]["members"][0]["best_epoch"] + 1
    mu, lo, _ = predict_tensor(model, torch.from_numpy(load_split(open_dataset(store), "grid").images))
    assert (mu >= 0).all() and (lo >= 0).all()  # clamped at U ≥ 0


def test_random_split_is_the_reference_split():
    from moireu.ml.data import random_split

    tr, va, te = random_split(50, (0.6, 0.2, 0.2), seed=42)
    perm = np.random.default_rng(42).permutation(50)
    assert np.array_equal(tr, np.sort(perm[:30])) and np.array_equal(va, np.sort(perm[30:40]))
    assert np.array_equal(te, np.sort(perm[40:])) and len(set(tr) | set(va) | set(te)) == 50
    with pytest.raises(InputError, match="non-empty"):
        random_split(3, (0.6, 0.2, 0.2))


def test_paper_schedule_learning_rate_per_epoch(store, tmp_path):
    # CosineAnnealingLR(T_max = epochs, eta_min = 1e-6) stepped once per epoch: epoch e trains at
    # lr(e) = 1e-6 + ½ (1e-3 − 1e-6)(1 + cos(π e / T))
    from moireu.ml.train import fit_ensemble

    cfg = load_config("demo", None, ['train.recipe="paper"', 'train.model="cnn_paper"', "train.epochs=5",
                                     "train.width=2"])
    r = resolve_recipe(cfg.train)
    grid = load_split(open_dataset(store), "grid")
    from moireu.ml.data import StoreData, random_split

    tr, va, _ = random_split(grid.U.size)
    sub = lambda p: StoreData(grid.images[p], grid.U[p], grid.index[p], grid.attrs)  # noqa: E731
    _, info = fit_ensemble(sub(tr), sub(va), r, seed=0, progress=False)
    lrs = [h["lr"] for h in info["members"][0]["history"]]
    want = [1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * e / 5)) for e in range(len(lrs))]
    assert len(lrs) == 5 and np.allclose(lrs, want, rtol=1e-9, atol=0)


def test_paper_recipe_trains_with_the_reference_split_and_global_standardisation(store, tmp_path):
    cfg = load_config("demo", None, ['train.recipe="paper"', 'train.model="cnn_paper"', "train.epochs=2",
                                     "train.width=2"])
    s = train_run(store, tmp_path / "pp", cfg, progress=False)
    model, meta, prep = load_run(tmp_path / "pp")
    grid = load_split(open_dataset(store), "grid")
    from moireu.ml.data import random_split

    tr, va, te = random_split(grid.U.size, seed=42)
    assert meta["split"]["mode"] == "paper" and meta["split"]["seed"] == 42
    assert meta["split"]["test"] == grid.index[te].tolist() and s["n_test"] == te.size
    # one global mean/std of the training pixels, no per-image normalisation
    x = grid.images[tr]
    assert prep.per_image == "none"
    assert math.isclose(float(prep.mean), float(x.mean()), abs_tol=1e-6)
    assert math.isclose(float(prep.std), float(x.std(ddof=1)), rel_tol=1e-4)


def test_pretrained_weights_are_loaded_before_training(store, tmp_path):
    cfg = load_config("demo", None, ['train.recipe="paper"', 'train.model="resnet18_paper"', "train.epochs=1",
                                     f'train.pretrained_weights="{tmp_path / "missing.pth"}"'])
    assert resolve_recipe(cfg.train).pretrained_weights == str(tmp_path / "missing.pth")
    with pytest.raises(InputError, match="does not exist"):
        train_run(store, tmp_path / "pw", cfg, progress=False)


def test_evaluate_writes_metrics_and_plots(store, tmp_path):
    run = tmp_path / "r"
    train_run(store, run, cfg_for(), progress=False)
    res = evaluate_run(run, store, "test")
    assert {"mae", "rmse", "r2", "coverage90", "n", "per_U"} <= set(res)
    assert res["n"] == 14 and res["same_store"]  # 7 U values × 2 test variation ids (round(0.15·12))
    assert sum(r["n"] for r in res["per_U"]) == res["n"]
    assert (run / "parity_test.png").exists() and (run / "residual_test.png").exists()
    assert json.loads((run / "eval_test.json").read_text())["mae"] == pytest.approx(res["mae"])
    held = evaluate_run(run, store, "heldout", augment="noisy")
    assert held["n"] == 6 and held["augment"] == "noisy" and (run / "eval_heldout_noisy.json").exists()


def test_bad_inputs(store, tmp_path):
    cfg = cfg_for()
    with pytest.raises(InputError, match="does not exist"):
        train_run(tmp_path / "nope.zarr", tmp_path / "r", cfg, progress=False)
    bad = tmp_path / "junk.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be read|lacks"):
        train_run(bad, tmp_path / "r", cfg, progress=False)
    nan_store = make_store(tmp_path / "nan.zarr", with_nan=True)
    with pytest.raises(InputError, match="NaN"):
        train_run(nan_store, tmp_path / "r", cfg, progress=False)
    held_only = make_store(tmp_path / "held.zarr", splits="heldout")
    with pytest.raises(InputError, match="no 'grid' samples"):
        train_run(held_only, tmp_path / "r", cfg, progress=False)
    few = make_store(tmp_path / "few.zarr", n_per_U=2)
    with pytest.raises(InputError, match="test"):
        train_run(few, tmp_path / "r", cfg, progress=False)
    # a checkpoint trained on 32×32 images refuses a store of 24×24 images
    run = tmp_path / "ok"
    train_run(store, run, cfg_for("train.ensemble=1", "train.epochs=1"), progress=False)
    other = make_store(tmp_path / "small.zarr", n_pixels=24)
    with pytest.raises(InputError, match="trained on 32×32"):
        evaluate_run(run, other, "test")
    (run / "checkpoint.pt").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="corrupt"):
        load_run(run)


def test_ridge_readout_recovers_a_linear_map_and_initialises_the_frozen_skip():
    """Known answer: y = vᵀx + 2 exactly, tiny α → the ridge read-out interpolates y."""
    from moireu.ml.models import create_model
    from moireu.ml.train import _init_skip, ridge_readout

    g = torch.Generator().manual_seed(0)
    x = torch.rand(80, 1, 16, 16, generator=g) * 3.0 + 1.0
    v = torch.randn(256, generator=g)
    y = x.flatten(1) @ v + 2.0
    w, b = ridge_readout(x, y, alpha=1e-8)
    assert torch.allclose(x.flatten(1) @ w[0] + b, y, atol=1e-3)
    m = create_model("cnn", width=2, linear_skip=(16, 16)).eval()
    _init_skip(m, w, b)
    assert not m.skip.weight.requires_grad
    assert torch.allclose(m(x), y, atol=1e-3)  # the network starts at the ridge prediction
    with pytest.raises(InputError):
        ridge_readout(x, y, alpha=0.0)
    with pytest.raises(InputError):
        _init_skip(create_model("cnn", width=2), w, b)


def test_ridge_readout_noise_marginalised():
    """With per-pixel corruption variance v: equals the primal (AᵀA + diag(α + n v/s²))⁻¹Aᵀy, and
    turns the weight away from a pixel the corruption makes unreliable (Bishop 1995)."""
    from moireu.ml.train import ridge_readout

    g = torch.Generator().manual_seed(1)
    n, p = 40, 25
    x = torch.randn(n, 1, 5, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0, 0, 0] + x[:, 0, 2, 2]).double()  # two equally informative pixels
    v = torch.zeros(p, dtype=torch.float64)
    v[0] = 4.0  # pixel (0, 0) gets a large corruption
    w, b = ridge_readout(x, y, alpha=0.5, noise_var=v)
    a = x.flatten(1)
    m, s = a.mean(0), a.std(0)
    A = (a - m) / s
    D = torch.diag(0.5 + n * v / s ** 2)
    w_ref = torch.linalg.solve(A.T @ A + D, A.T @ (y - y.mean())) / s
    assert torch.allclose(w[0].double(), w_ref, atol=1e-5)
    w0, _ = ridge_readout(x, y, alpha=0.5)
    assert abs(w[0, 0]) < 0.2 * abs(w0[0, 0]) and abs(w[0, 12]) > 0.9 * abs(w0[0, 12])


def test_skip_ridge_penalty_is_chosen_on_validation_images():
    """More pixels than images and a noisy target: the interpolating penalty loses to a smoother one
    on unseen images, and the selection picks the grid value with the lowest validation MAE."""
    from moireu.ml.train import ridge_readout, select_ridge_alpha

    g = torch.Generator().manual_seed(3)
    n, nv, p = 150, 60, 256
    w_true = torch.randn(p, generator=g) / p ** 0.5
    x, xv = torch.randn(n, 1, 16, 16, generator=g), torch.randn(nv, 1, 16, 16, generator=g)
    y = x.flatten(1) @ w_true + 1.0 * torch.randn(n, generator=g)
    yv = xv.flatten(1) @ w_true + 1.0 * torch.randn(nv, generator=g)
    alpha, table = select_ridge_alpha(x, y, xv, yv, 1e-3, decades=6)
    assert [r["alpha"] for r in table] == pytest.approx([1e-3 * 10.0 ** j for j in range(7)])
    best = min(table, key=lambda r: r["val_mae"])
    assert alpha == best["alpha"] and alpha > 1e-3
    assert best["val_mae"] < 0.8 * table[0]["val_mae"]
    w, b = ridge_readout(x, y, alpha)
    assert float((xv.flatten(1) @ w[0] + b - yv).abs().mean()) == pytest.approx(best["val_mae"], rel=1e-5)
