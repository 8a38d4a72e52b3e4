"""The paper / reproduction / ours table and ``docs/paper-reproduction.md``, from measured JSON only.

:func:`collect` reads a ``moireu paper`` run directory::

    RUN/stages.json                     every stage: name, command, seconds, skipped (written by moireu paper)
    RUN/dataset.zarr                    our store (HF states, per-atom LDOS, our images)
    RUN/paper.zarr                      the same samples imaged the reference's way
    RUN/repro/<model>_s<seed>/          cnn_paper / resnet18_paper, recipe paper, on paper.zarr
    RUN/ours/<model>_s<seed>/           our recipe on dataset.zarr (blind/eval_heldout.json: on the blind store)
    RUN/analysis_paper/analysis.json    analysis.mode = paper on paper.zarr
    RUN/analysis_ours/analysis.json     our analysis on dataset.zarr

and aggregates each group of seeds as mean ± sample standard deviation (the paper's ± is its spread
over runs). :func:`write_doc` writes the Markdown document; it states what has run and never
prints a number it did not read from a file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from moireu.provenance import write_json_atomic, write_text_atomic

__all__ = ["PAPER_ROWS", "collect", "write_doc", "aggregate"]

#: Tanksale & Stauber (arXiv:2602.18890), as published: (model, split) → (MAE, RMSE, R²) strings.
PAPER_ROWS = [
    ("CNN", {"test": ("0.14 ± 0.03", "0.21 ± 0.02", "0.984 ± 0.003"),
             "heldout": ("0.50 ± 0.08", "0.54 ± 0.07", "0.87 ± 0.04")}),
    ("ResNet-18", {"test": ("0.12 ± 0.02", "0.21 ± 0.04", "0.985 ± 0.006"),
                   "heldout": ("0.49 ± 0.02", "0.57 ± 0.02", "0.85 ± 0.01")}),
]
_LABEL = {"cnn_paper": "CNN", "resnet18_paper": "ResNet-18"}


def _read(path: Path) -> Any | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def aggregate(values: list[float], digits: int = 2) -> str:
    """``mean ± std`` (sample std over runs; one run: the value alone); ``–`` for none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _group(run_dir: Path, sub: str) -> dict[str, dict[str, Any]]:
    """model → {"runs": [...], "test": {metric: [values]}, "heldout": {...}} of RUN/sub/<model>_s<seed>."""
    out: dict[str, dict[str, Any]] = {}
    for d in sorted((run_dir / sub).glob("*_s*")):
        model = d.name.rsplit("_s", 1)[0]
        g = out.setdefault(model, {"runs": [], "test": {}, "heldout": {}, "blind": {}})
        ok = False
        for split, path in (("test", d / "eval_test.json"), ("heldout", d / "eval_heldout.json"),
                            ("blind", d / "blind" / "eval_heldout.json")):
            e = _read(path)
            if isinstance(e, dict):
                ok = ok or split != "blind"
                for m in ("mae", "rmse", "r2", "coverage90"):
                    g[split].setdefault(m, []).append(e.get(m))
                g[split].setdefault("n", []).append(e.get("n"))
        if ok:
            g["runs"].append(d.name)
    return out


def collect(run_dir: str | Path) -> dict[str, Any]:
    """Every measured number of a ``moireu paper`` run (see the module docstring) → one dict."""
    run_dir = Path(run_dir)
    rows: list[dict[str, Any]] = []
    for label, splits in PAPER_ROWS:
        rows.append({"source": "paper", "model": label, "runs": "published",
                     **{f"{s}_{m}": splits[s][i] for s in ("test", "heldout") for i, m in enumerate(("mae", "rmse", "r2"))}})
    for source, sub in (("reproduction", "repro"), ("ours", "ours")):
        groups = _group(run_dir, sub)
        if sub == "repro":  # a reference network that has not run yet is shown as such, never left out
            for model in _LABEL:
                groups.setdefault(model, {"runs": [], "test": {}, "heldout": {}, "blind": {}})
        for model, g in groups.items():
            row = {"source": source, "model": _LABEL.get(model, model), "registry_name": model,
                   "runs": len(g["runs"])}
            for s in ("test", "heldout", "blind"):
                for m in ("mae", "rmse", "r2", "coverage90"):
                    row[f"{s}_{m}"] = aggregate(g[s].get(m, []), 2 if m == "coverage90" else 3)
                ns = [n for n in g[s].get("n", []) if n is not None]
                row[f"{s}_n"] = int(ns[0]) if ns else None
            rows.append(row)
    analyses = {k: _read(run_dir / f"analysis_{k}" / "analysis.json") for k in ("paper", "ours")}
    baselines = []
    for k, a in analyses.items():
        for b in (a or {}).get("baselines", []) or []:
            baselines.append({"pipeline": k, "name": b["name"],
                              **{f"{s}_{m}": b["metrics"].get(s, {}).get(m) for s in ("test", "heldout")
                                 for m in ("mae", "rmse", "r2")}})
    stages = _read(run_dir / "stages.json") or {}
    store = (analyses.get("ours") or analyses.get("paper") or {}).get("store", {})
    return {"rows": rows, "baselines": baselines, "stages": stages.get("stages", []), "store": store,
            "config": stages.get("config", {}),
            "pca": {k: (a or {}).get("pca", {}).get("first3_percent") for k, a in analyses.items()},
            "pca_fitted_on": {k: (a or {}).get("pca", {}).get("fitted_on") for k, a in analyses.items()},
            "similarity": {k: (a or {}).get("similarity") for k, a in analyses.items()},
            "crossover": {k: (a or {}).get("crossover", {}).get("combined") for k, a in analyses.items()},
            "figures": {k: (a or {}).get("figures", {}) for k, a in analyses.items()},
            "note": "paper: Tanksale & Stauber, arXiv:2602.18890, as published (their data, θ ≈ 3.5°); "
                    "reproduction: their images, split, networks and recipe on our HF states; "
                    "ours: our images and recipe on the same HF states. ± = sample std over seeds."}


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join("–" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v: Any, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)


def _first_seed(run_dir: Path, sub: str) -> int | None:
    seeds = sorted(int(d.name.rsplit("_s", 1)[1]) for d in (run_dir / sub).glob("*_s*")
                   if d.name.rsplit("_s", 1)[1].isdigit())
    return seeds[0] if seeds else None


def _rel(path: Path, doc: Path) -> Path:
    """``path`` relative to the document's folder when it lies below it."""
    try:
        return Path(path).resolve().relative_to(doc.parent.resolve())
    except ValueError:
        return Path(path)


def write_doc(run_dir: str | Path, doc: str | Path, img_dir: str | Path | None = None,
              notes: list[str] | None = None) -> dict[str, Any]:
    """Write ``RUN/reproduction.json`` and the Markdown document ``doc`` (figures copied to ``img_dir``).

    ``notes``: extra lines for the "What has run" section (e.g. how a store was prepared).
    """
    run_dir, doc = Path(run_dir), Path(doc)
    res = collect(run_dir)
    write_json_atomic(run_dir / "reproduction.json", res)
    img_dir = Path(img_dir) if img_dir is not None else doc.parent / "img" / "paper-reproduction"
    cmds = {s.get("stage"): s.get("command") for s in res["stages"]}
    cfg = res["config"]
    lat = cfg.get("lattice", {})
    ds = cfg.get("dataset", {})
    L = ["# Reproducing Tanksale & Stauber (arXiv:2602.18890) beside our method", "",
         "Written by `moireu paper` (`make paper`) from the measured JSON of "
         f"`{run_dir}`; every number below was read from a file of that run.", "",
         "## What has run", ""]
    ran = [s for s in res["stages"] if not s.get("skipped")]
    reused = [s for s in res["stages"] if s.get("reused")]
    L.append(f"- Setting: lattice index i = {lat.get('index', '?')}, {cfg.get('stm', {}).get('n_pixels', '?')}² "
             f"images, U grid {ds.get('U_values', '?')} eV (reference pipeline: "
             f"{ds.get('paper_U_values') or 'the same'}), {ds.get('heldout', '?')} held-out fractional U, "
             f"biases {ds.get('biases', '?')} eV, {ds.get('n_offsets', '?')} acquisitions per (U, bias) (reference "
             f"pipeline: {ds.get('paper_n_offsets') or 'the same'}, the first of ours), preset "
             f"`{cfg.get('preset', '?')}`.")
    L.append(f"- Stages recorded: {len(res['stages'])}: {len(ran)} run in the last invocation, {len(reused)} "
             "restored from the kept results (made earlier, see the table below), the rest done already or not "
             "needed.")
    made = [s for s in res["stages"] if s.get("made")]
    if made:
        L += ["", _md_table(["stage", "made (UTC)", "seconds then"],
                            [[s["stage"], s["made"], _fmt(s.get("made_seconds"), 0)] for s in made]), ""]
    st = res["store"]
    if st:
        L.append(f"- Store: {st.get('n_samples')} samples ({st.get('n_grid')} grid, {st.get('n_heldout')} held-out), "
                 f"θ = {_fmt(st.get('theta_deg'), 3)}°.")
    L += [f"- {n}" for n in notes or []]
    if lat.get("index") != 9:
        L.append(f"- **This is not the paper's setting** (i = {lat.get('index', '?')}, not 9): the numbers test the "
                 "pipeline, not the reproduction. The i = 9 run is `make paper` with the default arguments.")
    L += ["", "## Paper / reproduction / ours", "",
          "MAE and RMSE in eV. *paper*: as published (their data). *reproduction*: their image transform, "
          "random 60/20/20 split (seed 42), networks (`cnn_paper`, `resnet18_paper`, no ImageNet weights "
          "here) and recipe on our HF states. *ours*: our images and recipe on the same HF states; "
          "test = the ML stage's split. ± = sample standard deviation over seeds.", ""]
    heads = ["source", "model", "runs", "test MAE", "test RMSE", "test R²", "held-out MAE", "held-out RMSE",
             "held-out R²", "held-out cov90", "blind MAE", "blind cov90"]
    L.append(_md_table(heads, [[r["source"], r["model"], r["runs"], r["test_mae"], r["test_rmse"], r["test_r2"],
                                r["heldout_mae"], r["heldout_rmse"], r["heldout_r2"], r.get("heldout_coverage90"),
                                r.get("blind_mae"), r.get("blind_coverage90")] for r in res["rows"]]))
    blind = [r for r in res["rows"] if r.get("blind_n")]
    if blind:
        L += ["", f"*blind*: our networks on a store of another dataset seed ({blind[0]['blind_n']} images: new "
              "crops and new held-out U, solved by the ground-state rule), built by the run's `blind store` stage. "
              "cov90: fraction of held-out images inside the calibrated 90 % interval."]
    if res["baselines"]:
        L += ["", "### Baselines", "",
              _md_table(["pipeline", "baseline", "test MAE", "test RMSE", "test R²", "held-out MAE", "held-out R²"],
                        [[b["pipeline"], b["name"], _fmt(b["test_mae"], 2), _fmt(b["test_rmse"], 2),
                          _fmt(b["test_r2"]), _fmt(b["heldout_mae"], 2), _fmt(b["heldout_r2"])]
                         for b in res["baselines"]])]
    L += ["", "### Similarity, PCA, crossover", ""]
    for k in ("paper", "ours"):
        sim, pca, cx = res["similarity"].get(k), res["pca"].get(k), res["crossover"].get(k)
        if sim is None and pca is None:
            L.append(f"- {k} pipeline: analysis not run.")
            continue
        smin = (sim or {}).get("min_similarity")
        L.append(f"- {k} pipeline: min similarity {_fmt(None if smin is None else 100 * smin, 4)} % "
                 f"(paper: > 99.98 %); PCA ({res['pca_fitted_on'].get(k)}) "
                 f"{' / '.join(f'{x:.1f}' for x in pca) if pca else '–'} % (paper: 56.8 / 26.8 / 6.1 %); "
                 f"U_c = {_fmt((cx or {}).get('U_c'), 2)} eV, U_c/t = {_fmt((cx or {}).get('U_c_over_t'), 2)} "
                 f"(paper: U_c/t ≈ 1).")
    L += ["", "## Where and why the pipelines differ", "",
          "- Image: the reference sums LDOS·e^(−ik·r) without subtracting the mean LDOS, so |F| is dominated by "
          "k = 0 and the Bragg peaks of the lattice form factor; it then draws |F| with turbo and reads the PNG "
          "back as luma, which is not monotonic in |F| (the k = 0 maximum comes out dark) and quantises to "
          "8 bits after per-image colour limits. Ours subtracts the mean, keeps float32 |F| and z-scores.",
          "- Split: the reference split is random over all grid images (crops of one HF state land in train and "
          "test); ours keeps acquisition groups apart.",
          "- ResNet-18: the reference starts from ImageNet weights; no run here had them "
          "(`train.pretrained_weights` loads them when a file is available). The reference pipeline's "
          "Grad-CAM / guided backprop look at `cnn_paper` only: neither reference checkpoint is small enough "
          "to keep (9.5 and 51 MB), so an analysis that must run again needs one network retrained, not two.",
          f"- Data: the same HF states, held-out U and crops; ours sees {ds.get('n_offsets', '?')} acquisitions "
          f"per (U, bias) on every ladder rung, the reference {ds.get('paper_n_offsets') or ds.get('n_offsets', '?')} "
          "(the first of ours) on its 0.5 eV grid.",
          "", "## Figures", ""]
    img_dir.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()

    def figure(src: Path, name: str, alt: str, caption: str) -> None:
        dst = img_dir / name
        shutil.copyfile(src, dst)
        written.add(dst.name)
        L.extend([f"![{alt}]({_rel(dst, doc)})", "", caption, ""])

    L += ["### Error per U (held-out, first seed of each network)", ""]
    for sub in ("repro", "ours"):
        first = f"_s{_first_seed(run_dir, sub)}"
        for d in sorted((run_dir / sub).glob("*_s*")):
            src = d / "residual_heldout.png"
            if d.name.endswith(first) and src.is_file():
                figure(src, f"{sub}_{d.name}_residual_heldout.png", f"{d.name} held-out residuals",
                       f"{d.name}: residual Û − U of every held-out image and its mean per U.")
    for k in ("paper", "ours"):
        for key, name in sorted(res["figures"].get(k, {}).items()):
            src = run_dir / f"analysis_{k}" / name
            if src.is_file():
                figure(src, f"{k}_{name}", f"{k} {key}",
                       f"{k} pipeline, `{key}` — made by: `{cmds.get(f'analysis {k}', '?')}`")
    for old_fig in img_dir.glob("*.png"):  # figures of an earlier run that this one did not make
        if old_fig.name not in written:
            old_fig.unlink()
    L += ["## Commands of this run", "", "```"] + [f"{s.get('command')}" for s in res["stages"]] + ["```", "",
          "## How to run it", "",
          "`make paper` (= `moireu paper --out runs/paper --blind-seed 1598071192 --blind-u 6 --repro-seeds 0`: "
          "the paper preset, i = 9, our networks with seeds 0, 1, 2, the reference networks with seed 0; more "
          "with `PAPER_REPRO=\"--repro-seeds 0,1,2\"`, 30–60 min per network and seed on 2 CPU cores) runs every "
          "stage above and rewrites this file. Every finished stage's small "
          "result is kept in `results/paper` (committed, with its key and checksums); a rerun, on a fresh clone "
          "too, restores those instead of running them, builds a store only when a stage left to run reads it, "
          "and resumes the rest (the dataset point by point, training epoch by epoch). `PAPER_ARGS` passes "
          "options, e.g. `make paper PAPER_ARGS=\"--workers 2 --seeds 0,1,2,3,4\"`.", ""]
    write_text_atomic(doc, "\n".join(L))
    return res
