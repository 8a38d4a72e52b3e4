"""Figures of the lattice stage: band structure and DOS (``moireu bands``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moireu.plot import pyplot, save_png

__all__ = ["plot_bands"]

DPI = 130


def plot_bands(res: dict, central: np.ndarray, path: Path) -> None:
    """Band structure (±250 meV around E_F) and DOS side by side.

    ``res``: the plain dict of :func:`moireu.cli.bands.compute_bands` (``dist``, ``ticks``, ``labels``,
    ``e_path`` (nk, N) eV, ``energies``, ``dos``, ``summary``); ``central`` the central bands of
    ``e_path`` (nk, 4) eV (:func:`moireu.lattice.central_bands`), drawn in colour.
    """
    plt = pyplot()
    s = res["summary"]
    ef = s["fermi_level_eV"]
    fig, (ax, axd) = plt.subplots(1, 2, figsize=(7.5, 4.2), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    e = 1e3 * (res["e_path"] - ef)
    ax.plot(res["dist"], e, color="0.55", lw=0.8)
    ax.plot(res["dist"], 1e3 * (np.asarray(central) - ef), color="C3", lw=1.4)
    for t in res["ticks"]:
        ax.axvline(t, color="0.8", lw=0.6)
    ax.axhline(0, color="k", lw=0.5, ls="--")
    ax.set_xticks(res["ticks"], res["labels"])
    ax.set_xlim(res["dist"][0], res["dist"][-1])
    ax.set_ylim(-250, 250)
    ax.set_ylabel("E − E_F (meV)")
    ax.set_title(f"TBG i={s['index']}: θ={s['theta_deg']:.3f}°, d={s['interlayer_distance']:.3f} Å, "
                 f"W={s['central_bandwidth_meV']:.1f} meV", fontsize=9)
    axd.plot(res["dos"], 1e3 * (res["energies"] - ef), color="C0")
    axd.set_xlabel("DOS (states/eV/cell)")
    fig.tight_layout()
    save_png(fig, path, dpi=DPI)
