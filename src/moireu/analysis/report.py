"""``moireu report RUN_DIR``: one self-contained HTML page of a run (figures embedded as base64 PNG).

It reads the run-directory layout of docs/ARCHITECTURE.md; any missing part is shown as "not run".
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Iterable

from moireu.errors import InputError
from moireu.provenance import write_text_atomic

from .kspace import twist_angle_deg

#: The reference paper whose numbers are quoted beside ours.
REFERENCE_PAPER = ("Tanksale & Stauber, “Prediction of the atomistic Hubbard U interaction from moiré system "
                   "STM-images using image recognition”, arXiv:2602.18890")
#: Its numbers (MAE, RMSE in eV; R²; ± is their spread over runs). Another system: TBG at θ ≈ 3.5° (i = 9),
#: their HF data, images and split — not this run's data.
REFERENCE = [
    {"model": "CNN (Tanksale & Stauber)", "test": {"mae": "0.14 ± 0.03", "rmse": "0.21 ± 0.02", "r2": "0.984 ± 0.003"},
     "heldout": {"mae": "0.50 ± 0.08", "rmse": "0.54 ± 0.07", "r2": "0.87 ± 0.04"}},
    {"model": "ResNet-18 (Tanksale & Stauber)", "test": {"mae": "0.12 ± 0.02", "rmse": "0.21 ± 0.04",
                                                        "r2": "0.985 ± 0.006"},
     "heldout": {"mae": "0.49 ± 0.02", "rmse": "0.57 ± 0.02", "r2": "0.85 ± 0.01"}},
    {"model": "PCA(3)+ridge (Tanksale & Stauber)", "test": {"mae": "0.43", "rmse": "–", "r2": "0.91"},
     "heldout": {"mae": "0.38", "rmse": "–", "r2": "0.87"}},
]
REFERENCE_NOTE = (f"Grey rows: {REFERENCE_PAPER}, as published — another system (TBG at θ ≈ 3.5°, i = 9) and "
                  "another dataset, quoted for scale, not measured here. The same-data comparison is "
                  "docs/paper-reproduction.md (make paper).")

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --accent:#2b5fad; --bg:#fbfcfe; --warn:#9a5b00; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; line-height: 1.45; font-size: 15px; }
header { background: linear-gradient(90deg, #1f3b68, #2b5fad); color: white; padding: 22px 36px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; font-weight: 600; }
header p { margin: 0; opacity: .9; font-size: 14px; }
nav { padding: 8px 36px; background: #eef2f8; border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 36px 48px; }
section { margin-top: 28px; }
h2 { font-size: 19px; border-bottom: 2px solid var(--line); padding-bottom: 4px; color: #1f3b68; }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--fg); }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; background: white; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef2f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ref td { color: var(--muted); font-style: italic; background: #fafbfd; }
figure { margin: 10px 0 18px; background: white; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; }
.grid figure.wide { grid-column: 1 / -1; }
.grid figure { margin: 0; min-width: 0; }
details { margin: 10px 0; } summary { cursor: pointer; color: var(--accent); font-size: 14px; }
.params { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.notrun { color: var(--warn); background: #fff7e8; border: 1px solid #f1d8a8; border-radius: 6px;
          padding: 8px 12px; display: inline-block; font-size: 14px; }
.kv td:first-child { color: var(--muted); white-space: nowrap; }
code { background: #eef2f8; padding: 1px 4px; border-radius: 3px; font-size: 12.5px; }
.small { color: var(--muted); font-size: 13px; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _png_size(raw: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk ((0, 0) when not a PNG)."""
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 24:
        return 0, 0
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def _img(path: Path, caption: str = "", alt: str = "") -> str:
    raw = path.read_bytes()
    w, h = _png_size(raw)
    wide = w > 1.7 * h or w > 900  # multi-panel figures span the whole row
    data = base64.b64encode(raw).decode("ascii")
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    style = f' style="max-width:min(100%, {w}px)"' if w else ""  # never wider than the page
    return (f'<figure class="{"wide" if wide else ""}"><img src="data:image/png;base64,{data}"{style} '
            f'alt="{_esc(alt or caption or path.stem)}">{cap}</figure>')


def _notrun(what: str) -> str:
    return f'<p class="notrun">{_esc(what)}: not run</p>'


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}f}" if 0.01 <= abs(v) < 1 else f"{v:.{digits + 1}g}"
    if isinstance(v, (list, tuple)):
        if len(v) > 16:
            return f"[{', '.join(_fmt(x) for x in v[:8])}, … ({len(v)} values)]"
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _kv_table(d: dict[str, Any], skip_nested: bool = True) -> str:
    rows = []
    for k, v in d.items():
        if _is_records(v):
            continue  # rendered as its own table by _records_tables
        if isinstance(v, dict):
            if skip_nested:
                continue
            v = json.dumps(v)[:200]
        rows.append(f"<tr><td>{_esc(k)}</td><td>{_esc(_fmt(v))}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>' if rows else ""


def _is_records(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _records_tables(d: dict[str, Any]) -> str:
    """Every value of ``d`` that is a list of records (dicts), as a table with one row per record."""
    out = []
    for k, v in d.items():
        if _is_records(v):
            keys = list(dict.fromkeys(key for x in v for key in x))
            out.append(f"<h3>{_esc(k)}</h3>" + _table(keys, [[x.get(key, "") for key in keys] for x in v]))
    return "".join(out)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], row_classes: Iterable[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    classes = list(row_classes) if row_classes is not None else None
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{_esc(_fmt(c))}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
                        else f"<td>{_esc(_fmt(c))}</td>" for c in r)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ------------------------------------------------------------------------------------------------
# metrics from the ML stage's eval_*.json (keys searched case-insensitively, nested under "metrics")


def _find(d: Any, names: tuple[str, ...]) -> Any:
    if not isinstance(d, dict):
        return None
    low = {str(k).lower(): v for k, v in d.items()}
    for n in names:
        if n in low and not isinstance(low[n], dict):
            return low[n]
    for key in ("metrics", "summary", "ensemble", "mean"):
        if key in low and isinstance(low[key], dict):
            v = _find(low[key], names)
            if v is not None:
                return v
    return None


def metric_cell(d: Any, name: str) -> str:
    """'value ± std' of metric ``name`` (mae, rmse, r2, coverage90) in an eval JSON, '–' if absent."""
    alias = {"r2": ("r2", "r²", "r_squared"), "mae": ("mae",), "rmse": ("rmse",),
             "coverage90": ("coverage90",)}[name]
    v = _find(d, alias)
    if v is None:
        return "–"
    s = _find(d, tuple(f"{a}_{suf}" for a in alias for suf in ("std", "sd", "err")))
    return f"{_fmt(float(v))}" + (f" ± {_fmt(float(s), 2)}" if isinstance(s, (int, float)) else "")


def _model_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("train_*") if p.is_dir())


# ------------------------------------------------------------------------------------------------


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_esc(title)}</h2>{body}</section>'


def _setup_section(cfg: dict[str, Any] | None) -> str:
    if not cfg:
        return _notrun("configuration (config.toml)")
    lat = cfg.get("lattice", {})
    parts = []
    if "index" in lat:
        th = twist_angle_deg(int(lat["index"]))
        n_atoms = 4 * (3 * lat["index"] ** 2 + 3 * lat["index"] + 1)
        parts.append(f"<p>Commensurate twisted bilayer graphene of index <b>i = {lat['index']}</b> "
                     f"(θ = {th:.3f}°, {n_atoms} carbon atoms per moiré cell, moiré period "
                     f"L = {2.46 / (2 * math.sin(math.radians(th) / 2)):.1f} Å), interlayer distance "
                     f"d = {lat.get('interlayer_distance', '–')} Å, Slater–Koster p<sub>z</sub> hoppings up to "
                     f"{lat.get('cutoff', '–')} Å. Hartree–Fock with on-site Hubbard U and gate-screened "
                     f"Coulomb (ε = {cfg.get('hf', {}).get('eps', '–')}, gate distance "
                     f"{cfg.get('hf', {}).get('gate_distance', '–')} Å); t = 2.7 eV for U/t. "
                     f"Seed {cfg.get('seed', '–')}, preset <code>{_esc(cfg.get('preset', '–'))}</code>.</p>")
    grid = []
    for sec in ("lattice", "hf", "stm", "dataset", "train", "analysis"):
        if isinstance(cfg.get(sec), dict):
            grid.append(f"<div><h3>{sec}</h3>{_kv_table(cfg[sec])}</div>")
    parts.append(f'<details><summary>all parameters (resolved config.toml)</summary>'
                 f'<div class="grid params">{"".join(grid)}</div></details>')
    return "".join(parts)


def _figs_in(folder: Path, names: list[str] | None = None, limit: int = 12) -> list[Path]:
    if not folder.is_dir():
        return []
    files = sorted(folder.rglob("*.png"))  # stages may keep sub-runs in sub-folders (e.g. stm/U0, stm/U6)
    if names:
        files = [f for n in names for f in files if f.name == n] + [f for f in files if f.name not in names]
    return files[:limit]


def _stage_section(folder: Path, what: str, json_name: str | None = None, preferred: list[str] | None = None) -> str:
    figs = _figs_in(folder, preferred)
    if not figs and not (json_name and (folder / json_name).is_file()):
        return _notrun(what)
    out = []
    if json_name:
        d = _read_json(folder / json_name)
        if isinstance(d, dict):
            out.append(_kv_table(d))
            out.append(_records_tables(d))
    out.append('<div class="grid">' + "".join(_img(f, f.stem.replace("_", " ")) for f in figs) + "</div>")
    return "".join(out)


def _metrics_section(run_dir: Path, analysis: dict[str, Any] | None, paper: str | Path | None = None) -> str:
    headers = ["model", "test MAE (eV)", "test RMSE (eV)", "test R²", "test cov90", "held-out MAE (eV)",
               "held-out RMSE (eV)", "held-out R²", "held-out cov90"]
    cols = ("mae", "rmse", "r2", "coverage90")
    rows, classes = [], []
    for d in _model_dirs(run_dir):
        et, eh = _read_json(d / "eval_test.json"), _read_json(d / "eval_heldout.json")
        name = d.name.removeprefix("train_")
        if et is None and eh is None:
            rows.append([name] + ["not run"] * 8)
        else:
            rows.append([name] + [metric_cell(et, m) for m in cols] + [metric_cell(eh, m) for m in cols])
        classes.append("")
    for b in (analysis or {}).get("baselines", []) or []:
        mt, mh = b["metrics"].get("test", {}), b["metrics"].get("heldout", {})
        rows.append([b["name"]] + [_fmt(mt.get(m)) for m in cols] + [_fmt(mh.get(m)) for m in cols])
        classes.append("")
    for r in REFERENCE:
        rows.append([r["model"]] + [r["test"].get(m, "–") for m in cols] + [r["heldout"].get(m, "–") for m in cols])
        classes.append("ref")
    note = ""
    if not _model_dirs(run_dir):
        note += _notrun("model training (train_*/)") + " "
    if not (analysis or {}).get("baselines"):
        note += _notrun("baselines (analysis/)")
    sizes = (analysis or {}).get("split_sizes")
    ss = ('<p class="small">Split (same as the ML stage): '
          + ", ".join(f"{k} {v}" for k, v in sizes.items()) + f" samples. {_esc(REFERENCE_NOTE)}</p>"
          if sizes else f'<p class="small">{_esc(REFERENCE_NOTE)}</p>')
    return _reproduction_table(run_dir, paper) + note + _table(headers, rows, classes) + ss


def _reproduction_table(run_dir: Path, paper: str | Path | None = None) -> str:
    """The paper / reproduction / ours table of ``RUN/reproduction.json`` (written by ``make paper``), else
    of ``paper`` (the kept results of ``make paper``), with the setting it was measured at."""
    rep = _read_json(run_dir / "reproduction.json")
    src = run_dir / "reproduction.json"
    if (not isinstance(rep, dict) or not rep.get("rows")) and paper is not None:
        rep, src = _read_json(Path(paper)), Path(paper)
    if not isinstance(rep, dict) or not rep.get("rows"):
        return ('<p class="small">Reproduction of the paper on the same data: not in this run '
                '(<code>make paper</code> writes it).</p>')
    headers = ["source", "model", "test MAE (eV)", "test RMSE (eV)", "test R²", "held-out MAE (eV)",
               "held-out RMSE (eV)", "held-out R²", "runs"]
    rows, classes = [], []
    for r in rep["rows"]:
        rows.append([r["source"], r["model"]] + [r.get(k, "–") for k in ("test_mae", "test_rmse", "test_r2",
                                                                            "heldout_mae", "heldout_rmse",
                                                                            "heldout_r2")] + [r.get("runs", "")])
        classes.append("ref" if r["source"] == "paper" else "")
    lat = (rep.get("config") or {}).get("lattice", {})
    where = f" — lattice index i = {lat.get('index', '?')}, from {src}"
    return (f"<h3>Paper / reproduction / ours{_esc(where)}</h3>" + _table(headers, rows, classes)
            + f'<p class="small">{_esc(rep.get("note", ""))}</p>')


def _training_section(run_dir: Path) -> str:
    dirs = _model_dirs(run_dir)
    if not dirs:
        return _notrun("model training")
    out = []
    for d in dirs:
        out.append(f"<h3>{_esc(d.name.removeprefix('train_'))}</h3>")
        for j in sorted(d.glob("*.json")):
            if j.name.startswith("eval_"):
                continue
            obj = _read_json(j)
            if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
                keys = list(dict.fromkeys(k for r in obj for k in r))
                out.append(f"<p class='small'>{_esc(j.name)}</p>" + _table(keys, [[r.get(k) for k in keys] for r in obj]))
            elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
                keys = list(dict.fromkeys(k for v in obj.values() for k in v))
                out.append(f"<p class='small'>{_esc(j.name)}</p>"
                           + _table(["case"] + keys, [[n] + [v.get(k) for k in keys] for n, v in obj.items()]))
        figs = _figs_in(d, ["curves.png"])
        out.append('<div class="grid">' + "".join(_img(f, f"{d.name}: {f.stem.replace('_', ' ')}") for f in figs)
                   + "</div>" if figs else _notrun(f"{d.name} figures"))
    return "".join(out)


def _robustness_section(run_dir: Path) -> str:
    """The measurement-corruption table (``RUN/robustness/robustness.json``): one row per corruption,
    per model MAE (eV) / 90 % coverage / in-distribution fraction on fresh held-out acquisitions."""
    doc = _read_json(run_dir / "robustness" / "robustness.json")
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not rows:
        return _notrun("robustness under measurement corruptions (moireu robustness)")
    models = list(dict.fromkeys(r["model"] for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(r["corruption"], {})[r["model"]] = (
            f"{_fmt(r.get('mae'))} / {_fmt(r.get('coverage90'), 2)} / {_fmt(r.get('in_distribution'), 2)}")
    table = _table(["corruption", *models], [[c, *[v.get(m, "–") for m in models]] for c, v in cells.items()])
    return ("<p>Fresh acquisitions of the held-out U points rendered from the store's per-atom LDOS through the "
            "measurement model with one perturbation each (never seen in training); cells: MAE (eV) / 90 % "
            "interval coverage / fraction judged in distribution.</p>" + table)


CAPTIONS = {
    "similarity": "Cosine similarity of z-scored mean FT-LDOS images per U (reference: > 99.98 %).",
    "pca_variance": "Explained variance of the principal components (reference: 56.8 / 26.8 / 6.1 %).",
    "pca_components": "Principal components as eigen-images in k space.",
    "pca_projections": "Projections on the first principal components vs U.",
    "variance_maps": "Pixel variance across the samples of one U (patch offsets, biases, rotations).",
    "attention": "Share of |attribution| on the central peak, the Bragg peaks and the moiré satellites vs U "
                 "(dotted: share of the image area, what a featureless map would give).",
    "crossover": "Crossover estimates: the curves, the hinge fits and U_c ± σ (band).",
}


def _analysis_section(adir: Path, analysis: dict[str, Any] | None) -> str:
    if analysis is None:
        return _notrun("analysis (moireu analyze)")
    figs = analysis.get("figures", {})
    out = []
    sim = analysis.get("similarity")
    pca = analysis.get("pca")
    if sim:
        out.append(f"<p>Minimum cosine similarity between mean FT-LDOS images of different U: "
                   f"<b>{100 * sim['min_similarity']:.3f} %</b> (U = {sim['min_pair_U'][0]:g} vs "
                   f"{sim['min_pair_U'][1]:g} eV); mean off-diagonal {100 * sim['mean_offdiag_similarity']:.3f} %.</p>")
    if pca:
        f3 = pca["first3_percent"]
        out.append("<p>PCA explained variance of the first components: <b>"
                   + " / ".join(f"{x:.1f}" for x in f3) + " %</b> (reference 56.8 / 26.8 / 6.1 %).</p>")

    def add(keys: list[str]) -> None:
        items = []
        for k in keys:
            if k in figs and (adir / figs[k]).is_file():
                items.append(_img(adir / figs[k], CAPTIONS.get(k, k.replace("_", " "))))
        if items:
            out.append('<div class="grid">' + "".join(items) + "</div>")

    out.append("<h3>Similarity and PCA</h3>")
    add(["similarity", "pca_variance"])
    add(["pca_components"])
    add(["pca_projections"])
    add(["variance_maps"])
    out.append("<h3>Baselines</h3>")
    par = [k for k in figs if k.startswith("parity_")]
    add(par) if par else out.append(_notrun("baselines"))
    out.append("<h3>Interpretability</h3>")
    attr = [k for k in figs if k.startswith("attr_")]
    if attr:
        for k in attr:
            add([k])
        add(["attention"])
    else:
        out.append(_notrun("interpretability (no trained model given to moireu analyze)"))
    for n in analysis.get("notes", []):
        out.append(f'<p class="small">note: {_esc(n)}</p>')
    return "".join(out)


def _crossover_section(adir: Path, analysis: dict[str, Any] | None) -> str:
    if not analysis or "crossover" not in analysis:
        return _notrun("crossover estimates")
    cx = analysis["crossover"]
    rows = []
    for e in cx["estimates"]:
        uc = e["U_c"]
        rows.append([e["quantity"], e["method"],
                     "–" if uc is None else f"{uc:.2f} ± {e['U_c_err']:.2f}" if e["U_c_err"] is not None else f"{uc:.2f}",
                     "–" if uc is None else (f"{e['U_c_over_t']:.2f} ± {e['U_c_over_t_err']:.2f}"
                                             if e["U_c_over_t_err"] is not None else f"{e['U_c_over_t']:.2f}"),
                     "–" if e["delta_bic"] is None else f"{e['delta_bic']:.1f}",
                     "yes" if e.get("supported") else "no", e.get("note", "")])
    c = cx.get("combined", {})
    if c.get("U_c") is None:
        comb = "<p>No estimate supports a kink (ΔBIC ≤ 2 everywhere).</p>"
    else:
        feats = c.get("features") or [c]
        items = "".join(f"<li>U_c = {f['U_c']:.2f} ± {f['U_c_err']:.2f} eV, U_c/t = {f['U_c_over_t']:.2f} ± "
                        f"{f['U_c_over_t_err']:.2f} — {_esc(', '.join(f['used']))}</li>" for f in feats)
        head = (f"<b>U_c = {c['U_c']:.2f} ± {c['U_c_err']:.2f} eV, U_c/t = {c['U_c_over_t']:.2f} ± "
                f"{c['U_c_over_t_err']:.2f}</b> (t = {cx['t']} eV)")
        rule = c.get("headline_rule", "the group with most estimates")
        ref = "Tanksale & Stauber (another system, θ ≈ 3.5°): U_c/t ≈ 1."
        if len(feats) == 1:
            comb = f"<p>All supported estimates agree: {head}. {ref}</p>"
        else:
            comb = (f"<p>The supported estimates do <b>not</b> agree on one U_c: they fall into {len(feats)} groups "
                    f"(2σ agreement, including the U-grid resolution h/√12, h = {c.get('resolution', 0):.2g} eV):</p>"
                    f"<ul>{items}</ul><p>Headline ({_esc(rule)}): {head}. Groups without the HF moment onset "
                    f"are features of the images or the models, not the mean-field crossover. {ref}</p>")
    fig = analysis.get("figures", {}).get("crossover")
    img = _img(adir / fig, CAPTIONS["crossover"]) if fig and (adir / fig).is_file() else ""
    return comb + _table(["quantity", "method", "U_c (eV)", "U_c / t", "ΔBIC", "kink supported", "note"], rows) + img


def _provenance_section(run_dir: Path, analysis: dict[str, Any] | None) -> str:
    out = []
    prov = _read_json(run_dir / "provenance.json")
    out.append("<h3>run</h3>" + (_kv_table(prov) if isinstance(prov, dict) else _notrun("provenance.json")))
    if analysis and isinstance(analysis.get("provenance"), dict):
        out.append("<h3>analysis</h3>" + _kv_table(analysis["provenance"]))
        st = analysis.get("store", {})
        out.append("<h3>dataset</h3>" + _kv_table(st))
    for d in _model_dirs(run_dir):
        p = _read_json(d / "provenance.json")
        if isinstance(p, dict):
            out.append(f"<h3>{_esc(d.name)}</h3>" + _kv_table(p))
    return "".join(out)


def write_report(run_dir: str | Path, out: str | Path | None = None, paper: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of ``run_dir`` (default ``RUN_DIR/report.html``); returns its path.

    ``paper``: a ``reproduction.json`` of ``moireu paper`` (e.g. the kept ``results/paper/reproduction.json``)
    whose paper / reproduction / ours table leads the metrics when the run holds none of its own.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {str(run_dir)!r} does not exist")
    out = Path(out) if out is not None else run_dir / "report.html"
    cfg = None
    if (run_dir / "config.toml").is_file():
        try:
            cfg = tomllib.loads((run_dir / "config.toml").read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{str(run_dir / 'config.toml')!r} is not valid TOML: {exc}") from None
    adir = run_dir / "analysis"
    analysis = _read_json(adir / "analysis.json")
    sections = [
        ("metrics", "Regression metrics: reproduction of the paper, and ours", _metrics_section(run_dir, analysis, paper)),
        ("setup", "Physical setup and parameters", _setup_section(cfg)),
        ("bands", "Band structure", _stage_section(run_dir / "bands", "band structure (moireu bands)", "bands.json",
                                                   ["bands.png"])),
        ("hf", "Hartree–Fock U sweep", _stage_section(run_dir / "hf", "Hartree–Fock sweep", "sweep.json",
                                                      ["sweep.png"])),
        ("stm", "Example LDOS and FT-LDOS images", _stage_section(run_dir / "stm", "STM simulation (moireu stm)")),
        ("training", "Training curves, parity and residuals", _training_section(run_dir)),
        ("robustness", "Robustness under measurement corruptions", _robustness_section(run_dir)),
        ("analysis", "Analyses", _analysis_section(adir, analysis)),
        ("crossover", "Crossover U_c", _crossover_section(adir, analysis)),
        ("provenance", "Provenance", _provenance_section(run_dir, analysis)),
    ]
    nav = "".join(f'<a href="#{sid}">{_esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(_section(sid, t, b) for sid, t, b in sections)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "moireu report"
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}: '
           f"{_esc(run_dir.name)}</title><style>{CSS}</style></head><body>"
           f"<header><h1>Hubbard U of twisted bilayer graphene from STM maps</h1>"
           f"<p>moireu report of <code style='background:transparent;color:white'>{_esc(run_dir.resolve())}</code>"
           f" · generated {when} · units: Å, eV, Å⁻¹</p></header><nav>{nav}</nav><main>{body}</main></body></html>")
    write_text_atomic(out, doc)
    return out
