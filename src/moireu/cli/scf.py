"""``moireu scf`` (one Hartree–Fock solve) and ``moireu sweep`` (warm-started U sweep)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, JsonOpt, PresetOpt, SetOpt, emit_json, info, prepare_run_dir, resolve

KeepOpt = typer.Option(False, "--keep-unconverged", help="keep an unconverged result and exit 0")


class _Log:
    """Progress lines on stderr and, appended with a UTC time stamp, in ``OUT/<name>.log``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        info(msg)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {msg}\n")

    def iteration(self, d: dict) -> None:
        self(f"  it {d['iteration']:4d}  residual {d['residual']:.3e}  E {d['energy']:.8f} eV  "
             f"dE {d['dE']:.2e}  μ {d['mu']:+.5f} eV  max|m| {d['max_moment']:.4f}  "
             f"restarts {d.get('restarts', 0)}  {d['seconds']:.1f}s")


def _prepare(system, cfg, log: _Log, t0: float) -> None:
    """The work between building the system and iteration 1, with a line for each step."""
    log(f"  built system: {system.n_orb} orbitals, {len(system.k_frac)} k-points, {system.n_pair} exchange pairs, "
        f"terms {', '.join(t.name for t in system.terms)} ({time.perf_counter() - t0:.1f}s)")
    t1 = time.perf_counter()
    _ = system.hk_mesh
    log(f"  TB Bloch Hamiltonians on the mesh ({time.perf_counter() - t1:.1f}s)")
    t1 = time.perf_counter()
    _, mu0 = system.reference(cfg.hf.kT)
    log(f"  reference state ρ⁰ (non-interacting, neutral): μ⁰ = {mu0:+.5f} eV ({time.perf_counter() - t1:.1f}s)")
    log(f"  seed {cfg.hf.init} (amplitude {cfg.hf.init_amplitude}), {cfg.hf.mixer} mixing "
        f"(weight {cfg.hf.mixing_weight}, history {cfg.hf.mixing_history}); iterating")


def scf_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(Path("runs/scf"), "--out", "-o", help="output directory"),
    json_: bool = JsonOpt,
    force: bool = ForceOpt,
    keep_unconverged: bool = KeepOpt,
    resume: bool = typer.Option(True, "--resume/--no-resume", help="resume from OUT/checkpoint.nc if present"),
) -> None:
    """One self-consistent HF solve at hf.U, hf.filling; writes OUT/hf_result.nc and OUT/summary.json."""
    from moireu.hf.driver import solve_kwargs, system_from_config
    from moireu.provenance import provenance, write_json_atomic

    cfg = resolve(preset, config, set_)
    out = prepare_run_dir(out, cfg, "hf_result.nc", force=force)
    ckpt = out / "checkpoint.nc"
    if not resume:
        ckpt.unlink(missing_ok=True)
    t0 = time.perf_counter()
    log = _Log(out / "scf.log")
    log(f"HF: TBG i={cfg.lattice.index}, U={cfg.hf.U} eV, ν={cfg.hf.filling}, kT={cfg.hf.kT} eV, "
        f"k-mesh {list(cfg.hf.kmesh)}, ε={cfg.hf.eps}, long-range={cfg.hf.long_range}")
    system = system_from_config(cfg)
    _prepare(system, cfg, log, t0)
    if ckpt.exists():
        log(f"  resuming from {ckpt}")
    res = system.solve(progress=log.iteration, checkpoint=ckpt, **solve_kwargs(cfg))
    res.seconds = time.perf_counter() - t0
    summary = res.summary() | {"seconds": res.seconds}
    if res.converged or keep_unconverged:
        res.save(out / "hf_result.nc")
        ckpt.unlink(missing_ok=True)
        write_json_atomic(out / "summary.json", summary | {"provenance": provenance()})
    log(f"{'converged' if res.converged else 'NOT converged'} after {res.iterations} iterations "
        f"(residual {summary['residual']:.2e}); max moment {res.max_moment:.4f}, E_F {res.fermi_level:.5f} eV "
        f"(HOMO {summary['homo_eV']:.5f}, LUMO {summary['lumo_eV']:.5f}, gap {summary['gap_eV']:.4f} eV)")
    if json_:
        emit_json(summary)
    if not res.converged and not keep_unconverged:
        log(f"error: not converged; the state is kept in {ckpt} (rerun to resume, or --keep-unconverged)")
        raise SystemExit(1)


def sweep_cmd(
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    U: str = typer.Option("0:6:0.5", "--U", help="U values (eV): START:STOP:STEP (inclusive) or a comma list"),
    out: Path = typer.Option(Path("runs/hf"), "--out", "-o", help="output directory"),
    json_: bool = JsonOpt,
    force: bool = ForceOpt,
    keep_unconverged: bool = KeepOpt,
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", help="HF result (.nc) of the same system to "
                                              "start the first U from (e.g. to continue a sweep)"),
) -> None:
    """Warm-started U sweep; writes OUT/sweep.json, OUT/sweep.png and OUT/results/U_*.nc."""
    import numpy as np

    from moireu.hf.driver import parse_range, solve_kwargs, sweep_U, system_from_config
    from moireu.plot.hf import plot_sweep
    from moireu.provenance import provenance, write_json_atomic

    values = parse_range(U)
    cfg = resolve(preset, config, set_)
    out = prepare_run_dir(out, cfg, "sweep.json", force=force)
    t0 = time.perf_counter()
    log = _Log(out / "sweep.log")
    log(f"HF sweep: TBG i={cfg.lattice.index}, U = {values}")
    system = system_from_config(cfg)
    _prepare(system, cfg, log, t0)
    rows: list[dict] = []

    def on_point(u: float, res) -> None:
        s = res.summary()
        rows.append(s)
        # partial progress on disk after every point (complete: false until the sweep ends)
        write_json_atomic(out / "sweep.partial.json", {"U": values, "points": rows, "complete": False})
        log(f"U={u:5.2f} eV: {'ok ' if res.converged else 'NOT converged'} {res.iterations:4d} it, "
             f"{res.seconds:7.1f}s, max|m| {s['max_moment']:.4f}, staggered {s['staggered_moment']:.4f}, "
             f"charge spread {s['charge_spread']:.2e}")

    def prog(d: dict) -> None:
        if d["iteration"] % 10 == 0:
            log.iteration(d)

    start = None
    if warm_start is not None:
        from moireu.hf.result import HFResult

        start = HFResult.load(warm_start, system)
        system.check_compatible(start, f"--warm-start {str(warm_start)!r}")
        log(f"warm start from {warm_start} (U = {start.U:g} eV)")
    sweep_U(system, values, solve_kwargs(cfg), save_dir=out / "results", on_point=on_point, progress=prog,
            start=start)
    its = [r["iterations"] for r in rows]
    doc = {"U": values, "points": rows, "all_converged": all(r["converged"] for r in rows),
           "median_iterations": float(np.median(its)), "seconds": time.perf_counter() - t0,
           "system": system.describe(), "provenance": provenance()}
    plot_sweep(rows, out / "sweep.png", title=f"TBG i={cfg.lattice.index}, ν={cfg.hf.filling}, "
                                              f"k-mesh {list(cfg.hf.kmesh)}, ε={cfg.hf.eps}")
    write_json_atomic(out / "sweep.json", doc | {"complete": True})
    (out / "sweep.partial.json").unlink(missing_ok=True)
    log(f"wrote {out / 'sweep.json'}; median {doc['median_iterations']} iterations/point, "
         f"{doc['seconds']:.0f}s")
    if json_:
        emit_json({k: v for k, v in doc.items() if k not in ("system", "provenance")})
    if not doc["all_converged"] and not keep_unconverged:
        log("error: some points did not converge (see sweep.json); --keep-unconverged to accept")
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    app.command("scf")(scf_cmd)
    app.command("sweep")(sweep_cmd)
