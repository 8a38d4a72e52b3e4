"""Matplotlib (Agg) figures of the analyses. Every function writes one PNG atomically and returns its path.

Axes that carry U are drawn at the true U values: an uneven U grid (a refined dataset) gets cells of
uneven width (:func:`cell_edges`), never an evenly spaced index axis relabelled in eV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moireu.plot import pyplot, save_png

DPI = 110
REGION_COLORS = {"central": "#1f77b4", "bragg": "#d62728", "satellites": "#2ca02c", "other": "#7f7f7f"}


def _plt():
    """pyplot (Agg) with the analysis figures' font sizes and dpi."""
    plt = pyplot()
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "figure.dpi": DPI})
    return plt


def save(fig, path: str | Path) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically (no half-written figure on a crash).

    Always with a tight bounding box (0.05 in pad): constrained layout alone can leave the tick
    labels of the right-most colour bar outside the canvas.
    """
    _plt()
    return save_png(fig, path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)


def _extent(kx: np.ndarray, ky: np.ndarray) -> list[float]:
    return [float(kx[0]), float(kx[-1]), float(ky[0]), float(ky[-1])]


def centred_cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells centred on sorted, possibly unevenly spaced values: width = the smaller gap to a neighbour.

    Returns
    -------
    (edges, owner)
        ``edges`` (m + 1,) sorted boundaries of the intervals; ``owner`` (m,) the index of the value whose
        cell each interval is, or −1 for a gap between cells (drawn blank: no data there).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]), np.array([0])
    gaps = np.diff(v)
    w = np.minimum(np.concatenate([[gaps[0]], gaps]), np.concatenate([gaps, [gaps[-1]]]))
    lo, hi = v - w / 2, v + w / 2
    edges = np.unique(np.round(np.concatenate([lo, hi]), 12))
    mid = 0.5 * (edges[1:] + edges[:-1])
    owner = np.full(mid.size, -1)
    for i in range(v.size):
        owner[(mid > lo[i]) & (mid < hi[i])] = i
    return edges, owner


def similarity_figure(U: np.ndarray, S: np.ndarray, path: Path) -> Path:
    """Cosine-similarity matrix of per-U mean images on a true U axis.

    Each U is a cell centred on its value (:func:`centred_cells`); between sparse U values the
    map is blank instead of stretching a neighbour's cell over U it was never computed at.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    e, own = centred_cells(U)
    M = np.ma.masked_all((own.size, own.size))
    ok = own >= 0
    M[np.ix_(ok, ok)] = 100.0 * S[np.ix_(own[ok], own[ok])]
    im = ax.pcolormesh(e, e, M, cmap="viridis", shading="flat")
    ax.set_aspect("equal")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("cosine similarity (%)")
    ax.set_xlabel("U (eV)")
    ax.set_ylabel("U (eV)")
    off = S[~np.eye(len(U), dtype=bool)]
    ax.set_title(f"Mean FT-LDOS similarity; min = {100 * (off.min() if off.size else 1):.3f} %")
    return save(fig, path)


def explained_variance_figure(ratio: np.ndarray, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    k = np.arange(1, len(ratio) + 1)
    ax.bar(k, 100 * ratio, color="#4c72b0", label="per component")
    ax.plot(k, 100 * np.cumsum(ratio), "o-", color="#dd8452", label="cumulative")
    for i, r in enumerate(ratio[:3]):
        ax.annotate(f"{100 * r:.1f}%", (k[i], 100 * r), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance (%)")
    ax.set_xticks(k)
    ax.legend(frameon=False)
    ax.set_title("PCA of FT-LDOS images")
    return save(fig, path)


def eigen_images_figure(components: np.ndarray, ratio: np.ndarray, kx, ky, path: Path) -> Path:
    plt = _plt()
    k = len(components)
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 3.1), squeeze=False, layout="constrained")
    for j, ax in enumerate(axes[0]):
        c = components[j]
        v = float(np.abs(c).max()) or 1.0
        im = ax.imshow(c, origin="lower", cmap="RdBu_r", vmin=-v, vmax=v, extent=_extent(kx, ky))
        ax.set_title(f"PC{j + 1} ({100 * ratio[j]:.1f} %)")
        ax.set_xlabel("$k_x$ (Å$^{-1}$)")
        if j == 0:
            ax.set_ylabel("$k_y$ (Å$^{-1}$)")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.formatter.set_powerlimits((-2, 2))  # an offset ×10ⁿ instead of long labels
        cb.update_ticks()
    return save(fig, path)


def projections_figure(U, proj, split, stats: dict, path: Path) -> Path:
    plt = _plt()
    k = proj.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 3.1), squeeze=False, layout="constrained")
    for j, ax in enumerate(axes[0]):
        g = split == "grid"
        ax.scatter(U[g], proj[g, j], s=6, alpha=0.35, color="#4c72b0", label="grid samples")
        if (~g).any():
            ax.scatter(U[~g], proj[~g, j], s=8, alpha=0.6, color="#dd8452", marker="^", label="held-out")
        ax.errorbar(stats["U"], stats["mean"][:, j], yerr=stats["std"][:, j], color="k", lw=1.2,
                    capsize=2, label="mean ± sd per U")
        ax.set_xlabel("U (eV)")
        ax.set_ylabel(f"PC{j + 1} projection")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.suptitle("PCA projections vs U")
    return save(fig, path)


def maps_grid_figure(maps: np.ndarray, titles: Sequence[str], kx, ky, path: Path, suptitle: str,
                     cmap: str = "magma", cbar_label: str = "", ncols: int = 4, overlay=None) -> Path:
    plt = _plt()
    n = len(maps)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols + 0.8, 3.0 * nrows + 0.4), squeeze=False,
                             layout="constrained", sharex=True, sharey=True)
    vmax = float(np.percentile(maps, 99.5)) if maps.size else 1.0
    im = None
    for j in range(nrows * ncols):
        ax = axes[j // ncols][j % ncols]
        if j >= n:
            ax.axis("off")
            continue
        im = ax.imshow(maps[j], origin="lower", cmap=cmap, extent=_extent(kx, ky), vmin=0, vmax=vmax or None)
        if overlay is not None:
            overlay(ax)
        ax.set_title(titles[j], fontsize=9)
        if j // ncols == nrows - 1 or j + ncols >= n:
            ax.set_xlabel("$k_x$ (Å$^{-1}$)", fontsize=9)
        if j % ncols == 0:
            ax.set_ylabel("$k_y$ (Å$^{-1}$)", fontsize=9)
        ax.tick_params(labelsize=8)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
        cb.set_label(cbar_label)
    fig.suptitle(suptitle)
    return save(fig, path)


def geometry_overlay(geom, radius: float):
    """A function drawing the peak discs of a :class:`~moireu.analysis.kspace.PeakGeometry` on an axis."""

    def draw(ax):
        from matplotlib.patches import Circle

        for pts, name in ((geom.central, "central"), (geom.bragg, "bragg"), (geom.satellites, "satellites")):
            for px, py in pts:
                ax.add_patch(Circle((px, py), radius, fill=False, lw=0.6, color=REGION_COLORS[name]))

    return draw


def attention_figure(profiles: dict[str, dict], path: Path) -> Path:
    """Shares of attribution per region vs U, one panel per (model, method)."""
    plt = _plt()
    n = len(profiles)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.3), squeeze=False, layout="constrained")
    for ax, (title, p) in zip(axes[0], profiles.items()):
        for r, name in enumerate(p["regions"]):
            c = REGION_COLORS[name]
            ax.errorbar(p["U"], 100 * np.asarray(p["mean"])[:, r], yerr=100 * np.asarray(p["std"])[:, r],
                        color=c, marker="o", ms=3, lw=1.2, capsize=2, label=name)
            ax.axhline(100 * p["area_fraction"][r], color=c, ls=":", lw=0.8)
        ax.set_xlabel("U (eV)")
        ax.set_ylabel("share of |attribution| (%)")
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(frameon=False, fontsize=7, title="dotted: area share", title_fontsize=7)
    return save(fig, path)


def parity_figure(preds: dict[str, dict[str, list[float]]], title: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.0, 3.8))
    lo, hi = np.inf, -np.inf
    for split, d in preds.items():
        u, p = np.asarray(d["U"]), np.asarray(d["pred"])
        ax.scatter(u, p, s=8, alpha=0.6, label=split)
        lo, hi = min(lo, u.min(), p.min()), max(hi, u.max(), p.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("true U (eV)")
    ax.set_ylabel("predicted U (eV)")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return save(fig, path)


def crossover_figure(estimates: list[Any], t: float, path: Path) -> Path:
    """One panel per estimate: the curve it was read from, U_c ± σ as a band, U/t on a top axis."""
    plt = _plt()
    n = max(len(estimates), 1)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False, layout="constrained")
    for j in range(nrows * ncols):
        if j >= len(estimates):
            axes[j // ncols][j % ncols].axis("off")
    for ax, e in zip(axes.ravel(), estimates):
        c = e.curve
        u = np.asarray(c.get("U", []), float)
        y = np.asarray(c.get("y", []), float)
        if y.ndim == 1 and y.size:
            ax.plot(u, y, "o-", ms=3, lw=1, label=e.quantity)
            if "fit" in c:
                ax.plot(u, np.maximum(np.asarray(c["fit"]), 0) ** (1.0 / c.get("power", 1.0)), "k--", lw=0.8,
                        label="hinge fit")
            ax.set_ylabel(c.get("ylabel", e.quantity))
        elif y.size:
            labels = c.get("labels") or [f"curve {i + 1}" for i in range(y.shape[1])]
            for i in range(y.shape[1]):
                ax.plot(u, y[:, i], "o-", ms=3, lw=1, label=labels[i])
            ax.set_ylabel(c.get("ylabel", "per-U mean"))
        if e.U_c is not None:
            ok = e.supported
            ax.axvline(e.U_c, color="crimson" if ok else "grey", lw=1.2, ls="-" if ok else ":")
            if e.U_c_err:
                ax.axvspan(e.U_c - e.U_c_err, e.U_c + e.U_c_err, color="crimson" if ok else "grey", alpha=0.15)
            val = f"U_c = {e.U_c:.2f}" + (f" ± {e.U_c_err:.2f}" if e.U_c_err is not None else "") + " eV"
            ax.set_title(f"{e.quantity}\n{val}" + ("" if ok else " (no kink: ΔBIC ≤ 2)"), fontsize=9)
        else:
            ax.set_title(f"{e.quantity}\nno crossover in range", fontsize=9)
        ax.set_xlabel("U (eV)")
        sec = ax.secondary_xaxis("top", functions=(lambda x: x / t, lambda x: x * t))
        sec.set_xlabel("U / t", fontsize=8)
        sec.tick_params(labelsize=8)
        ax.legend(frameon=False, fontsize=7)
    return save(fig, path)
