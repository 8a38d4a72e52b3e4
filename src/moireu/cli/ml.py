"""``moireu train``, ``moireu evaluate``, ``moireu predict``: learning U from FT-LDOS images."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import (BiasOpt, ChannelOpt, ConfigOpt, DirectionOpt, ForceOpt, JsonOpt, PixelSizeOpt, PresetOpt,
                               SetOpt, emit_json, info, prepare_run_dir, resolve)
from moireu.errors import InputError
from moireu.provenance import json_safe


def train_cmd(
    data: Path = typer.Argument(..., help="dataset store (moireu dataset build)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="a registered variant (moireu models; default: train.model)"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="ours (default) or paper (reference recipe)"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="run directory"),
    json_: bool = JsonOpt,
    force: bool = ForceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train a regressor of U on a dataset store; resumes an interrupted run in --out.

    Writes checkpoint.pt, curves.png, train.json, config.toml and provenance.json into --out.
    """
    from moireu.ml import train_run

    overrides = list(set_ or [])
    if model is not None:
        overrides.append(f'train.model="{model}"')
    if recipe is not None:
        overrides.append(f'train.recipe="{recipe}"')
    cfg = resolve(preset, config, overrides)
    if force:
        (Path(out) / "last.pt").unlink(missing_ok=True)
    elif (Path(out) / "last.pt").exists() and not (Path(out) / "checkpoint.pt").exists():
        info(f"resuming the interrupted run in {out} (use --force to start afresh)")
    out = prepare_run_dir(out, cfg, "checkpoint.pt", force=force, extra={"data": str(Path(data).resolve())})
    tc = cfg.train
    info(f"training {tc.model} (recipe {tc.recipe}, {tc.ensemble if tc.recipe == 'ours' else 1} member(s)) on {data}")
    summary = train_run(data, out, cfg, resume=not force, progress=not quiet)
    cal = summary["calibration"]
    info(f"done in {summary['train_seconds']:.1f} s: validation MAE {summary['val_mae']:.4f} eV "
         f"(n_train {summary['n_train']}, n_val {summary['n_val']}, n_cal {summary['n_cal']}, "
         f"n_test {summary['n_test']}, split by {summary['split']}); calibration MAE {_num(summary['cal_mae'])} eV, "
         f"conformal q {_num(cal['q'], 3)}, OOD threshold {_num(summary['ood']['threshold'], 3)}; "
         f"wrote {out / 'checkpoint.pt'}")
    if json_:
        emit_json(summary | {"run": str(out)})


def evaluate_cmd(
    run: Path = typer.Argument(..., help="run directory of moireu train"),
    data: Path = typer.Argument(..., help="dataset store"),
    split: str = typer.Option("test", "--split", help="test (grid crops never trained on), heldout, cal, val or train"),
    augment: str = typer.Option("clean", "--augment", "-a",
                                help="corrupt the images first: clean, mild, symb, noisy, or all (robustness table)"),
    seed: int = typer.Option(0, "--seed", help="seed of the corruption"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write eval_*.json and plots here (required to keep "
                                       "files for a store other than the run's training store)"),
    json_: bool = JsonOpt,
) -> None:
    """MAE, RMSE, R², 90 % interval coverage, in-distribution fraction and per-U errors.

    On the run's own training store the scores and parity/residual PNGs go into RUN (its own
    scores); on any other store they go only to --out (and stdout with --json), never into RUN.
    """
    from moireu.ml import evaluate_run, format_table, profile_names

    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    if augment == "all":
        rows = []
        for prof in profile_names():
            r = evaluate_run(run, data, split, augment=prof, seed=seed, out=out)
            rows.append({"model": f"{r['model']}/{r['recipe']}", "profile": prof,
                         **{k: r[k] for k in ("mae", "rmse", "r2", "coverage90", "in_distribution", "n")}})
        info(format_table(rows))
        if json_:
            emit_json(json_safe({"split": split, "robustness": rows}))
        return
    if augment not in profile_names():
        raise InputError(f"--augment must be one of {', '.join(profile_names())} or all, got {augment!r}")
    res = evaluate_run(run, data, split, augment=augment, seed=seed, out=out)
    cov = res["coverage90"]
    info(f"{res['model']} ({res['recipe']}, K={res['ensemble']}) on {split} [{res['augment']}]: n={res['n']}  "
         f"MAE {res['mae']:.4f} eV  RMSE {res['rmse']:.4f} eV  R² {_num(res['r2'])}  "
         f"coverage({res['nominal_coverage']:.0%}) {_num(cov, 3)}  in-distribution {_num(res['in_distribution'], 3)}")
    if not res["same_store"]:
        info("note: this store is not the run's training store: its scores are not the run's own"
             + (f"; written to {res['written_to']}" if res["written_to"] else " (nothing written; use --out DIR to keep them)"))
    if json_:
        emit_json(res)
    else:
        for row in res["per_U"][:40]:
            info(f"  U={row['U']:7.3f}  n={row['n']:4d}  MAE {row['mae']:.4f}  mean Û {row['mean_pred']:.3f}")


def _num(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def parse_pixel_size(value: Optional[str]):
    """``--pixel-size`` 'p' or 'px,py' (Å, finite, > 0) → float or (px, py); None passes through."""
    import math

    if value is None:
        return None
    parts = str(value).replace(",", " ").split()
    try:
        nums = [float(v) for v in parts]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in nums):
        raise InputError(f"--pixel-size must be one or two finite positive numbers in Å ('p' or 'px,py'), "
                         f"got {value!r}")
    return nums[0] if len(nums) == 1 else (nums[0], nums[1])


def load_map_image(path: Path, meta: dict, kind: str = "auto", pixel_size: Optional[str] = None,
                   channel: Optional[str] = None, direction: str = "forward", bias: Optional[float] = None):
    """A user's map → (FT-LDOS image on the run's training window (2-D float32), alignment dict or None).

    ``kind="ftldos"`` (or ``auto`` for a ``.npy`` of the trained image shape with no pixel size
    given and no sidecar JSON) reads a ready FT-LDOS image; otherwise the map goes through the
    measurement model's :func:`moireu.stm.measure.user_map_image` (alignment: measured twist angle,
    moiré period, orientation, quality, in_range) with the training store's ``image_transform``.
    """
    import numpy as np

    from moireu.ml import read_ready_image

    shape = tuple(meta["preprocess"]["image_shape"])
    path = Path(path)
    if not path.exists():
        raise InputError(f"map {str(path)!r} does not exist")
    if kind not in ("auto", "ftldos", "map"):
        raise InputError(f"--kind must be auto, ftldos or map, got {kind!r}")
    if kind == "auto" and path.suffix.lower() == ".npy" and pixel_size is None:
        sidecar = [path.with_suffix(path.suffix + ".json"), path.with_suffix(".json")]
        if not any(p.exists() for p in sidecar):
            from moireu.io import load_npy

            arr_shape = load_npy(path, mmap_mode="r").shape
            if tuple(arr_shape) == shape:
                kind = "ftldos"
    if kind == "ftldos":
        if bias is not None:
            raise InputError(f"--bias selects the map of a grid-spectroscopy file; {path} is a ready FT-LDOS image")
        return read_ready_image(path, shape), None
    from moireu.stm.measure import user_map_image

    transform = meta.get("image_transform") or {}
    if not transform:
        raise InputError("the run's checkpoint holds no image_transform (the training store had none), so a raw "
                         "map cannot be put on the training window; pass a ready FT-LDOS .npy instead")
    ps = parse_pixel_size(pixel_size)
    # the shared measurement model: the map is aligned to the training frame like every training image
    img, align = user_map_image(path, transform, pixel_size=ps, channel=channel, direction=direction, bias=bias)
    arr = np.asarray(getattr(img, "values", img), dtype=np.float32)
    if arr.shape != shape:
        raise InputError(f"the map's FT-LDOS image is {arr.shape[0]}×{arr.shape[1]} but the model was trained on "
                         f"{shape[0]}×{shape[1]} images")
    a = _align_dict(align)
    if a is not None:  # what the reader knows of the channel (a height topograph, a dI/dV signal, …)
        attrs = getattr(img, "attrs", {}) or {}
        a |= {k: attrs[f"map_{k}"] for k in ("channel_kind", "value_unit") if f"map_{k}" in attrs}
    return arr, a


def _is_constant_map(path: Path, pixel_size, channel: Optional[str], direction: str,
                     bias: Optional[float] = None) -> bool:
    """Whether a map file reads as a constant array (False when it cannot be read at all)."""
    import numpy as np

    try:
        from moireu.io import read_map

        m = read_map(path, pixel_size=pixel_size, channel=channel, direction=direction, bias=bias)
        v = np.asarray(m.values, dtype=np.float64)
        return bool(v.size) and bool(np.all(np.isfinite(v))) and float(np.ptp(v)) == 0.0
    except Exception:  # unreadable: the reader's own error is the one to show
        return False


def _align_dict(align) -> Optional[dict]:
    """AlignInfo (contract A) → plain dict (None when the map was not aligned)."""
    import dataclasses

    if align is None:
        return None
    if dataclasses.is_dataclass(align):
        return dataclasses.asdict(align)
    if isinstance(align, dict):
        return dict(align)
    return {k: getattr(align, k) for k in ("twist_deg", "moire_period", "angle_deg", "atomic_resolved", "quality",
                                           "in_range") if hasattr(align, k)}


def _shipped_for_map(map_: Path, kind: str, pixel_size: Optional[str], channel: Optional[str],
                     direction: str, bias: Optional[float] = None) -> tuple:
    """The shipped model trained for the map's twist angle: ``(LoadedRun, image, align, card)``.

    Each shipped model's alignment measures the map's twist angle against its own training lattice; the
    first whose alignment is in range answers. None in range: ``(None, None, align, cards)`` with the
    last alignment (its ``twist_deg`` is the measured angle).
    """
    from moireu.ml import load_run
    from moireu.ml.shipped import shipped_checkpoint, shipped_models

    cards = shipped_models()
    if not cards:
        raise InputError("no trained model ships with this installation: pass a run directory "
                         "(moireu predict RUN MAP; make demo trains one in runs/demo/train_cnn)")
    align = None
    for card in cards:
        lr = load_run(shipped_checkpoint(card))
        try:
            img, align = load_map_image(map_, lr.meta, kind, pixel_size, channel, direction, bias)
        except InputError as exc:  # e.g. pixels too coarse for any model: still tell what the map shows
            met = _metrology(map_, parse_pixel_size(pixel_size), channel, direction, bias)
            if met is None:
                raise
            from moireu.stm.metrology import format_pm

            raise InputError(f"{exc}. The map's moiré (moireu lattice): twist "
                             f"{format_pm(met.twist_deg, met.twist_sigma_deg, '°')}, heterostrain "
                             f"{format_pm(met.strain_percent, met.strain_sigma_percent, ' %')}") from None
        if align is None or align.get("in_range"):
            return lr, img, align, card
    return None, None, align, cards


def _alignment_reason(align: dict) -> str:
    """Why an alignment is out of range: no moiré lattice found, or a twist angle other than the trained one."""
    from moireu.stm.align import QUALITY_MIN

    q = align.get("quality", float("nan"))
    if not q >= QUALITY_MIN:
        return f"no moiré lattice found in the map (alignment quality {q:.2f} < {QUALITY_MIN:g})"
    return (f"measured twist angle {align.get('twist_deg'):.2f}° is outside the trained range "
            f"({align.get('trained_twist_deg', float('nan')):.2f}°)")


def _metrology(map_: Path, pixel_size, channel: Optional[str], direction: str, bias: Optional[float]):
    """The map's moiré metrology (``moireu lattice``), or None when it finds no moiré lattice."""
    from moireu.stm.measure import user_map_data
    from moireu.stm.metrology import measure_metrology

    try:
        return measure_metrology(user_map_data(map_, pixel_size, channel=channel, direction=direction, bias=bias),
                                 keep_spectrum=False)
    except InputError:
        return None


def _no_model_for_twist(map_: Path, align: dict, cards: list, json_: bool, met=None) -> None:
    """Exit 3: no shipped model was trained for the measured twist angle (the reason names both).

    The twist is the moiré metrology's (``met``, independent of any training lattice) when it found one
    outside every model's accepted range; otherwise the last alignment's.
    """
    from moireu.stm.align import QUALITY_MIN
    from moireu.stm.metrology import format_pm

    tw, q = align.get("twist_deg"), align.get("quality", float("nan"))
    have = ", ".join(f"{t:.2f}°" for t in sorted(c["twist_deg"] for c in cards))
    accepted = [c.get("twist_accepted_deg") or (c["twist_deg"], c["twist_deg"]) for c in cards]
    if met is not None and not any(lo <= met.twist_deg <= hi for lo, hi in accepted):
        tw = met.twist_deg
        why = f"measured twist {format_pm(met.twist_deg, met.twist_sigma_deg, '°')} (moiré metrology)"
    else:
        why = f"measured twist {tw:.2f}° (alignment quality {q:.2f})" if q >= QUALITY_MIN else _alignment_reason(align)
    why += f"; models for {have}"
    res = {"U": None, "U_low": None, "U_high": None, "in_distribution": False, "twist_deg": tw, "align": align,
           "ood_reasons": [why], "shipped_models": [{"name": c["name"], "twist_deg": c["twist_deg"]} for c in cards],
           "map": str(map_)}
    if met is not None:
        res["metrology"] = {k: getattr(met, k) for k in ("twist_deg", "twist_sigma_deg", "strain_percent",
                                                         "strain_sigma_percent", "atomic_resolved")}
    if json_:
        emit_json(json_safe(res))
    info("warning: no shipped model for this map: " + why)
    raise typer.Exit(3)


def predict_cmd(
    run_or_map: Path = typer.Argument(..., metavar="[RUN] MAP",
                                      help="run directory of moireu train, then the map; the map alone: the shipped "
                                           "model trained for the map's measured twist angle (moireu models)"),
    map_: Optional[Path] = typer.Argument(None, metavar="", help="atoms table, real-space .npy/.npz, image file, "
                                                                 ".sxm/.3ds/.gwy/.sm4, or a ready FT-LDOS .npy"),
    pixel_size: Optional[str] = PixelSizeOpt,
    channel: Optional[str] = ChannelOpt,
    direction: str = DirectionOpt,
    bias: Optional[float] = BiasOpt,
    kind: str = typer.Option("auto", "--kind", help="auto, ftldos (ready image) or map (real space)"),
    json_: bool = JsonOpt,
) -> None:
    """Predict U (eV) with its calibrated interval for a user's STM map.

    Exit status 3 (with a warning on stderr; the answer is still printed) when the map is out of the
    training distribution: its out-of-distribution score exceeds the run's threshold (99 % of the
    calibration images pass), or its measured twist angle is outside the trained range.
    """
    from moireu.ml import load_run, predict_image

    run, map_ = (None, run_or_map) if map_ is None else (run_or_map, map_)
    ps = parse_pixel_size(pixel_size)  # refuse a bad value before loading anything
    card = None
    try:
        if run is None:
            lr, img, align, card = _shipped_for_map(map_, kind, None if ps is None else pixel_size, channel, direction,
                                                    bias)
            if lr is None:
                _no_model_for_twist(map_, align, card, json_, _metrology(map_, ps, channel, direction, bias))
        else:
            lr = load_run(run)
            img, align = load_map_image(map_, lr.meta, kind, None if ps is None else pixel_size, channel, direction,
                                        bias)
    except InputError as exc:
        # only a map refused *for being constant* is answered as out of distribution; any other
        # refusal (pixels too coarse, field of view too small, NaN …) stays an input error
        if "constant" not in str(exc) or not _is_constant_map(map_, ps, channel, direction, bias):
            raise
        # an empty (constant, e.g. all-zero) map has no FT image: no U, out of distribution
        res = {"U": None, "U_low": None, "U_high": None, "in_distribution": False, "constant_input": True,
               "ood_reasons": ["the map is constant (all pixels equal): it carries no LDOS modulation"],
               "model": None if run is None else lr.meta["model"], "map": str(map_)}
        if json_:
            emit_json(res)
        info("warning: the map is out of the training distribution: " + res["ood_reasons"][0])
        raise typer.Exit(3) from None
    res = predict_image(lr, img)
    reasons = []
    if res["constant_input"]:
        reasons.append("the map's FT image is constant (an empty or all-zero map?)")
    elif not res["in_distribution"]:
        reasons.append(f"out-of-distribution score {res['ood_score']:.3g} > threshold {res['ood_threshold']:.3g}")
    if align is not None:
        res["align"] = align
        res["twist_deg"] = align.get("twist_deg")
        if align.get("in_range") is False:
            reasons.append(_alignment_reason(align))
    if reasons and res.get("U_range"):  # out of distribution for any reason: the honest interval is the trained range
        res["U_low"], res["U_high"] = (float(v) for v in res["U_range"])
    res["in_distribution"] = not reasons
    res["ood_reasons"] = reasons
    if card is not None:
        res["shipped_model"] = {"name": card["name"], "twist_deg": card["twist_deg"]}
    if align is not None and align.get("channel_kind") == "height":
        res["warnings"] = [f"the map is a height topograph (values in {align.get('value_unit')}), not an LDOS / "
                           "dI/dV map: the models were trained on LDOS maps at the biases of their card, so this U "
                           "is an extrapolation"]
        info("warning: " + res["warnings"][0])
    if json_:
        emit_json(json_safe(res | {"map": str(map_)}))
    else:
        typer.echo(f"U = {res['U']:.3f} eV   {res['coverage']:.0%} interval [{res['U_low']:.3f}, {res['U_high']:.3f}] eV"
                   f"   ({res['model']}, recipe {res['recipe']}, {len(res['members'])} member(s))")
    if reasons:
        info("warning: the map is out of the training distribution, do not trust this U: " + "; ".join(reasons))
        raise typer.Exit(3)


def robustness_cmd(
    runs: List[Path] = typer.Argument(..., help="run directories of moireu train"),
    data: Path = typer.Option(..., "--data", "-d", help="dataset store with per-atom LDOS (its held-out points)"),
    corruption: Optional[List[str]] = typer.Option(None, "--corruption", "-c",
                                                   help="named corruption (repeatable; default: all)"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="acquisitions per held-out point and bias level"),
    seed: int = typer.Option(0, "--seed", help="seed of the acquisitions"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write robustness.json + robustness.md here"),
    json_: bool = JsonOpt,
) -> None:
    """MAE, coverage and in-distribution fraction of each run on fresh acquisitions of the held-out
    points under each named measurement corruption (rendered from the store's per-atom LDOS)."""
    from moireu.analysis.robustness import format_rows, robustness_table
    from moireu.provenance import write_json_atomic, write_text_atomic

    rows = robustness_table(list(runs), data, corruption or None, repeats=repeats, seed=seed)
    table = format_rows(rows)
    info(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "robustness.json", json_safe({"store": str(data.resolve()), "seed": seed,
                                                               "repeats": repeats, "rows": rows}))
        write_text_atomic(out / "robustness.md", table + "\n")
    if json_:
        emit_json(json_safe({"rows": rows}))


def models_cmd(json_: bool = JsonOpt) -> None:
    """List the registered model variants (parameters, recipe, arguments) and the shipped trained models."""
    from moireu.ml.models import list_models
    from moireu.ml.shipped import shipped_models

    rows, cards = list_models(), shipped_models()
    if json_:
        emit_json({"variants": rows, "shipped": cards})
        return
    w = max(len(r["name"]) for r in rows)
    typer.echo(f"{'name':<{w}}  {'parameters':>11}  recipe  arguments / training settings")
    for r in rows:
        args = ", ".join(f"{k}={v}" for k, v in (r["arguments"] | r["train"]).items()) or "-"
        typer.echo(f"{r['name']:<{w}}  {r['parameters']:>11,}  {r['recipe']:<6}  {args}")
        typer.echo(f"{'':<{w}}  {'':>11}          {r['summary']}")
    typer.echo("(parameters at the variant's arguments; fc counted for 64×64 inputs)")
    typer.echo("")
    if not cards:
        typer.echo("shipped trained models: none")
        return
    typer.echo("shipped trained models (moireu predict MAP picks the one trained for the map's twist angle):")
    for c in cards:
        b = c.get("accuracy", {}).get("blind") or []
        acc = "; ".join(f"blind held-out MAE {r['mae']:.3f} eV, cov90 {r['coverage90']:.2f} (n = {r['n']})" for r in b)
        typer.echo(f"  {c['name']}: {c['model']} ×{c['ensemble']}, TBG i = {c['lattice_index']} "
                   f"(θ = {c['twist_deg']:.2f}°, accepts {c['twist_accepted_deg'][0]:.2f}–"
                   f"{c['twist_accepted_deg'][1]:.2f}°), U {c['U_range_eV'][0]:g}–{c['U_range_eV'][1]:g} eV"
                   + (f"; {acc}" if acc else ""))


def ship_model_cmd(
    run: Path = typer.Argument(..., help="run directory of moireu train"),
    name: str = typer.Argument(..., help="name of the shipped model, e.g. demo_cnn"),
    data: Path = typer.Option(..., "--data", "-d", help="the store the run was trained on (its states, ranges)"),
    blind: Optional[List[Path]] = typer.Option(None, "--blind", help="moireu evaluate --json output on a store of "
                                               "another dataset seed (repeatable): the card's accuracy"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a shipped model of that name"),
) -> None:
    """Ship a trained run as package data: its weights-only checkpoint and a model card (maintainers)."""
    from moireu.cli.model_card import model_card
    from moireu.ml.shipped import ship_model

    card, checkpoint = model_card(run, data, list(blind or []))
    path = ship_model(checkpoint, name, card, overwrite=overwrite)
    info(f"shipped {name}: {path} (+ {path.with_name(name + '.pt').name})")


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("ship-model")(ship_model_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
    app.command("robustness")(robustness_cmd)
