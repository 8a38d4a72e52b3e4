"""Figures of the Hartree–Fock stage: order parameters of a U sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moireu.plot import pyplot, save_png

__all__ = ["plot_sweep"]

DPI = 130


def plot_sweep(rows: list[dict], path: Path, title: str = "") -> None:
    """Moments and charge spread vs U (two panels), written atomically.

    ``rows``: one plain dict per U with ``U``, ``max_moment``, ``staggered_moment``, ``charge_spread``,
    ``converged`` and optionally ``total_moment`` (drawn as ``|Σm|``/N with ``n_orb`` when every row has it).
    """
    plt = pyplot()
    U = np.array([r["U"] for r in rows])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.0, 3.4))
    a1.plot(U, [r["max_moment"] for r in rows], "o-", label="max |m_i|")
    a1.plot(U, [r["staggered_moment"] for r in rows], "s-", label="staggered")
    if all("total_moment" in r for r in rows):
        a1.plot(U, [abs(r["total_moment"]) / max(r.get("n_orb", 1), 1) for r in rows], "^-", label="|Σm|/N")
    bad = [r["U"] for r in rows if not r["converged"]]
    for b in bad:
        a1.axvline(b, color="r", lw=0.8, ls=":")
    a1.set_xlabel("U (eV)")
    a1.set_ylabel("moment (μ_B per site)")
    a1.legend(fontsize=8)
    a2.plot(U, [1e3 * r["charge_spread"] for r in rows], "o-", color="C3")
    a2.set_xlabel("U (eV)")
    a2.set_ylabel("charge spread max−min (10⁻³ e)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=DPI)
