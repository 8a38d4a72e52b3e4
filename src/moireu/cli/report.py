"""``moireu analyze`` (figures + analysis.json) and ``moireu report`` (self-contained HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, JsonOpt, SetOpt, emit_json, info, preset_name


def _analysis_config(store_cfg: dict, preset: Optional[str], config: Optional[Path], overrides: List[str]):
    """Store config (or preset when given / when the store has none) → --config file → --set overrides."""
    from moireu.config import apply_override, build_config, preset_dict, read_toml

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    preset = preset_name(preset)
    raw: dict = {}
    if preset:
        raw = preset_dict(preset) | {"preset": preset}
    elif store_cfg:
        raw = dict(store_cfg)
    else:
        raw = preset_dict("demo") | {"preset": "demo"}
    if config:
        raw = merge(raw, read_toml(config))
    for o in overrides:
        raw = apply_override(raw, o)
    return build_config(raw)


def analyze_cmd(
    data: Path = typer.Option(..., "--data", "-d", help="dataset store (dataset.zarr)"),
    runs: Optional[List[Path]] = typer.Option(None, "--runs", "-r",
                                              help="trained-model folders (train_<model>/ or a run dir holding "
                                                   "them); repeat the option or list them"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder for figures and analysis.json"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="preset to take settings from (default: the store's own config)"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    extra_runs: Optional[List[Path]] = typer.Argument(None, help="more model folders after --runs"),
    json_out: bool = JsonOpt,
) -> None:
    """Similarity, PCA, baselines, Grad-CAM/guided backprop and U_c estimates → figures + analysis.json."""
    from moireu.analysis.data import load_store
    from moireu.analysis.run import analyze, find_model_runs, load_models

    ds = load_store(data)
    cfg = _analysis_config(ds.config, preset, config, list(set_ or []))
    run_paths = list(runs or []) + list(extra_runs or [])
    models = load_models(find_model_runs(run_paths)) if run_paths else []
    info(f"analyze: {ds.n} samples {ds.images.shape[1]}×{ds.images.shape[2]}, {len(models)} model(s) → {out}")
    from moireu.analysis.run import default_split, model_split

    # the split a trained model recorded; else the ML stage's split with this config's seed/fractions
    idx = model_split(models, ds) or default_split(ds, cfg.seed, cfg.train.split_fractions)
    res = analyze(ds, out, models, cfg.analysis, seed=cfg.seed, split_idx=idx)
    c = res["crossover"]["combined"]
    info(f"analyze: wrote {Path(out) / 'analysis.json'} and {len(res['figures'])} figures")
    if c.get("U_c") is not None:
        for f in c.get("features") or [c]:
            info(f"analyze: U_c = {f['U_c']:.2f} ± {f['U_c_err']:.2f} eV (U_c/t = {f['U_c_over_t']:.2f}) "
                 f"from {', '.join(f['used'])}")
    if json_out:
        emit_json({"out": str(out), "figures": res["figures"], "crossover": res["crossover"]["combined"],
                   "baselines": res.get("baselines", [])})


def report_cmd(
    run_dir: Path = typer.Argument(..., help="run directory (layout of docs/ARCHITECTURE.md)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default RUN_DIR/report.html)"),
    paper: Optional[Path] = typer.Option(Path("results/paper/reproduction.json"), "--paper",
                                         help="the paper / reproduction / ours table shown when the run has none "
                                         "(default: the kept results of make paper)"),
    json_out: bool = JsonOpt,
) -> None:
    """One self-contained HTML report (figures embedded) of a run directory; missing parts say 'not run'."""
    from moireu.analysis.report import write_report

    path = write_report(run_dir, out, paper=paper if paper is not None and paper.is_file() else None)
    info(f"report: {path.resolve()}")
    if json_out:
        emit_json({"report": str(path.resolve())})


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)
    app.command("report")(report_cmd)
