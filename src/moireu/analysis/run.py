"""``moireu analyze``: every analysis of a dataset store (and trained models) → figures + analysis.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from moireu.config import AnalysisConfig
from moireu.errors import InputError
from moireu.provenance import provenance, write_json_atomic

from moireu.plot import analysis as F
from .baselines import fit_baselines
from .crossover import combine_estimates, order_parameter_crossover, order_parameter_onset, trajectory_crossover
from .data import AnalysisData, load_store
from .interpret import attention_profile, attribution_maps, average_per_u_bin, sample_geometries
from .paper import paper_baselines, paper_pca
from .pca import fit_pca, projections_vs_u, variance_maps
from .similarity import cosine_similarity_matrix, unique_u


@dataclass
class LoadedModel:
    """A trained regressor ready for attribution: name, module, input preprocessing, source folder."""

    name: str
    model: Any
    preprocess: Callable | None = None
    run_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def default_split(data: AnalysisData, seed: int, fractions: tuple[float, float, float, float] | None = None
                  ) -> dict[str, np.ndarray]:
    """Store indices of train/val/cal/test and of the untouched ``heldout`` samples, when no trained
    model recorded its split: the ML stage's leak-free split by variation group
    (:func:`moireu.ml.data.split_indices`, same seed, the ``train.*_fraction`` defaults), or for a store
    without variation ids the stratified 60/20/20 split by image."""
    from moireu.config import TrainConfig
    from moireu.ml.data import split_indices as ml_split
    from moireu.ml.data import stratified_split

    grid = np.flatnonzero(data.grid)
    held = np.flatnonzero(data.heldout)
    if data.variation is not None:
        fr = fractions or TrainConfig().split_fractions
        parts = ml_split("variation", grid.size, data.variation[grid], seed=seed, fractions=fr)
        return {k: grid[v] for k, v in parts.items()} | {"heldout": held}
    tr, va, te = stratified_split(data.U[grid], (0.6, 0.2, 0.2), seed=seed)
    return {"train": grid[tr], "val": grid[va], "test": grid[te], "heldout": held}


def model_split(models: list[LoadedModel], data: AnalysisData) -> dict[str, np.ndarray] | None:
    """The exact train/val/test store indices a trained model recorded in its checkpoint (if any)."""
    for m in models:
        sp = m.info.get("split") if m.info else None
        if isinstance(sp, dict) and all(k in sp for k in ("train", "val", "test")):
            # the ML stage's parts (train/val/cal/test by variation group; cal absent in older runs)
            idx = {k: np.asarray(sp[k], int) for k in ("train", "val", "cal", "test") if k in sp}
            if "cal" in idx and np.array_equal(idx["cal"], idx["val"]):
                idx.pop("cal")  # a split that calibrates on its validation part (the reference's)
            if max(int(v.max(initial=-1)) for v in idx.values()) < data.n:
                return idx | {"heldout": np.flatnonzero(data.heldout)}
    return None


def find_model_runs(paths: list[Path]) -> list[Path]:
    """Training folders among ``paths``: a folder with ``checkpoint.pt``, or the ``train_*`` folders in it."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise InputError(f"--runs {str(p)!r} is not a directory")
        if (p / "checkpoint.pt").is_file():
            out.append(p)
            continue
        sub = sorted(q for q in p.glob("train_*") if (q / "checkpoint.pt").is_file())
        if not sub:
            raise InputError(f"--runs {str(p)!r} holds no checkpoint.pt and no train_*/checkpoint.pt")
        out.extend(sub)
    return out


def load_models(run_dirs: list[Path]) -> list[LoadedModel]:
    """Load trained models through ``moireu.ml.load_run``."""
    from moireu.ml import load_run

    models = []
    for d in run_dirs:
        run = load_run(d)
        # a RunModel maps stored images to U itself (its Preprocess inside); older wrappers expose .model
        module = getattr(run, "model", run)
        name = d.name.removeprefix("train_")
        meta = getattr(run, "meta", None)
        models.append(LoadedModel(name, module, getattr(run, "preprocess", None), d,
                                  dict(meta) if isinstance(meta, dict) else {}))
    return models


def _progress():
    from moireu.progress import progress_bar

    return progress_bar("analyze", every=0.0)  # rich bar on a terminal, a line per step in a log


def _pick_per_u(U: np.ndarray, per_u: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vals, inv = unique_u(U)
    pick = [rng.permutation(np.flatnonzero(inv == j))[:per_u] for j in range(len(vals))]
    return np.sort(np.concatenate(pick))


def _grid_spacing(data: AnalysisData) -> float:
    """Median spacing (eV) of the training U grid: the resolution any U_c located from it has."""
    vals, _ = unique_u(data.U[data.grid] if data.grid.any() else data.U)
    return float(np.median(np.diff(vals))) if vals.size > 1 else 0.0


def _ours_baselines(data: AnalysisData, cfg: AnalysisConfig, seed: int, idx: dict[str, np.ndarray]
                    ) -> tuple[list, dict[str, int]]:
    idx = {k: np.asarray(v, int) for k, v in idx.items() if len(v)}
    bl = fit_baselines(data.images, data.U, idx, cfg.baseline_components, cfg.ridge_alpha, cfg.kernel_ridge, seed)
    return bl, {k: int(len(v)) for k, v in idx.items()}


def _paper_baselines(data: AnalysisData, cfg: AnalysisConfig, seed: int, idx: dict[str, np.ndarray]
                     ) -> tuple[list, dict[str, int]]:
    grid, held = np.flatnonzero(data.grid), np.flatnonzero(data.heldout)
    bl = paper_baselines(data.images[grid], data.U[grid], data.images[held], data.U[held])
    return bl, {"train": bl[0].params["n_train"], "test": bl[0].metrics["test"]["n"], "heldout": int(len(held))}


@dataclass(frozen=True)
class AnalysisMode:
    """One variant of the analysis (``analysis.mode``): what its PCA is fitted on and which baselines run.

    ``pca(images, U, n_components, seed)`` returns the fit; ``baselines(data, cfg, seed, split)`` the fitted
    baselines and the sizes of the split they used."""

    pca_fitted_on: str
    pca: Callable[..., Any]
    baselines: Callable[..., tuple[list, dict[str, int]]]


#: the analysis modes (names: moireu.ml.models.RECIPES): ours, and the reference's PCA of the per-U mean
#: images with its baselines on high-passed z-scored images (:mod:`moireu.analysis.paper`)
MODES = {"ours": AnalysisMode("every image", lambda im, U, n, seed: fit_pca(im, n, seed=seed), _ours_baselines),
         "paper": AnalysisMode("per-U mean images", lambda im, U, n, seed: paper_pca(im, U, n, seed=seed)[0],
                               _paper_baselines)}


def analyze(data: AnalysisData | str | Path, out: str | Path, models: list[LoadedModel] | None = None,
            cfg: AnalysisConfig | None = None, seed: int | None = None, split_idx: dict[str, np.ndarray] | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Run every analysis and write figures (PNG) and ``analysis.json`` into ``out``.

    The steps, in order: image similarity (:func:`_similarity`), PCA (:func:`_pca`), baselines
    (:func:`_baselines`), interpretability of the trained models (:func:`_interpretability`) and the
    crossover estimates from the HF order parameters, the PCA trajectory and the attention shift
    (:func:`_crossover`). Each adds its section to the result and its figures to ``figures``.

    Parameters
    ----------
    data : an :class:`AnalysisData` or the path of a dataset store.
    out : output folder.
    models : trained models for interpretability and the attention crossover (none: skipped).
    cfg : analysis settings (default :class:`AnalysisConfig`).
    seed : drives the split, PCA, bootstrap and sample picks (default: the store config's seed).
    split_idx : train/val/test/heldout indices (default: the ML stage's split of this store).

    Returns
    -------
    The dict written to ``analysis.json``.
    """
    if not isinstance(data, AnalysisData):
        data = load_store(data)
    cfg = cfg or AnalysisConfig()
    seed = data.seed if seed is None else int(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = models or []
    res: dict[str, Any] = {"store": {"n_samples": data.n, "image_shape": list(data.images.shape[1:]),
                                     "U_range": [float(data.U.min()), float(data.U.max())],
                                     "n_grid": int(data.grid.sum()), "n_heldout": int(data.heldout.sum()),
                                     "theta_deg": data.theta_deg, "lattice_index": data.lattice_index,
                                     "git_commit": data.attrs.get("git_commit")},
                           "settings": cfg.model_dump(mode="json") | {"seed": seed}, "figures": {}, "notes": []}
    steps = 6 + 2 * len(models)
    prog = _progress() if progress else None
    task = prog.add_task("similarity", total=steps) if prog else None

    def step(desc: str) -> None:
        if prog:
            prog.update(task, advance=1, description=desc)

    if prog:
        prog.start()
    try:
        _similarity(data, out, res)
        step("PCA")
        pca, k = _pca(data, cfg, seed, out, res)
        step("baselines")
        idx = split_idx if split_idx is not None else (model_split(models, data) or default_split(data, seed))
        _baselines(data, cfg, seed, idx, out, res)
        step("interpretability")
        _interpretability(data, cfg, seed, models, out, res, step)
        step("crossover")
        _crossover(data, cfg, seed, pca.projections[:, :k], out, res)
        step("writing analysis.json")
        res["models"] = [{"name": m.name, "run_dir": str(m.run_dir) if m.run_dir else None} for m in models]
        res["provenance"] = provenance()
        write_json_atomic(out / "analysis.json", res)
        step("done")
    finally:
        if prog:
            prog.stop()
    return res


def _similarity(data: AnalysisData, out: Path, res: dict[str, Any]) -> None:
    """Cosine similarity of the images between every pair of U (the reference's first figure)."""
    sim = cosine_similarity_matrix(data.images, data.U)
    res["similarity"] = sim.summary()
    res["figures"]["similarity"] = F.similarity_figure(sim.U, sim.matrix, out / "similarity.png").name


def _pca(data: AnalysisData, cfg: AnalysisConfig, seed: int, out: Path, res: dict[str, Any]) -> tuple[Any, int]:
    """PCA of the images (paper mode: of the per-U mean images), projections and pixel variance per U;
    returns the fit and the number ``k`` of components the crossover uses."""
    figs = res["figures"]
    mode = MODES[cfg.mode]
    pca = mode.pca(data.images, data.U, max(cfg.pca_max_components, cfg.pca_components), seed)
    k = min(cfg.pca_components, len(pca.components))
    stats = projections_vs_u(pca.projections[:, :k], data.U)
    vu, vmaps = variance_maps(data.images, data.U)
    res["pca"] = {"fitted_on": mode.pca_fitted_on,
                  "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
                  "first3_percent": (100 * pca.explained_variance_ratio[:3]).tolist(),
                  "projections_vs_U": {"U": stats["U"].tolist(), "mean": stats["mean"].tolist(),
                                       "std": stats["std"].tolist()},
                  "variance_map_total_vs_U": {"U": vu.tolist(), "total": vmaps.sum(axis=(1, 2)).tolist()}}
    figs["pca_variance"] = F.explained_variance_figure(pca.explained_variance_ratio, out / "pca_variance.png").name
    figs["pca_components"] = F.eigen_images_figure(pca.components[:k], pca.explained_variance_ratio, data.kx,
                                                   data.ky, out / "pca_components.png").name
    figs["pca_projections"] = F.projections_figure(data.U, pca.projections[:, :k], data.split, stats,
                                                   out / "pca_projections.png").name
    sel = np.unique(np.linspace(0, len(vu) - 1, min(8, len(vu))).round().astype(int))
    figs["variance_maps"] = F.maps_grid_figure(vmaps[sel], [f"U = {u:.2f} eV" for u in vu[sel]], data.kx,
                                               data.ky, out / "variance_maps.png",
                                               "Pixel variance across samples, per U", cmap="viridis",
                                               cbar_label="variance (z-score units²)").name
    return pca, k


def _baselines(data: AnalysisData, cfg: AnalysisConfig, seed: int, idx: dict[str, np.ndarray], out: Path,
               res: dict[str, Any]) -> None:
    """The non-network baselines (PCA(k) + ridge / kernel ridge; paper mode: the reference's) and their
    parity figures, on the split ``idx`` (paper mode: its own 80/20 split of the grid)."""
    bl, sizes = MODES[cfg.mode].baselines(data, cfg, seed, idx)
    res["baselines"] = [b.to_dict() for b in bl]
    res["split_sizes"] = sizes
    for b in bl:
        slug = b.name.lower().replace("(", "").replace(")", "").replace("+", "_").replace(" ", "_")
        res["figures"][f"parity_{slug}"] = F.parity_figure(
            {s: b.predictions[s] for s in ("test", "heldout") if s in b.predictions},
            f"{b.name}: test MAE {b.metrics.get('test', {}).get('mae', float('nan')):.2f} eV",
            out / f"parity_{slug}.png").name


_METHOD_LABEL = {"gradcam": "Grad-CAM", "guided_backprop": "guided backprop"}


def _interpretability(data: AnalysisData, cfg: AnalysisConfig, seed: int, models: list[LoadedModel], out: Path,
                      res: dict[str, Any], step: Callable[[str], None]) -> None:
    """Grad-CAM and guided-backprop maps of every model on ``attribution_per_u`` images per U: mean maps
    per U bin, and the share of attention on the central, Bragg and satellite regions of k space (kept
    in each entry as ``_shares``/``_U`` for :func:`_crossover`, which removes them)."""
    figs = res["figures"]
    profiles: dict[str, dict] = {}
    theta = data.theta_deg
    if models and theta is None:
        res["notes"].append("interpretability regions not computed: the store has no lattice.index in its config")
    res["interpretability"] = []
    if not models:
        return
    pick = _pick_per_u(data.U, cfg.attribution_per_u, seed)
    imgs, Up = data.images[pick], data.U[pick]
    geoms, group, notes = (sample_geometries(imgs, data.kx, data.ky, theta, data.rotation_deg[pick])
                           if theta is not None else ([], None, []))
    res["notes"].extend(notes)
    for m in models:
        for method in ("gradcam", "guided_backprop"):
            step(f"{m.name}: {method}")
            try:
                maps = attribution_maps(m.model, imgs, method, preprocess=m.preprocess)
            except InputError as exc:
                res["notes"].append(f"{m.name} {method}: {exc}")
                continue
            label = _METHOD_LABEL[method]
            all_zero = bool(np.all(np.nan_to_num(maps) == 0.0))
            if all_zero:
                # e.g. Grad-CAM through a ReLU whose pooled gradients are all ≤ 0: no attention
                # to measure, so no attention-shift estimate from it
                res["notes"].append(f"{m.name} {label}: every map is zero; flagged and excluded from "
                                    "the attention shares and the crossover table")
                geo_ok = False
            elif maps.shape[1:] != imgs.shape[1:]:
                res["notes"].append(f"{m.name} {method}: maps are {maps.shape[1:]} (model input size), "
                                    f"not the stored {imgs.shape[1:]}; region shares skipped")
                geo_ok = False
            else:
                geo_ok = bool(geoms)
            binned = average_per_u_bin(maps, Up, cfg.u_bins)
            overlay = None
            entry: dict[str, Any] = {"model": m.name, "method": method, "n_samples": int(len(pick)),
                                     "all_zero": all_zero,
                                     "u_bins": {"edges": binned.edges.tolist(),
                                                "centers": binned.centers.tolist(),
                                                "counts": binned.counts.tolist()}}
            if geo_ok:
                prof = attention_profile(maps, Up, data.kx, data.ky, geoms, group, cfg.mask_radius)
                profiles[f"{m.name} · {label}"] = prof
                entry["attention"] = {"regions": prof["regions"], "U": prof["U"].tolist(),
                                      "mean": prof["mean"].tolist(), "std": prof["std"].tolist(),
                                      "area_fraction": prof["area_fraction"].tolist()}
                entry["_shares"] = prof["shares"]
                entry["_U"] = Up
                r = max(cfg.mask_radius * geoms[0].g_moire,
                        0.75 * max(abs(data.kx[1] - data.kx[0]), abs(data.ky[1] - data.ky[0])))
                overlay = F.geometry_overlay(geoms[0], r)
            key = f"attr_{m.name}_{method}"
            figs[key] = F.maps_grid_figure(
                binned.maps, [f"U ∈ [{binned.centers[i] - (binned.edges[1] - binned.edges[0]) / 2:.1f}, "
                              f"{binned.centers[i] + (binned.edges[1] - binned.edges[0]) / 2:.1f}] eV "
                              f"(n={binned.counts[i]})" for i in range(len(binned.centers))],
                data.kx, data.ky, out / f"{key}.png", f"{m.name}: mean {label} map per U bin"
                + (" (every map is zero: excluded)" if all_zero else ""),
                cbar_label="normalised |attribution|", overlay=overlay).name
            res["interpretability"].append(entry)
    if profiles:
        figs["attention"] = F.attention_figure(profiles, out / "attention.png").name


def _crossover(data: AnalysisData, cfg: AnalysisConfig, seed: int, proj: np.ndarray, out: Path,
               res: dict[str, Any]) -> None:
    """U_c estimates: onset and hinge fits of the HF order parameters, the joint hinge fit of the per-U
    mean PCA projections ``proj`` and of each model's attention shares; combined, in units of t."""
    t, k = cfg.t_hopping, proj.shape[1]
    ests = []

    def estimate(name: str, fn: Callable[[], Any]) -> Any | None:
        # an estimate the data cannot support (e.g. fewer distinct U than a breakpoint fit needs)
        # is a note, not the end of the analysis
        try:
            e = fn()
        except InputError as exc:
            res["notes"].append(f"crossover estimate {name} not run: {exc}")
            return None
        ests.append(e)
        return e

    if "hf_max_moment" in data.hf:
        estimate("hf_max_moment (onset)", lambda: order_parameter_onset(data.U, data.hf["hf_max_moment"],
                                                                        "hf_max_moment (onset)", t))
    for q in ("hf_staggered_moment", "hf_max_moment"):
        if q in data.hf:
            estimate(q, lambda q=q: order_parameter_crossover(data.U, data.hf[q], q, t, cfg.n_bootstrap, seed))
    if "hf_gap" in data.hf:
        # mean field: Δ ≈ U·m, so Δ/U is proportional to the moment and (Δ/U)² rises linearly at U_c
        pos = data.U > 0
        estimate("hf_gap/U", lambda: order_parameter_crossover(data.U[pos], data.hf["hf_gap"][pos] / data.U[pos],
                                                               "hf_gap/U", t, cfg.n_bootstrap, seed))
    if not data.hf:
        res["notes"].append("HF order-parameter crossover not run: the store holds no hf_* variables")
    e = estimate("PCA trajectory", lambda: trajectory_crossover(
        data.U, proj, f"joint hinge fit of the per-U mean projections on PC1..PC{k}, bootstrap "
        "over samples within U", f"PCA trajectory (PC1–PC{k})", t, cfg.n_bootstrap, seed))
    if e is not None:
        e.curve["labels"] = [f"PC{j + 1}" for j in range(k)]
        e.curve["ylabel"] = "per-U mean projection"
    for entry in res["interpretability"]:
        if "_shares" in entry:
            name = f"attention shift ({entry['model']}, {entry['method']})"
            e = estimate(name, lambda entry=entry, name=name: trajectory_crossover(
                entry["_U"], entry["_shares"][:, :3], "joint hinge fit of the per-U mean attribution shares "
                "(central, Bragg, satellites), bootstrap over samples within U", name, t, cfg.n_bootstrap, seed))
            if e is not None:
                e.curve["labels"] = ["central", "Bragg", "satellites"]
                e.curve["ylabel"] = "share of |attribution|"
    for entry in res["interpretability"]:
        entry.pop("_shares", None)
        entry.pop("_U", None)
    res["crossover"] = {"t": t, "estimates": [x.to_dict() for x in ests],
                        "combined": combine_estimates(ests, resolution=_grid_spacing(data))}
    res["figures"]["crossover"] = F.crossover_figure(ests, t, out / "crossover.png").name


def load_analysis(path: str | Path) -> dict[str, Any]:
    """Read an ``analysis.json`` (folder or file)."""
    p = Path(path)
    p = p / "analysis.json" if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"no analysis.json at {str(p)!r}")
    return json.loads(p.read_text())
