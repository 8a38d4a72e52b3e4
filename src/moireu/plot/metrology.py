"""The figure of ``moireu lattice``: the FFT amplitude of a map with the fitted moiré (and Bragg) peaks.

Takes arrays and the plain dict of :meth:`moireu.stm.metrology.LatticeMetrology.to_dict`; imports no
stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moireu.plot import pyplot, save_png

DPI = 110


def _window(kx: np.ndarray, ky: np.ndarray, amp: np.ndarray, kmax: float) -> tuple[np.ndarray, list[float]]:
    """log10 ``|F|`` on the part of the grid with ``|k_x|``, ``|k_y|`` ≤ kmax, and its imshow extent."""
    ix = np.flatnonzero(np.abs(kx) <= kmax)
    iy = np.flatnonzero(np.abs(ky) <= kmax)
    sub = amp[iy[0]:iy[-1] + 1, ix[0]:ix[-1] + 1]
    floor = 1e-6 * float(amp.max()) if amp.size and amp.max() > 0 else 1e-300
    return np.log10(sub + floor), [float(kx[ix[0]]), float(kx[ix[-1]]), float(ky[iy[0]]), float(ky[iy[-1]])]


def _pm(v: float, s: float) -> str:
    """``v ± s`` with two significant digits of s."""
    if not (s > 0 and np.isfinite(s)):
        return f"{v:.4g}"
    dec = int(max(0, min(8, 1 - np.floor(np.log10(s)))))
    return f"{v:.{dec}f} ± {s:.{dec}f}"


def _panel(ax: Any, kx, ky, amp, kmax: float, title: str) -> None:
    img, ext = _window(kx, ky, amp, kmax)
    lo, hi = np.percentile(img, [50.0, 99.95])
    im = ax.imshow(img, origin="lower", extent=ext, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xlabel(r"$k_x$ (Å$^{-1}$)")
    ax.set_ylabel(r"$k_y$ (Å$^{-1}$)")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=r"log$_{10}$ |F|")


def plot_metrology(kx: np.ndarray, ky: np.ndarray, amp: np.ndarray, result: dict[str, Any],
                   path: str | Path) -> Path:
    """Write the PNG: FFT amplitude (log scale) around the moiré shell, and around the Bragg shell
    when the atoms are resolved, with the refined peaks (circles) and the fitted model's peaks
    (crosses) marked in the map's nominal frame; the fitted values in the title.

    Parameters
    ----------
    kx, ky : (nx,), (ny,) Å⁻¹
        Axes of the FFT grid (increasing).
    amp : (ny, nx)
        ``|F|`` on that grid.
    result : dict
        :meth:`LatticeMetrology.to_dict` (``peaks_nominal``, ``fit_peaks_nominal``,
        ``bragg_peaks_nominal``, the fitted values).
    path : file
        The PNG (written atomically).
    """
    plt = pyplot()
    peaks = np.asarray(result["peaks_nominal"], float).reshape(-1, 2)
    fit = np.asarray(result.get("fit_peaks_nominal") or [], float).reshape(-1, 2)
    bragg = np.asarray(result.get("bragg_peaks_nominal") or [], float).reshape(-1, 2)
    atomic = bool(result.get("atomic_resolved")) and len(bragg) > 0
    fig, axes = plt.subplots(1, 2 if atomic else 1, figsize=(11.5 if atomic else 6.2, 5.4), squeeze=False)
    gmax = float(np.hypot(peaks[:, 0], peaks[:, 1]).max())
    ax = axes[0, 0]
    _panel(ax, kx, ky, amp, 2.2 * gmax, "moiré shell")
    ax.scatter(peaks[:, 0], peaks[:, 1], s=120, facecolors="none", edgecolors="#3ad1ff", linewidths=1.3,
               label="refined peaks")
    if len(fit):
        ax.scatter(fit[:, 0], fit[:, 1], s=40, marker="+", color="#7CFC00", linewidths=1.2, label="fitted model")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.6)
    if atomic:
        ax = axes[0, 1]
        bmax = float(np.hypot(bragg[:, 0], bragg[:, 1]).max())
        _panel(ax, kx, ky, amp, 1.25 * bmax, "atomic (Bragg) shell")
        ax.scatter(bragg[:, 0], bragg[:, 1], s=140, marker="s", facecolors="none", edgecolors="#3ad1ff",
                   linewidths=1.3, label="refined Bragg peaks")
        ax.scatter(peaks[:, 0], peaks[:, 1], s=20, facecolors="none", edgecolors="#3ad1ff", linewidths=0.8)
        ax.legend(loc="lower left", fontsize=8, framealpha=0.6)
    phi = (f"φ = {_pm(result['strain_angle_deg'], result['strain_angle_sigma_deg'])}°"
           if result["strain_angle_sigma_deg"] < 90 else "φ undetermined")
    title = (f"θ = {_pm(result['twist_deg'], result['twist_sigma_deg'])}°   "
             f"ε = {_pm(result['strain_percent'], result['strain_sigma_percent'])} %   {phi}\n"
             "λ = " + " / ".join(f"{v:.2f}" for v in result["moire_wavelengths"]) + " Å")
    sc = result.get("scanner")
    if sc:
        title += (f"   piezo s_x = {_pm(sc['scale_x'], sc['scale_x_sigma'])}, "
                  f"s_y = {_pm(sc['scale_y'], sc['scale_y_sigma'])}, shear {sc['shear_deg']:.3f}°\n"
                  f"(moiré read in the corrected frame; nominal θ = {result['twist_nominal_deg']:.4f}°)")
    fig.suptitle(f"{result.get('source', 'map')}\n{title}", fontsize=9.5)
    fig.tight_layout()
    return save_png(fig, path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
