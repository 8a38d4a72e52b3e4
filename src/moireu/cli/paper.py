"""``moireu paper``: reproduce Tanksale & Stauber (arXiv:2602.18890) beside our method, resumably.

dataset (HF on the preset's mesh, our images, per-atom LDOS) → the same samples imaged the reference's
way (``dataset paper-images``) → ``cnn_paper`` and ``resnet18_paper`` with the paper recipe for every
seed → our ``cnn`` with our recipe for every seed → test and held-out evaluation of each → analysis in
paper mode (reference images) and ours → ``RUN/reproduction.json`` and the Markdown document.

Every stage is a ``moireu`` subcommand in a child process and leaves a marker; a rerun skips what is
done (the dataset build resumes point by point). ``RUN/stages.json`` records each stage's command.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, SetOpt, info, resolve
from moireu.cli.pipeline import Pipeline
from moireu.errors import InputError


def paper_cmd(
    preset: str = typer.Option("paper", "--preset", "-p", help="preset of the run (default: paper, i = 9)"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/paper"), "--out", "-o", help="run directory"),
    seeds: str = typer.Option("0,1,2", "--seeds", help="training seeds (comma-separated) for the ± columns"),
    ours: str = typer.Option("cnn", "--ours", help="our model variants (comma-separated registry names)"),
    doc: Path = typer.Option(Path("docs/paper-reproduction.md"), "--doc", help="the Markdown document to write"),
    workers: int = typer.Option(1, "--workers", "-w", help="processes for the paper images"),
) -> None:
    """Run the paper reproduction end to end (resumable) and write the document."""
    from moireu.analysis.reproduction import write_doc
    from moireu.ml.models import available_models, model_spec
    from moireu.provenance import write_json_atomic

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not seed_list or min(seed_list) < 0:
        raise InputError(f"--seeds needs one or more integers ≥ 0, got {seeds!r}")
    ours_list = [m.strip() for m in ours.split(",") if m.strip()]
    for m in ours_list:
        if model_spec(m).recipe != "ours":
            raise InputError(f"--ours {m!r} is a {model_spec(m).recipe}-recipe variant; choose among "
                             f"{[n for n in available_models() if model_spec(n).recipe == 'ours']}")
    cfg = resolve(preset, config, list(set_ or []))
    out = Path(out)
    p = Pipeline("paper", cfg, out,
                 on_stage=lambda log: write_json_atomic(out / "stages.json", {"stages": log, "config": cfg.to_dict()}))
    conf, stage = p.conf, p.stage

    data, pdata = out / "dataset.zarr", out / "paper.zarr"
    stage("dataset", out / ".never", ["dataset", "build", *conf, "--out", str(data), "--no-progress"])
    stage("paper images", pdata, ["dataset", "paper-images", str(data), "--out", str(pdata),
                                  "--workers", str(workers)])
    runs: dict[str, list[Path]] = {"paper": [], "ours": []}
    jobs = [("repro", m, pdata, ["--recipe", "paper"]) for m in ("cnn_paper", "resnet18_paper")]
    jobs += [("ours", m, data, ["--recipe", "ours"]) for m in ours_list]
    for sub, m, store, extra in jobs:
        for s in seed_list:
            run = out / sub / f"{m}_s{s}"
            stage(f"train {sub} {m} seed {s}", run / "checkpoint.pt",
                  ["train", str(store), "--model", m, *extra, *conf, "--set", f"seed={s}", "--out", str(run),
                   "--quiet"])
            for split in ("test", "heldout"):
                stage(f"evaluate {sub} {m} seed {s} {split}", run / f"eval_{split}.json",
                      ["evaluate", str(run), str(store), "--split", split])
            runs["paper" if sub == "repro" else "ours"].append(run)
    for k, store, mode in (("paper", pdata, "paper"), ("ours", data, "ours")):
        adir = out / f"analysis_{k}"
        # interpretability on the first seed of every model
        first = [r for r in runs[k] if r.name.endswith(f"_s{seed_list[0]}")]
        stage(f"analysis {k}", adir / "analysis.json",
              ["analyze", "--data", str(store), "--out", str(adir), *conf, "--set",
               f'analysis.mode="{mode}"', "--runs", *[str(r) for r in first]],
              inputs=tuple(r / "checkpoint.pt" for r in first))
    write_doc(out, doc)
    info(f"[paper] finished in {p.minutes:.1f} min; wrote {doc} and {out / 'reproduction.json'}")


def register(app: typer.Typer) -> None:
    app.command("paper")(paper_cmd)
