"""``moireu train``, ``moireu evaluate``, ``moireu predict``: learning U from FT-LDOS images."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, JsonOpt, PresetOpt, SetOpt, emit_json, info, prepare_run_dir, resolve
from moireu.errors import InputError


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
         f"(n_train {summary['n_train']}, n_val {summary['n_val']}, n_test {summary['n_test']}); "
         f"conformal q {cal['q']:.3g}; wrote {out / 'checkpoint.pt'}")
    if json_:
        emit_json(summary | {"run": str(out)})


def evaluate_cmd(
    run: Path = typer.Argument(..., help="run directory of moireu train"),
    data: Path = typer.Argument(..., help="dataset store"),
    split: str = typer.Option("test", "--split", help="test (grid images never trained on) or heldout"),
    augment: str = typer.Option("clean", "--augment", "-a",
                                help="corrupt the images first: clean, mild, symb, noisy, or all (robustness table)"),
    seed: int = typer.Option(0, "--seed", help="seed of the corruption"),
    json_: bool = JsonOpt,
) -> None:
    """MAE, RMSE, R², 90 % interval coverage and per-U errors; parity/residual PNGs into RUN."""
    from moireu.ml import evaluate_run, format_table, profile_names

    if augment == "all":
        rows = []
        for prof in profile_names():
            r = evaluate_run(run, data, split, augment=prof, seed=seed)
            rows.append({"model": f"{r['model']}/{r['recipe']}", "profile": prof,
                         **{k: r[k] for k in ("mae", "rmse", "r2", "coverage90", "n")}})
        info(format_table(rows))
        if json_:
            emit_json({"split": split, "robustness": rows})
        return
    if augment not in profile_names():
        raise InputError(f"--augment must be one of {', '.join(profile_names())} or all, got {augment!r}")
    res = evaluate_run(run, data, split, augment=augment, seed=seed)
    info(f"{res['model']} ({res['recipe']}, K={res['ensemble']}) on {split} [{res['augment']}]: n={res['n']}  "
         f"MAE {res['mae']:.4f} eV  RMSE {res['rmse']:.4f} eV  R² {res['r2']:.4f}  "
         f"coverage({res['nominal_coverage']:.0%}) {res['coverage90']:.3f}")
    if not res["same_store"]:
        info("note: this store differs from the training store; the test split was re-derived from its grid samples")
    if json_:
        emit_json(res)
    else:
        for row in res["per_U"][:40]:
            info(f"  U={row['U']:7.3f}  n={row['n']:4d}  MAE {row['mae']:.4f}  mean Û {row['mean_pred']:.3f}")


def load_map_image(path: Path, meta: dict, kind: str = "auto", pixel_size: Optional[str] = None,
                   channel: Optional[str] = None, direction: str = "forward"):
    """A user's map → FT-LDOS image on the run's training window (2-D float32 numpy array).

    ``kind="ftldos"`` (or ``auto`` for a ``.npy`` of the trained image shape with no pixel size
    given and no sidecar JSON) reads a ready FT-LDOS image; otherwise the map goes through
    :func:`moireu.stm.user_map_to_image` with the training store's ``image_transform``.
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
        return read_ready_image(path, shape)
    from moireu.stm import user_map_to_image

    transform = meta.get("image_transform") or {}
    if not transform:
        raise InputError("the run's checkpoint holds no image_transform (the training store had none), so a raw "
                         "map cannot be put on the training window; pass a ready FT-LDOS .npy instead")
    ps = None
    if pixel_size is not None:
        parts = [float(v) for v in str(pixel_size).replace(",", " ").split()]
        ps = parts[0] if len(parts) == 1 else tuple(parts)
    img = user_map_to_image(path, transform, pixel_size=ps, channel=channel, direction=direction)
    arr = np.asarray(getattr(img, "values", img), dtype=np.float32)
    if arr.shape != shape:
        raise InputError(f"the map's FT-LDOS image is {arr.shape[0]}×{arr.shape[1]} but the model was trained on "
                         f"{shape[0]}×{shape[1]} images")
    return arr


def predict_cmd(
    run: Path = typer.Argument(..., help="run directory of moireu train"),
    map_: Path = typer.Argument(..., metavar="MAP", help="atoms table, real-space .npy/.npz, image file, "
                                                         ".sxm, or a ready FT-LDOS .npy"),
    pixel_size: Optional[str] = typer.Option(None, "--pixel-size", help="Å per pixel: 'p' or 'px,py'"),
    channel: Optional[str] = typer.Option(None, "--channel", help=".sxm channel name"),
    direction: str = typer.Option("forward", "--direction", help=".sxm scan direction: forward or backward"),
    kind: str = typer.Option("auto", "--kind", help="auto, ftldos (ready image) or map (real space)"),
    json_: bool = JsonOpt,
) -> None:
    """Predict U (eV) with its calibrated interval for a user's STM map."""
    from moireu.ml import load_run, predict_image

    lr = load_run(run)
    img = load_map_image(map_, lr.meta, kind, pixel_size, channel, direction)
    res = predict_image(lr, img)
    if json_:
        emit_json(res | {"map": str(map_)})
    else:
        typer.echo(f"U = {res['U']:.3f} eV   {res['coverage']:.0%} interval [{res['U_low']:.3f}, {res['U_high']:.3f}] eV"
                   f"   ({res['model']}, recipe {res['recipe']}, {len(res['members'])} member(s))")


def models_cmd(json_: bool = JsonOpt) -> None:
    """List the registered model variants with parameter count, recipe and arguments."""
    from moireu.ml.models import list_models

    rows = list_models()
    if json_:
        emit_json(rows)
        return
    w = max(len(r["name"]) for r in rows)
    typer.echo(f"{'name':<{w}}  {'parameters':>11}  recipe  arguments / training settings")
    for r in rows:
        args = ", ".join(f"{k}={v}" for k, v in (r["arguments"] | r["train"]).items()) or "-"
        typer.echo(f"{r['name']:<{w}}  {r['parameters']:>11,}  {r['recipe']:<6}  {args}")
        typer.echo(f"{'':<{w}}  {'':>11}          {r['summary']}")
    typer.echo("(parameters at the variant's arguments; fc counted for 64×64 inputs)")


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
