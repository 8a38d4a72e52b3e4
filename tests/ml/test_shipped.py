"""Shipped models: weights-only checkpoints with a card, verified by SHA-256 before use."""

import json

import pytest

from moireu.errors import InputError
from moireu.ml import load_run
from moireu.ml.shipped import CARD_FORMAT, ship_model, shipped_checkpoint, shipped_models

from test_cli_ml import run_dir  # noqa: F401  (the module's trained tiny run)


def test_ship_list_verify_and_refuse_edits(run_dir, tmp_path):  # noqa: F811
    folder = tmp_path / "models"
    assert shipped_models(folder) == []
    card = ship_model(run_dir / "checkpoint.pt", "tiny_cnn", {"model": "cnn", "twist_deg": 4.41}, folder)
    (c,) = shipped_models(folder)
    assert c["format"] == CARD_FORMAT and c["name"] == "tiny_cnn" and c["twist_deg"] == 4.41
    assert c["weights"]["bytes"] == (run_dir / "checkpoint.pt").stat().st_size
    path = shipped_checkpoint(c, folder)
    assert load_run(path).meta["model"] == "cnn"  # the shipped file is the run's checkpoint, loadable as is
    with pytest.raises(InputError, match="exists"):
        ship_model(run_dir / "checkpoint.pt", "tiny_cnn", {"model": "cnn", "twist_deg": 4.41}, folder)
    ship_model(run_dir / "checkpoint.pt", "tiny_cnn", {"model": "cnn", "twist_deg": 4.0}, folder, overwrite=True)
    assert shipped_models(folder)[0]["twist_deg"] == 4.0
    # edited weights are refused, never used
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="edited or damaged"):
        shipped_checkpoint(shipped_models(folder)[0], folder)
    path.unlink()
    with pytest.raises(InputError, match="missing"):
        shipped_checkpoint(shipped_models(folder)[0], folder)
    # a card that is not one
    card.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not a moireu model card"):
        shipped_models(folder)
    with pytest.raises(InputError, match="model name"):
        ship_model(run_dir / "checkpoint.pt", "../evil", {}, folder)
