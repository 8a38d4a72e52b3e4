"""Trained ensembles shipped with the package: weights-only checkpoints with a JSON model card each.

A shipped model is two files in ``moireu/presets/models/``: ``<name>.pt`` (the run's ``checkpoint.pt``, a
weights-only state dictionary that :func:`moireu.ml.predict.load_run` reads with
``torch.load(weights_only=True)``) and ``<name>.card.json`` (what it was trained on, how, how accurate it is
on data it never saw, what its inputs must be). The card carries the SHA-256 of the weights: a shipped
checkpoint whose bytes differ from its card's is refused, never used. This module handles the files; what a
card says about the physics (twist angle, U ladder, …) is written by the command that ships a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from moireu.errors import InputError
from moireu.provenance import file_sha256, write_json_atomic

__all__ = ["CARD_FORMAT", "models_dir", "ship_model", "shipped_checkpoint", "shipped_models"]

#: format tag of a model card
CARD_FORMAT = "moireu-model-card/1"


def models_dir() -> Path:
    """The package folder of the shipped models."""
    return Path(str(resources.files("moireu") / "presets" / "models"))


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"model card {str(path)!r} is not readable JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or not card.get("name"):
        raise InputError(f"{str(path)!r} is not a moireu model card (format {CARD_FORMAT!r} with a name)")
    return card


def shipped_models(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """The cards of the shipped models (sorted by name); empty when none ships."""
    d = Path(folder) if folder is not None else models_dir()
    if not d.is_dir():
        return []
    return sorted((_read_card(p) for p in d.glob("*.card.json")), key=lambda c: c["name"])


def shipped_checkpoint(card: dict[str, Any], folder: str | Path | None = None) -> Path:
    """The weights of a shipped model, verified against its card's SHA-256 (InputError when they differ)."""
    d = Path(folder) if folder is not None else models_dir()
    path = d / card["weights"]["file"]
    if not path.is_file():
        raise InputError(f"shipped model {card['name']!r}: its weights {str(path)!r} are missing")
    got = file_sha256(path)
    if got != card["weights"]["sha256"]:
        raise InputError(f"shipped model {card['name']!r}: {str(path)!r} has SHA-256 {got[:16]}…, its card says "
                         f"{card['weights']['sha256'][:16]}… (edited or damaged: reinstall moireu)")
    return path


def ship_model(checkpoint: str | Path, name: str, card: dict[str, Any], folder: str | Path | None = None,
               overwrite: bool = False) -> Path:
    """Copy ``checkpoint`` to ``<folder>/<name>.pt`` and write its card (both atomically); returns the card path.

    ``card`` is completed with the format tag, the name and the weights' file name, size and SHA-256.
    A model of that name is replaced only with ``overwrite``.
    """
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise InputError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
    d = Path(folder) if folder is not None else models_dir()
    d.mkdir(parents=True, exist_ok=True)
    weights, card_path = d / f"{name}.pt", d / f"{name}.card.json"
    if card_path.exists() and not overwrite:
        raise InputError(f"a shipped model {name!r} exists ({str(card_path)!r}); pass --overwrite to replace it")
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".pt.tmp")
    os.close(fd)
    try:
        shutil.copyfile(checkpoint, tmp)
        full = {"format": CARD_FORMAT, "name": name} | card | {
            "weights": {"file": weights.name, "bytes": os.path.getsize(tmp), "sha256": file_sha256(Path(tmp)),
                        "format": "torch weights-only state dictionary (torch.load(weights_only=True))"}}
        os.chmod(tmp, 0o644)  # mkstemp makes it private; package data is world-readable
        os.replace(tmp, weights)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return write_json_atomic(card_path, full)
