"""Per-point compute of a dataset build: one HF solve, then the FT-LDOS images of that solution.

The orchestrator (:mod:`moireu.data.build`) only talks to a *backend* with two methods,

``solve(cfg, point, warm, hf_overrides, out) -> dict``
    run one Hartree–Fock solve for ``point`` (warm-starting from ``warm`` when given: the result
    files of the converged chain predecessors, oldest first, at most two — with two the start is
    their linear extrapolation in U), write the result to the path ``out`` and return its summary
    (keys in :data:`SUMMARY_KEYS`, plus ``branch`` and ``energy_margin`` when it selects among
    several starts: :data:`moireu.data.schema.HF_GROUND_FIELDS`);
``solve_from(cfg, point, start, out) -> dict``
    one solve of ``point`` started from the result file ``start`` of another point (a step of the
    sweeps in U that carry the lowest state found across the grid, :func:`moireu.data.jobs.sweep_task`);
    writes ``out`` and returns the summary (:data:`SUMMARY_KEYS`);
``render(cfg, point, result, specs) -> Rendered``
    load the result file and return the images of ``specs``: one fresh simulated acquisition per
    image (:mod:`moireu.stm.measure`), aligned to the training frame (:mod:`moireu.stm.align`),
    with the per-image scan columns and the per-atom LDOS it used.

:class:`PhysicsBackend` implements them with :mod:`moireu.hf` and :mod:`moireu.stm`; tests inject
cheap backends with the same methods to exercise scheduling, crash safety and the store.
Backends are pickled to dask workers, so they must be importable (or pickled by value) there.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from moireu.config import MoireuConfig
from moireu.data.plan import ImageSpec, SolvePoint

#: Keys every backend ``solve`` returns (order parameters are those of the store contract).
SUMMARY_KEYS = ("converged", "iterations", "seconds", "fermi_level_eV", "max_moment",
                "staggered_moment", "charge_spread", "total_energy", "gap")


@dataclass
class Rendered:
    """Images of one solve point, in the order of the ``specs`` they were asked for.

    Attributes
    ----------
    images : (n, ny, nx) float32
    kx, ky : (nx,), (ny,) float64, Å⁻¹
    params : dict of (n,) float64 arrays — the per-image columns of the store contract
        (``scan_*`` of :meth:`moireu.stm.measure.ScanParams.columns`, ``measured_twist_deg``, ``align_quality``)
    transform : dict — the image transform (``moireu.stm.ImageTransform.to_dict()``): stored as the
        store's ``image_transform`` attribute, from which user maps are put on the training window
    info : dict — how the weights were made (LDOS broadening, k-mesh, measurement ranges), stored as ``rendering``
    ldos : (n_bias, N) float64 or None — the per-atom LDOS at ``biases`` (spin sum), rendered into the images
    biases : (n_bias,) float64 or None — eV from E_F, the rows of ``ldos``
    geometry : dict or None — the moiré cell, keys of :data:`moireu.data.schema.LDOS_GEOMETRY`: ``atom_xyz`` (N, 3) Å,
        ``atom_layer``, ``atom_sublattice`` (N,), ``cell`` (2, 2) Å
    """

    images: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)
    transform: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    ldos: np.ndarray | None = None
    biases: np.ndarray | None = None
    geometry: dict[str, np.ndarray] | None = None


class Backend(Protocol):
    """The compute a dataset build needs (see the module docstring)."""

    def solve(self, cfg: MoireuConfig, point: SolvePoint, warm: Sequence[Path] | None,
              hf_overrides: dict[str, Any], out: Path) -> dict[str, Any]: ...

    def solve_from(self, cfg: MoireuConfig, point: SolvePoint, start: Path, out: Path) -> dict[str, Any]: ...

    def render(self, cfg: MoireuConfig, point: SolvePoint, result: Path,
               specs: Sequence[ImageSpec]) -> Rendered: ...


def retry_overrides(cfg: MoireuConfig) -> dict[str, Any]:
    """The HF settings of the single retry of a failed or unconverged point.

    Another mixer: plain linear mixing with a small weight (≤ 0.1) when the configured mixer is
    Anderson/Broyden (robust where quasi-Newton mixing oscillates), Anderson when it was linear;
    twice the iteration budget; started from the configured initial state, not from a neighbour.
    """
    hf = cfg.hf
    if hf.mixer == "linear":
        mix = {"mixer": "anderson", "mixing_weight": hf.mixing_weight}
    else:
        mix = {"mixer": "linear", "mixing_weight": min(0.1, hf.mixing_weight)}
    return mix | {"max_iter": 2 * hf.max_iter}


def replace_path(tmp: Path, final: Path) -> None:
    """Atomically move ``tmp`` (file or directory) onto ``final``."""
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)


# ------------------------------------------------------------------------------------------------
# the real backend


def _summary(res: Any) -> dict[str, Any]:
    """The :data:`SUMMARY_KEYS` of an ``HFResult`` as plain floats."""
    summ = res.summary()
    return {"converged": bool(res.converged), "iterations": int(res.iterations), "seconds": float(summ["seconds"]),
            "fermi_level_eV": float(summ["fermi_level_eV"]), "max_moment": float(summ["max_moment"]),
            "staggered_moment": float(summ["staggered_moment"]), "charge_spread": float(summ["charge_spread"]),
            "total_energy": float(res.total_energy), "gap": float(res.gap)}


_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()
_ANCHOR_LOCK = threading.Lock()
#: HDF5 (under netCDF4) is not thread-safe: serialise result I/O between threads of one worker
_IO_LOCK = threading.RLock()


class PhysicsBackend:
    """HF solves with :class:`moireu.hf.HFSystem` and FT-LDOS images with :mod:`moireu.stm`.

    The TBG model and the HF system (Coulomb kernels) are built once per worker process and
    cached by the fingerprint of the ``lattice`` and ``hf`` sections.
    """

    def system(self, cfg: MoireuConfig) -> Any:
        """The (cached) ``HFSystem`` of ``cfg``."""
        key = cfg.fingerprint("lattice", "hf")
        with _LOCK:
            if key not in _CACHE:
                from moireu.hf.driver import system_from_config

                _CACHE[key] = system_from_config(cfg)
            return _CACHE[key]

    def nonmagnetic_anchor(self, cfg: MoireuConfig, filling: float) -> Any:
        """The (cached) spin-averaged U = 0 solution at ``filling`` (:func:`moireu.hf.ground.nonmagnetic_anchor`):
        solved once per worker process — the same deterministic solve on every worker."""
        from moireu.hf.driver import solve_kwargs
        from moireu.hf.ground import nonmagnetic_anchor

        key = (cfg.fingerprint("lattice", "hf"), float(filling), "nonmagnetic")
        system = self.system(cfg)
        with _ANCHOR_LOCK:  # one solve per process, however many threads ask
            if key not in _CACHE:
                _CACHE[key] = nonmagnetic_anchor(system.solve, **solve_kwargs(cfg, filling=filling))
            return _CACHE[key]

    def solve(self, cfg: MoireuConfig, point: SolvePoint, warm: Sequence[Path] | Path | None,
              hf_overrides: dict[str, Any], out: Path) -> dict[str, Any]:
        from moireu.data.schema import BRANCH_CODES
        from moireu.hf import HFResult
        from moireu.hf.driver import solve_kwargs
        from moireu.hf.ground import ground_state

        system = self.system(cfg)
        paths = [] if warm is None else [warm] if isinstance(warm, (str, Path)) else list(warm)
        with _IO_LOCK:
            # two converged predecessors: the solve starts from their extrapolation in U (run_scf)
            warm_res = [HFResult.load(w, system=system) for w in paths] or None
        # the lowest-energy solution over the configured candidate starts (moireu.hf.ground): the
        # state of a point does not depend on the chain it was solved in
        kw = solve_kwargs(cfg, U=point.U, filling=point.filling, warm_start=warm_res, **hf_overrides)
        anchor = self.nonmagnetic_anchor(cfg, point.filling) if "nonmagnetic" in cfg.dataset.ground_state else None
        res = ground_state(system.solve, candidates=cfg.dataset.ground_state, nonmagnetic_start=anchor, **kw)
        with _IO_LOCK:
            res.save(out)  # atomic (temporary sibling + rename)
        gs = res.meta["ground_state"]
        return _summary(res) | {"branch": BRANCH_CODES[gs["branch"]], "energy_margin": float(gs["energy_margin"])}

    def solve_from(self, cfg: MoireuConfig, point: SolvePoint, start: Path, out: Path) -> dict[str, Any]:
        """One solve of ``point`` from the state in ``start`` (another point's result file)."""
        from moireu.hf import HFResult
        from moireu.hf.driver import solve_kwargs

        system = self.system(cfg)
        with _IO_LOCK:
            start_res = HFResult.load(start, system=system)
        res = system.solve(**solve_kwargs(cfg, U=point.U, filling=point.filling, warm_start=start_res))
        with _IO_LOCK:
            res.save(out)
        return _summary(res)

    def render(self, cfg: MoireuConfig, point: SolvePoint, result: Path,
               specs: Sequence[ImageSpec]) -> Rendered:
        from moireu.hf import HFResult
        from moireu.stm import ldos_at

        system = self.system(cfg)
        with _IO_LOCK:
            res = HFResult.load(result, system=system)
        st = cfg.stm
        biases = sorted({s.bias for s in specs})
        # unconverged solutions are rendered too: the store flags them (hf_converged = False)
        ldos = np.asarray(ldos_at(system, res, biases=biases, eta=st.eta, kind=st.broadening,
                                  kmesh=st.kmesh, allow_unconverged=True))
        model = system.model
        geometry = {"atom_xyz": np.asarray(model.positions, float), "cell": np.asarray(model.cell, float),
                    "atom_layer": np.asarray(model.layer, np.int8),
                    "atom_sublattice": np.asarray(model.sublattice, np.int8)}
        return render_images(cfg, point, ldos, biases, geometry, specs)


def render_images(cfg: MoireuConfig, point: SolvePoint, ldos: np.ndarray, biases: Sequence[float],
                  geometry: dict[str, np.ndarray], specs: Sequence[ImageSpec]) -> Rendered:
    """The images of ``specs`` from the per-atom LDOS (spin sum, rows = ``biases``) on the cell ``geometry``:
    one fresh simulated acquisition per image (:mod:`moireu.stm.measure`), aligned to the training frame."""
    from moireu.data.plan import dataset_seed, point_hash
    from moireu.stm import ImageTransform
    from moireu.stm.geometry import CellGeometry
    from moireu.stm.measure import MeasurementSpec, acquire, draw_scan, scan_rng

    st = cfg.stm
    row = {b: i for i, b in enumerate(biases)}
    geom = CellGeometry.of(geometry)
    transform = ImageTransform.from_config(st, geom=geom)
    spec = MeasurementSpec.from_config(st, geom.cell)
    seed, ph = dataset_seed(cfg), point_hash(point)
    cfg_biases = np.asarray(cfg.dataset.biases, float)
    imgs: list[np.ndarray] = []
    params: dict[str, list[float]] = {}
    for s in specs:
        bias_index = int(np.argmin(np.abs(cfg_biases - s.bias)))
        scan = draw_scan(scan_rng(seed, ph, bias_index, s.variation.id), spec)
        img, cols = acquire(geom, ldos[row[s.bias]], scan, transform)
        imgs.append(img)
        for k, v in cols.items():
            params.setdefault(k, []).append(float(v))
    kx, ky = transform.window.axes(transform.n_pixels)
    info_d = {"ldos_eta": st.eta, "ldos_broadening": st.broadening, "ldos_kmesh": list(st.kmesh),
              "bias_reference": "E_F of each HF solution",
              "measurement": st.measurement.model_dump(mode="json") | {"map_pixels": st.map_pixels,
                                                                       "tip_height": st.tip_height},
              "scan_seed": "SeedSequence([dataset seed, 7, point hash, bias index, variation])"}
    return Rendered(np.stack(imgs), kx, ky, {k: np.asarray(v) for k, v in params.items()},
                    transform.to_dict(), info_d, np.asarray(ldos, float), np.asarray(biases, float), geometry)


class StatesBackend(PhysicsBackend):
    """Points from a states file (:mod:`moireu.data.states`): no Hartree–Fock where the file holds the U.

    ``solve`` of a stored point writes its restart data and returns its stored summary; a point off the
    file is solved by the rule of :mod:`moireu.data.ladder` (its two ladder neighbours' states and the
    cold candidates, lowest kept). ``render`` of a stored point takes the stored per-atom LDOS and
    geometry; the images themselves are made exactly as :class:`PhysicsBackend` makes them.
    The file is verified and checked against the configuration once per worker process.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)

    def states(self, cfg: MoireuConfig) -> Any:
        from moireu.data.states import States

        key = (self.path, "states")
        with _LOCK:
            if key not in _CACHE:
                st = States.load(self.path)
                st.check(cfg)
                _CACHE[key] = st
            return _CACHE[key]

    def solve(self, cfg: MoireuConfig, point: SolvePoint, warm: Sequence[Path] | Path | None,
              hf_overrides: dict[str, Any], out: Path) -> dict[str, Any]:
        from moireu.data.ladder import solve_point
        from moireu.data.schema import BRANCH_CODES, NEIGHBOURS

        st = self.states(cfg)
        p = st.get(point.U, point.filling)
        if p is None:
            below, above = st.neighbours(point.U, point.filling)
            starts = tuple((NEIGHBOURS[side], st.result(q.U, point.filling))
                           for side, q in (("below", below), ("above", above)) if q is not None)
            got = solve_point(cfg, point.U, point.filling, candidates=cfg.states.candidates, starts=starts)
            p = got["point"]
            if p is None:
                raise RuntimeError(f"no start converged at U = {point.U:g} (from the states' neighbours and "
                                   f"{', '.join(cfg.states.candidates)})")
            p.kind = "extra"
            with _LOCK:
                _CACHE[(self.path, "solved", point.U, point.filling)] = p
            seconds = got["seconds"]
        else:
            seconds = 0.0
        from moireu.data.states import States

        res = States(st.attrs, st.geometry, st.biases, [p], st.path).result(p.U, p.filling)
        with _IO_LOCK:
            res.save(out)
        s = p.scalars
        return {"converged": p.converged, "iterations": int(s["iterations"]), "seconds": seconds,
                "fermi_level_eV": s["fermi_level"], "max_moment": s["max_moment"],
                "staggered_moment": s["staggered_moment"], "charge_spread": s["charge_spread"],
                "total_energy": s["total_energy"], "gap": s["gap"], "branch": BRANCH_CODES.get(p.branch, -1),
                "energy_margin": s["energy_margin"]}

    def render(self, cfg: MoireuConfig, point: SolvePoint, result: Path,
               specs: Sequence[ImageSpec]) -> Rendered:
        st = self.states(cfg)
        p = st.get(point.U, point.filling) or _CACHE.get((self.path, "solved", point.U, point.filling))
        if p is None:  # solved in another process: the LDOS from its result file
            return PhysicsBackend.render(self, cfg, point, result, specs)
        biases = sorted({s.bias for s in specs})
        from moireu.data.states import States

        ldos = States(st.attrs, st.geometry, st.biases, [p], st.path).ldos(p.U, p.filling, biases)
        return render_images(cfg, point, ldos, biases, st.geometry, specs)
