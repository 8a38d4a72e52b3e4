"""``moireu predict MAP`` with no run: the shipped model trained for the map's measured twist angle."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from moireu.cli import app
from moireu.errors import InputError
from moireu.ml.shipped import shipped_checkpoint, shipped_models

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "tbg_i7_U4.npy"  # U = 4 eV, demo preset, a scan no training image drew


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_demo_model_ships_with_a_card_and_intact_weights():
    cards = {c["name"]: c for c in shipped_models()}
    c = cards["demo_cnn"]
    assert c["lattice_index"] == 7 and abs(c["twist_deg"] - 4.408) < 0.01 and c["ensemble"] >= 1
    assert c["training_states"]["fingerprint"] and c["accuracy"]["heldout"]["n"] > 0
    assert all(b["dataset_seed"] not in (None, c["training_data"]["dataset_seed"]) for b in c["accuracy"]["blind"])
    assert shipped_checkpoint(c).stat().st_size == c["weights"]["bytes"]
    total = sum((shipped_checkpoint(c).stat().st_size for c in cards.values()))
    assert total <= 20 * 2**20  # the budget for all shipped weights
    listed = json.loads(invoke("models", "--json").stdout)["shipped"]
    assert [m["name"] for m in listed] == sorted(cards)


def test_predict_with_no_run_answers_the_example_map():
    r = invoke("predict", EXAMPLE, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["shipped_model"]["name"] == "demo_cnn" and d["in_distribution"]
    assert abs(d["U"] - 4.0) <= 0.3 and d["U_low"] <= 4.0 <= d["U_high"], d


def test_a_map_of_another_twist_is_refused_with_the_measured_angle(tmp_path):
    from moireu.lattice.geometry import tbg_geometry
    from moireu.stm.measure import ScanParams, simulate_map

    g = tbg_geometry(5, 3.35)  # θ = 6.01°, a twist no shipped model was trained for
    rec = 2 * np.pi * np.linalg.inv(g.cell).T
    shell = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, -1], [-1, -1]]) @ rec
    ldos = 1.0 + 0.3 * np.cos(g.positions[:, :2] @ shell.T).sum(axis=1)
    m = simulate_map(g, ldos, ScanParams(pixels=256, pixel_size=0.45))
    path = tmp_path / "tbg_i5.npy"
    np.save(path, np.asarray(m.values))
    r = invoke("predict", path, "--pixel-size", "0.45", "--json")
    assert r.exit_code == 3, r.output
    d = json.loads(r.stdout)
    assert not d["in_distribution"] and d["U"] is None and abs(d["twist_deg"] - 6.01) < 0.1, d
    assert "measured twist 6.0" in d["ood_reasons"][0] and "models for 3.48°, 4.41°" in d["ood_reasons"][0]


def test_a_map_of_the_paper_angle_is_answered_by_the_i9_model(tmp_path):
    """A map simulated from the shipped i = 9 state at U = 2.5 eV (another scan than any training image):
    the metrology measures 3.48°, the paper model answers, its interval covers the state's U."""
    from moireu.data.states import States, shipped_states_path
    from moireu.lattice.geometry import tbg_geometry
    from moireu.stm.measure import ScanParams, simulate_map

    ldos = np.asarray(States.load(shipped_states_path("paper")).ldos(2.5, 0.0, [0.0]))[0]
    m = simulate_map(tbg_geometry(9, 2.94), ldos, ScanParams(pixels=384, pixel_size=0.45, rotation_deg=10.0,
                                                             noise_white=0.02, noise_seed=4))
    path = tmp_path / "tbg_i9_U2.5.npy"
    np.save(path, np.asarray(m.values))
    r = invoke("predict", path, "--pixel-size", "0.45", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["shipped_model"]["name"] == "paper_cnn" and abs(d["twist_deg"] - 3.48) < 0.02
    assert abs(d["U"] - 2.5) <= 0.3 and d["U_low"] <= 2.5 <= d["U_high"], d


def test_a_large_area_scan_is_refused_but_told_its_twist(tmp_path):
    """100 nm at 256 px: too coarse for any model's k window, but the moiré is measured and reported."""
    from moireu.lattice.geometry import tbg_geometry
    from moireu.stm.measure import ScanParams, simulate_map

    g = tbg_geometry(7, 3.35)
    rec = 2 * np.pi * np.linalg.inv(g.cell).T
    shell = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, -1], [-1, -1]]) @ rec
    ldos = 1.0 + 0.3 * np.cos(g.positions[:, :2] @ shell.T).sum(axis=1)
    path = tmp_path / "large.npy"
    np.save(path, np.asarray(simulate_map(g, ldos, ScanParams(pixels=256, pixel_size=3.9)).values))
    r = invoke("predict", path, "--pixel-size", "3.9", "--json")  # the entry point prints it as error: …, exit 2
    assert isinstance(r.exception, InputError), r.output
    assert "too coarse" in str(r.exception) and "moiré (moireu lattice): twist 4.4" in str(r.exception)


def test_white_noise_is_refused_for_having_no_moire_lattice(tmp_path):
    path = tmp_path / "noise.npy"
    np.save(path, np.random.default_rng(5).standard_normal((256, 256)))
    r = invoke("predict", path, "--pixel-size", "0.45", "--json")
    assert r.exit_code == 3, r.output
    d = json.loads(r.stdout)
    assert d["U"] is None and "no moiré lattice found in the map (alignment quality" in d["ood_reasons"][0], d


def test_a_text_exported_topograph_is_read_with_its_units_and_called_a_height(tmp_path):
    a = np.load(EXAMPLE)
    n = a.shape[1]
    f = tmp_path / "topo.txt"  # a text export: header with units, first row = top of the image
    f.write_text(f"Data Size: {n} x {a.shape[0]}\nSurface Size: {n * 0.045:.4f} x {a.shape[0] * 0.045:.4f}\n"
                 "X Unit: NanoMeter\nY Unit: NanoMeter\nZ Unit: PicoMeter\n"
                 + "\n".join(" ".join(f"{v:.7g}" for v in row) for row in a[::-1]) + "\n")
    r = invoke("predict", f, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert abs(d["U"] - 4.0) <= 0.3 and "height topograph" in d["warnings"][0], d
