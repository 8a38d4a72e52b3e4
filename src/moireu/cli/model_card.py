"""The model card of a trained run: what it was trained on, how, how well it does on data it never saw.

Assembled here (the command layer may read every stage) from the run's checkpoint, its training store and
the evaluations given; written next to the shipped weights by :func:`moireu.ml.shipped.ship_model`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from moireu.errors import InputError

#: what the U of every moireu model is
U_MEANING = ("the on-site Hubbard U (eV) of unrestricted Hartree–Fock on the TBG tight-binding model "
             "(Slater–Koster pz), with the long-range Coulomb interaction screened by ε and a double gate, acting "
             "on the density relative to the neutral non-interacting state, at filling ν; a model parameter whose "
             "simulated STM map looks like the input, not a measured energy")

#: what no shipped model has been tested on
NOT_TESTED = ("real measured STM maps (no labelled experimental U exists)",
              "fillings other than the trained ν; gate-induced doping",
              "heterostrain above the trained range, lattice relaxation, hBN alignment, substrate moiré",
              "tip artefacts beyond white noise, piezo scale error and drift of the measurement model",
              "twist angles outside the accepted range (refused: exit 3)")


def _read_eval(path: Path) -> dict[str, Any]:
    """An ``moireu evaluate --json`` document (its stdout may carry log lines before the JSON)."""
    try:
        text = Path(path).read_text()
        d = json.loads(text[text.index("{"):])
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is not the JSON output of moireu evaluate ({exc})") from None
    keys = ("mae", "rmse", "r2", "coverage90", "n")
    if not all(k in d for k in keys):
        raise InputError(f"{str(path)!r} lacks {[k for k in keys if k not in d]} (moireu evaluate --json output)")
    out = {k: d[k] for k in keys}
    store = d.get("store") or d.get("data")
    if store:
        out["store"] = str(store)
    return out


def _dataset_seed(cfg: dict[str, Any]) -> Any:
    """``dataset.seed`` of a stored configuration (None there: the top-level seed)."""
    seed = cfg.get("dataset", {}).get("seed")
    return cfg.get("seed") if seed is None else seed


def _store_seed(store: str | None) -> Any:
    """The dataset seed a store was built with (None when unreadable)."""
    if not store:
        return None
    try:
        from moireu.data import open_store

        return _dataset_seed(json.loads(open_store(store).attrs.get("config", "{}")))
    except Exception:  # the card then simply omits it
        return None


def model_card(run: str | Path, data: str | Path, blind: list[Path]) -> tuple[dict[str, Any], Path]:
    """``(card, checkpoint path)`` of the run ``run`` trained on the store ``data``."""
    from moireu.data import open_store
    from moireu.ml.predict import load_checkpoint

    blob = load_checkpoint(run)
    ck = Path(run) / "checkpoint.pt" if Path(run).is_dir() else Path(run)
    cfg = blob.get("config") or {}
    tr = blob.get("image_transform") or {}
    if isinstance(tr, str):
        tr = json.loads(tr)
    ref = tr.get("reference") or {}
    twist = tr.get("twist_deg", ref.get("twist_deg"))
    tol = float(tr.get("twist_tolerance_deg", 0.25))
    if twist is None:
        raise InputError(f"run {str(run)!r}: its image transform records no twist angle (a store without the "
                         "measurement model): it cannot be shipped for predict on maps")
    ds = open_store(data)
    states = json.loads(ds.attrs.get("states", "{}") or "{}")
    n_params = sum(int(math.prod(t.shape)) for t in blob["members"][0].values())
    rd = Path(run) if Path(run).is_dir() else Path(run).parent
    own = {s: _read_eval(rd / f"eval_{s}.json") for s in ("test", "heldout") if (rd / f"eval_{s}.json").is_file()}
    for e in own.values():
        e.pop("store", None)  # the training store: described under training_data
    blinds = []
    for b in blind:
        e = _read_eval(b)
        e["dataset_seed"] = _store_seed(e.pop("store", None))  # the seed says which store; its path is local
        blinds.append(e)
    hf, stm, dset = cfg.get("hf", {}), cfg.get("stm", {}), cfg.get("dataset", {})
    card = {
        "model": blob["model"], "ensemble": len(blob["members"]), "parameters_per_member": n_params,
        "recipe": blob.get("recipe"),
        "preset": cfg.get("preset"), "lattice_index": cfg.get("lattice", {}).get("index"),
        "interlayer_distance_A": cfg.get("lattice", {}).get("interlayer_distance"),
        "twist_deg": float(twist), "twist_accepted_deg": [float(twist) - tol, float(twist) + tol],
        "U_range_eV": blob.get("u_range"),
        "U_meaning": U_MEANING,
        "interaction": {"eps": hf.get("eps"), "gate_distance_A": hf.get("gate_distance"),
                        "filling": hf.get("filling"), "kT_eV": hf.get("kT"), "kmesh": hf.get("kmesh")},
        "training_states": {"fingerprint": states.get("fingerprint"), "source": states.get("source"),
                            "ladder_eV": {k: cfg.get("states", {}).get(k) for k in ("U_min", "U_max", "U_step")}},
        "training_data": {"U_values": dset.get("U_values"), "biases_eV": dset.get("biases"),
                          "acquisitions_per_U_and_bias": dset.get("n_offsets"), "dataset_seed": _dataset_seed(cfg),
                          "samples": int(ds.sizes.get("sample", 0)), "store_fingerprint": blob.get("store")},
        "input": {"image_pixels": stm.get("n_pixels"), "map_pixels": stm.get("map_pixels"),
                  "measurement": stm.get("measurement"),
                  "map_requirements": "a real-space LDOS / dI/dV map with its pixel size; pixels ≤ 0.97 Å, a field "
                                      "of view holding one FT window (see the README)"},
        "accuracy": {"test": own.get("test"), "heldout": own.get("heldout"), "blind": blinds,
                     "note": "test: unseen crops of the training U; held-out: unseen fractional U of the training "
                             "store; blind: stores built with other dataset seeds (new U and new crops)"},
        "not_tested_on": list(NOT_TESTED),
        "provenance": blob.get("provenance"),
    }
    return card, ck
