"""``moireu paper``: reproduce Tanksale & Stauber (arXiv:2602.18890) beside our method, resumably.

dataset (HF on the preset's mesh, our images, per-atom LDOS) → the same samples imaged the reference's
way (``dataset paper-images``) → ``cnn_paper`` and ``resnet18_paper`` with the paper recipe for every
seed → our ``cnn`` with our recipe for every seed → test and held-out evaluation of each → analysis in
paper mode (reference images) and ours → ``RUN/reproduction.json`` and the Markdown document.

Every stage is a ``moireu`` subcommand in a child process and leaves a marker; a rerun skips what is
done (the dataset build resumes point by point). ``RUN/stages.json`` records each stage's command.

The small results (evaluation JSON, ``train.json``, curves, weights up to a few MB, analyses and their
figures) are kept in ``--keep`` (default ``results/paper``, committed to the repository) with their
key and checksums (:class:`moireu.cli.pipeline.Kept`); a later run, on another machine included,
restores them instead of training again, builds the stores only when a stage left to run reads them,
and writes the document from the kept folder alone.
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
    repro_seeds: Optional[str] = typer.Option(None, "--repro-seeds", help="seeds of the reference networks "
                                              "(default: --seeds); each costs 30–60 min per network on a CPU"),
    ours: str = typer.Option("cnn", "--ours", help="our model variants (comma-separated registry names)"),
    doc: Path = typer.Option(Path("docs/paper-reproduction.md"), "--doc", help="the Markdown document to write"),
    workers: int = typer.Option(1, "--workers", "-w", help="processes for the paper images"),
    keep: Path = typer.Option(Path("results/paper"), "--keep", help="folder of the kept results (committed): "
                              "evaluations, analyses, figures and small weights; a rerun restores what it holds"),
    no_keep: bool = typer.Option(False, "--no-keep", help="keep nothing; every stage reads and writes --out only"),
    recompute: bool = typer.Option(False, "--recompute", help="run every stage again, replacing the kept results"),
    reproduction: bool = typer.Option(True, "--reproduction/--no-reproduction", help="also the reference pipeline "
                                      "(its images, cnn_paper, resnet18_paper, its analysis); off: ours alone"),
blind_seed: Optional[int] = typer.Option(None, "--blind-seed", help="also evaluate our networks on a blind "
                                             "store: dataset seed N (new crops), --blind-u new held-out U solved by the "
                                             "ground-state rule (the HF of each costs about five solves)"),
    blind_u: int = typer.Option(6, "--blind-u", help="held-out U of the blind store"),
) -> None:
    """Run the paper reproduction end to end (resumable) and write the document."""
    from moireu.analysis.reproduction import write_doc
    from moireu.ml.models import available_models, model_spec

    seed_list = _seeds("--seeds", seeds)
    repro_list = seed_list if repro_seeds is None else _seeds("--repro-seeds", repro_seeds)
    ours_list = [m.strip() for m in ours.split(",") if m.strip()]
    for m in ours_list:
        if model_spec(m).recipe != "ours":
            raise InputError(f"--ours {m!r} is a {model_spec(m).recipe}-recipe variant; choose among "
                             f"{[n for n in available_models() if model_spec(n).recipe == 'ours']}")
    cfg = resolve(preset, config, list(set_ or []))
    from moireu.data.build import states_digest

    out = Path(out)
    digest = states_digest(cfg)
    ref = reference_view(cfg.to_dict())
    p = Pipeline("paper", cfg, out, kept=None if no_keep else keep, digest=digest,
                 on_stage=lambda log: _stages_json(out, None if no_keep else keep, log, cfg.to_dict(), digest))
    conf = p.conf

    data, pdata = out / "dataset.zarr", out / "paper.zarr"
    blind = out / "blind.zarr"
    u_lo, u_hi = min(cfg.dataset.U_values), max(cfg.dataset.U_values)
    if blind_seed is not None and (blind_seed < 0 or blind_u < 1):
        raise InputError(f"--blind-seed must be ≥ 0 and --blind-u ≥ 1, got {blind_seed} and {blind_u}")
    runs: dict[str, list[Path]] = {"paper": [], "ours": []}
    later: list[dict] = []  # every stage after the two store builds, in order
    # seed by seed, ours (minutes) before the reference networks (an hour or more per seed on a CPU): an
    # interrupted run has a row for every model as early as possible
    jobs = [("ours", m, data, ["--recipe", "ours"]) for m in ours_list]
    if reproduction:
        # ResNet-18 first: twice the CNN's images per second on a CPU (docs/performance.md)
        jobs += [("repro", m, pdata, ["--recipe", "paper"]) for m in ("resnet18_paper", "cnn_paper")]
    for s in sorted(set(seed_list) | set(repro_list), key=(seed_list + repro_list).index):
        for sub, m, store, extra in jobs:
            if s not in (repro_list if sub == "repro" else seed_list):
                continue
            run = out / sub / f"{m}_s{s}"
            rel = f"{sub}/{m}_s{s}"
            view = ref if sub == "repro" else None
            later.append(dict(name=f"train {sub} {m} seed {s}", marker=run / "checkpoint.pt", keep=(rel,), config=view,
                              args=["train", str(store), "--model", m, *extra, *conf, "--set", f"seed={s}",
                                    "--out", str(run), "--quiet"], ckpt=f"{rel}/checkpoint.pt", store=store))
            for split in ("test", "heldout"):
                later.append(dict(name=f"evaluate {sub} {m} seed {s} {split}", marker=run / f"eval_{split}.json",
                                  keep=tuple(f"{rel}/{f}_{split}.{x}" for f, x in
                                             (("eval", "json"), ("parity", "png"), ("residual", "png"))),
                                  uses=(f"{rel}/checkpoint.pt",), store=store, config=view,
                                  args=["evaluate", str(run), str(store), "--split", split]))
            if sub == "ours" and blind_seed is not None:
                later.append(dict(name=f"evaluate {sub} {m} seed {s} blind", marker=run / "blind" / "eval_heldout.json",
                                  keep=(f"{rel}/blind",), uses=(f"{rel}/checkpoint.pt",), store=blind,
                                  args=["evaluate", str(run), str(blind), "--split", "heldout", "--out",
                                        str(run / "blind")]))
            runs["paper" if sub == "repro" else "ours"].append(run)
    for k, store, mode in (("paper", pdata, "paper"), ("ours", data, "ours"))[0 if reproduction else 1:]:
        adir = out / f"analysis_{k}"
        # interpretability on the first seed of every model; of the reference pair on cnn_paper alone: neither
        # reference checkpoint is small enough to keep (9.5 and 51 MB), so the analysis, when it must run
        # again, needs one of them retrained (40 min on 2 CPU cores), not both
        s0 = (repro_list if k == "paper" else seed_list)[0]
        first = [r for r in runs[k] if r.name.endswith(f"_s{s0}") and not r.name.startswith("resnet18")]
        later.append(dict(name=f"analysis {k}", marker=adir / "analysis.json", keep=(f"analysis_{k}",), store=store,
                          config=ref if k == "paper" else None,
                          uses=tuple(f"{r.relative_to(out).as_posix()}/checkpoint.pt" for r in first),
                          args=["analyze", "--data", str(store), "--out", str(adir), *conf, "--set",
                                f'analysis.mode="{mode}"', "--runs", *[str(r) for r in first]],
                          inputs=tuple(r / "checkpoint.pt" for r in first)))
    if recompute:
        todo = later
    else:
        # a stage runs when its marker is missing and its kept result cannot stand in; what it reads then
        # (a checkpoint, a store) must exist, so the stages that make those run (or are restored) too
        todo = [s for s in later if not p.done(s["name"], s["marker"], s["args"], s.get("config"))
                and not p.reusable(s["name"], s["args"], config=s.get("config"))]
        uses = {u for s in todo for u in s.get("uses", ())}
        for s in later:
            s["needs"] = (s["ckpt"],) if s.get("ckpt") in uses else ()
        todo = [s for s in later if not p.done(s["name"], s["marker"], s["args"], s.get("config"))
                and not p.reusable(s["name"], s["args"], s["needs"], s.get("config"))]
    # the stores are built when the first stage that reads them is about to run (the dataset before
    # our networks, the reference images only before the reference networks), and not at all when every
    # stage that reads them is kept
    built: list[Path] = []

    def ensure(store: Path) -> None:
        if store in built:
            return
        if store == pdata:
            ensure(data)
            p.stage("paper images", pdata, ["dataset", "paper-images", str(data), "--out", str(pdata),
                                            "--workers", str(workers)])
        elif store == blind:  # another dataset seed: new crops and new held-out U, the grid reduced to its ends
            p.stage("blind store", out / ".never", ["dataset", "build", *conf, "--set", f"dataset.seed={blind_seed}",
                                                    "--set", f"dataset.U_values=[{u_lo},{u_hi}]",
                                                    "--set", f"dataset.paper_U_values=[{u_lo},{u_hi}]",
                                                    "--set", "dataset.refine=0",
                                                    "--set", f"dataset.heldout={blind_u}", "--out", str(blind),
                                                    "--no-progress"])
        else:
            p.stage("dataset", out / ".never", ["dataset", "build", *conf, "--out", str(data), "--no-progress"])
        built.append(store)

    pending = {id(s) for s in todo}
    for s in later:
        if id(s) in pending:
            ensure(s["store"])
        p.stage(s["name"], s["marker"], s["args"], force=recompute, inputs=s.get("inputs", ()), keep=s["keep"],
                needs=s.get("needs", ()), config=s.get("config"))
    if data not in built:
        p.skip("dataset", f"every stage that reads it is kept in {keep}")
    if pdata not in built:
        p.skip("paper images", "every stage that reads the reference images is kept" if reproduction
               else "--no-reproduction")
    src = out if no_keep else keep
    write_doc(src, doc)
    reused = sum(1 for e in p.log if e.get("reused"))
    info(f"[paper] finished in {p.minutes:.1f} min ({reused} stage(s) reused from {src}); wrote {doc} and "
         f"{src / 'reproduction.json'}")


def _seeds(option: str, text: str) -> list[int]:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not out or min(out) < 0:
        raise InputError(f"{option} needs one or more integers ≥ 0, got {text!r}")
    return out


def reference_view(conf: dict) -> dict:
    """The resolved config as the reference pipeline's stages see it: the key of their results.

    The reference images are the first ``dataset.paper_n_offsets`` acquisitions of each (U, bias) of the
    dataset store (:func:`moireu.data.paper.paper_store`), and the draw of acquisition ``v`` does not depend
    on ``dataset.n_offsets`` (:mod:`moireu.data.plan`); so in this view ``n_offsets`` is the number the
    reference sees, and giving our networks more acquisitions leaves the reference's results valid.
    """
    import copy

    view = copy.deepcopy(conf)
    ds = view.get("dataset", {})
    n_ref = ds.pop("paper_n_offsets", None)
    if n_ref is not None and "n_offsets" in ds:
        ds["n_offsets"] = min(int(ds["n_offsets"]), int(n_ref))
    return view


def _stages_json(out: Path, keep: Optional[Path], log: list, config: dict, digest: str) -> None:
    from moireu.provenance import write_json_atomic

    doc = {"stages": log, "config": config, "states_digest": digest}
    write_json_atomic(out / "stages.json", doc)
    if keep is not None:
        write_json_atomic(Path(keep) / "stages.json", doc)


def register(app: typer.Typer) -> None:
    app.command("paper")(paper_cmd)
