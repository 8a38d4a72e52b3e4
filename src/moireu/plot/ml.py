"""Figures of the learning stage: training curves of a run, parity and residual plots of an evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moireu.plot import pyplot, save_png

__all__ = ["plot_curves", "plot_parity_residual"]

DPI = 110


def plot_curves(info: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Training/validation loss per epoch for every member (PNG, written atomically).

    ``info``: the training summary of :func:`moireu.ml.train.fit_ensemble`; its ``members`` list holds
    per member ``member``, ``best_epoch`` and ``history`` (``epoch``, ``train_loss``, ``val_loss``,
    ``val_mae_eV`` per epoch).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for mi in info["members"]:
        h = mi["history"]
        ep = [r["epoch"] + 1 for r in h]
        (line,) = axes[0].plot(ep, [r["train_loss"] for r in h], lw=1, label=f"train m{mi['member']}")
        axes[0].plot(ep, [r.get("val_loss", np.nan) for r in h], lw=1, ls="--", color=line.get_color(),
                     label=f"val m{mi['member']}")
        axes[0].axvline(mi["best_epoch"] + 1, color=line.get_color(), lw=0.5, alpha=0.5)
        axes[1].plot(ep, [r.get("val_mae_eV", np.nan) for r in h], lw=1, color=line.get_color())
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation MAE (eV)")
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=DPI)


def plot_parity_residual(res: dict[str, Any], run_dir: Path, tag: str, title: str) -> list[Path]:
    """Parity (Û vs U with intervals) and residual (Û − U vs U) PNGs: ``run_dir/parity_<tag>.png``,
    ``run_dir/residual_<tag>.png``.

    ``res``: an evaluation result (:func:`moireu.ml.evaluate.evaluate_arrays`): ``arrays`` (``U``,
    ``pred``, ``lower``, ``upper``), ``mae``, ``r2``, ``coverage90`` and ``per_U`` rows (``U``, ``mean_pred``).
    """
    plt = pyplot()
    a = res["arrays"]
    y, p, lo, hi = a["U"], a["pred"], a["lower"], a["upper"]
    lim = [min(y.min(), p.min()) - 0.2, max(y.max(), p.max()) + 0.2]
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.errorbar(y, p, yerr=[p - lo, hi - p], fmt="o", ms=2.5, lw=0.4, alpha=0.5, capsize=0)
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("true U (eV)")
    ax.set_ylabel("predicted U (eV)")
    ax.set_title(f"{title}\nMAE {res['mae']:.3f} eV · R² {res['r2']:.3f} · cov {res['coverage90']:.2f}", fontsize=8)
    fig.tight_layout()
    p1 = save_png(fig, run_dir / f"parity_{tag}.png", dpi=DPI)
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.scatter(y, p - y, s=6, alpha=0.6)
    ax.axhline(0, color="k", lw=0.8)
    rows = res["per_U"]
    ax.plot([r["U"] for r in rows], [r["mean_pred"] - r["U"] for r in rows], "r-", lw=1, label="mean per U")
    ax.set_xlabel("true U (eV)")
    ax.set_ylabel("residual Û − U (eV)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    p2 = save_png(fig, run_dir / f"residual_{tag}.png", dpi=DPI)
    return [p1, p2]
