"""One-call STM simulation of a Hartree–Fock solution: LDOS → patch → rendered map + FT-LDOS image.

Used by ``moireu stm`` and the documentation figure; the dataset stage calls the pieces directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from moireu.errors import InputError
from moireu.stm.ftldos import ImageTransform, ftldos
from moireu.stm.ldos import ldos_at
from moireu.stm.patch import build_patch, reciprocal_peaks, render_map


@dataclass
class STMSimulation:
    """Results for a list of biases.

    Attributes
    ----------
    biases : (nb,) eV relative to E_F
    ldos : (nb, 2, N) per-spin LDOS of the cell atoms (states/eV/atom)
    maps : list of DataArray (y, x) rendered maps
    images : list of DataArray (ky, kx) FT-LDOS images
    peaks : dict from :func:`moireu.stm.patch.reciprocal_peaks`
    transform : ImageTransform
    attrs : common metadata
    """

    biases: np.ndarray
    ldos: np.ndarray
    maps: list[Any]
    images: list[Any]
    peaks: dict[str, np.ndarray]
    transform: ImageTransform
    attrs: dict[str, Any] = field(default_factory=dict)


def parse_biases_mev(text: str) -> list[float]:
    """``"0,2,-4"`` (meV) → [0.0, 0.002, -0.004] (eV)."""
    out = []
    for part in str(text).replace(";", ",").split(","):
        p = part.strip()
        if not p:
            continue
        try:
            v = float(p)
        except ValueError:
            raise InputError(f"--bias expects comma-separated numbers in meV (e.g. 0,2,-4), got {text!r}") from None
        if not np.isfinite(v):
            raise InputError(f"--bias values must be finite, got {p!r}")
        out.append(v * 1e-3)
    if not out:
        raise InputError(f"--bias expects at least one value in meV, got {text!r}")
    return out


def simulate_stm(system: Any, res: Any, stm: Any, biases: Sequence[float] | None = None,
                 offset: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0,
                 allow_unconverged: bool = False, progress: bool = True,
                 extra_attrs: dict[str, Any] | None = None) -> STMSimulation:
    """LDOS at E_F + biases, a P × P patch, the rendered map and the FT-LDOS image per bias.

    Parameters
    ----------
    system, res : HFSystem and HFResult.
    stm : STMConfig
        eta, broadening, kmesh, patch_cells, tip_height, map_pixels, n_pixels, window_scale and the
        image options.
    biases : eV relative to E_F (default ``stm.biases``).
    offset, rotation_deg : patch variation (Å, degrees).
    """
    model = system.model
    b = np.asarray(list(stm.biases if biases is None else biases), dtype=float)
    L = ldos_at(system, res, biases=b, eta=stm.eta, kind=stm.broadening, kmesh=stm.kmesh, per_spin=True,
                allow_unconverged=allow_unconverged, progress=progress)
    cell = np.asarray(model.cell, float)
    t = ImageTransform.from_config(stm, moire_period=float(np.linalg.norm(cell[0])))
    peaks = reciprocal_peaks(model.positions, cell, model.layer, model.sublattice, t.window)
    maps, images = [], []
    common = {"U": float(res.U), "filling": float(res.filling), "eta": float(stm.eta),
              "broadening": stm.broadening, "ldos_kmesh": list(stm.kmesh), "fermi_level": float(res.fermi_level),
              "hf_converged": int(bool(res.converged)), "index": int(getattr(model, "index", 0) or 0),
              "theta_deg": float(getattr(model, "theta_deg", 0.0) or 0.0)} | dict(extra_attrs or {})
    # map frame: the square inscribed in the incircle of the patch parallelogram (no empty corners
    # whatever the rotation); the incircle radius is half the smaller height of the parallelogram
    area = abs(float(np.linalg.det(cell)))
    half = 0.5 * stm.patch_cells * area / float(np.linalg.norm(cell, axis=1).max()) / np.sqrt(2.0)
    for i, bias in enumerate(b):
        w = L[i].sum(axis=0)
        p = build_patch(model.positions[:, :2], cell, w, cells=stm.patch_cells, offset=offset,
                        rotation_deg=rotation_deg)
        meta = common | p.attrs() | {"bias": float(bias)}
        m = render_map(p.xy, p.values, pixels=stm.map_pixels, extent=(-half, half, -half, half),
                       tip_height=stm.tip_height)
        m.attrs |= meta
        maps.append(m)
        images.append(ftldos(p.xy, p.values, transform=t, attrs=meta))
    return STMSimulation(b, L, maps, images, peaks, t, common)


def u_comparison_figure(cfg: Any, U_values: Sequence[float] = (0.0, 6.0), path: Any = "docs/img/ldos_ftldos_U0_U6.png",
                        bias: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Solve HF at each U (config ``lattice``/``hf`` sections) and draw the LDOS map and FT-LDOS side by side.

    Returns per-U summaries (converged, iterations, max moment, image statistics).
    """
    from moireu.hf import CoulombParams, HFSystem
    from moireu.lattice import build_tbg
    from moireu.stm.plot import comparison_figure

    lat, hf = cfg.lattice, cfg.hf
    model = build_tbg(index=lat.index, interlayer_distance=lat.interlayer_distance, cutoff=lat.cutoff)
    system = HFSystem(model, kmesh=hf.kmesh, coulomb=CoulombParams(eps=hf.eps, gate_distance=hf.gate_distance,
                                                                    fock_range=hf.fock_range, long_range=hf.long_range))
    panels, out = [], {}
    for U in U_values:
        res = system.solve(U=float(U), filling=hf.filling, kT=hf.kT, init=hf.init, seed=cfg.seed, tol=hf.tol,
                           max_iter=hf.max_iter, config=cfg.to_dict())
        sim = simulate_stm(system, res, cfg.stm, [bias], allow_unconverged=True, progress=progress,
                           extra_attrs={"seed": cfg.seed})
        label = f"U = {U:g} eV" + ("" if res.converged else " (unconverged)")
        panels.append((label, sim.maps[0], sim.images[0]))
        out[f"{U:g}"] = {"converged": bool(res.converged), "iterations": int(res.iterations),
                         "max_moment": float(res.max_moment), "fermi_level": float(res.fermi_level)}
    title = (f"TBG i={lat.index} (θ={model.theta_deg:.2f}°, d={lat.interlayer_distance} Å), bias {1e3 * bias:g} meV, "
             f"η={1e3 * cfg.stm.eta:g} meV, {cfg.stm.patch_cells}×{cfg.stm.patch_cells} moiré cells, "
             f"FT {cfg.stm.n_pixels}² ({cfg.stm.normalize})")
    comparison_figure(panels, sim.peaks, path, title)
    return out
