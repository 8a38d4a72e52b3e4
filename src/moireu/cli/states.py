"""``moireu states build | info | verify``: the HF ground states of a preset on its U ladder (one file)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, JsonOpt, PresetOpt, SetOpt, emit_json, fail, info, resolve
from moireu.errors import InputError

states_app = typer.Typer(no_args_is_help=True, help="HF ground states on the preset's U ladder: build, inspect, verify.")

FileOpt = typer.Option(None, "--file", "-f", help="states file (default: the one shipped with the preset)")


def _path(file: Optional[Path], preset: str) -> Path:
    from moireu.data.states import shipped_states_path

    return Path(file) if file is not None else shipped_states_path(preset)


@states_app.command("build")
def build(
    preset: str = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="states file to write or continue (default: the "
                                       "preset's shipped file, moireu/presets/<preset>.states.nc)"),
    heldout: bool = typer.Option(True, "--heldout/--no-heldout", help="also solve the preset's held-out U "
                                 "(dataset.heldout, dataset.seed) off the ladder, so its store renders without HF"),
    extra: Optional[str] = typer.Option(None, "--extra", help="more U off the ladder, comma list (eV)"),
    sweeps: bool = typer.Option(True, "--sweeps/--no-sweeps", help="sweep the ladder up and down (off: cold rungs only)"),
    max_points: Optional[int] = typer.Option(None, "--max-points", help="stop after this many new cold rungs"),
    resweep: bool = typer.Option(False, "--resweep", help="sweep every rung again from its neighbours' stored "
                                 "states (forgetting which it was tried from), until no rung changes"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of a running dask scheduler"),
    workers: int = typer.Option(0, "--workers", "-w", help="LocalCluster workers (0 = one per core)"),
    recompute: bool = typer.Option(False, "--recompute", help="start from scratch, replacing the file"),
    as_json: bool = JsonOpt,
) -> None:
    """Cold candidates at every rung, then sweeps up and down until no rung changes; resumable rung by rung."""
    cfg = resolve(preset, config, set_)
    if workers < 0:
        raise InputError(f"--workers must be ≥ 0 (0 = one per core), got {workers}")
    from moireu.data.ladder import build_states
    from moireu.data.plan import heldout_values

    extras: list[float] = []
    if extra:
        try:
            extras += [float(x) for x in extra.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--extra must be a comma list of U values in eV, got {extra!r}") from None
    if heldout and cfg.dataset.heldout:
        extras += heldout_values(cfg).tolist()
    path = Path(out) if out is not None else _path(None, cfg.preset)
    rep = build_states(cfg, path, scheduler=scheduler, workers=workers, extras=extras, recompute=recompute,
                       sweeps=sweeps, max_points=max_points, resweep=resweep)
    d = rep.to_dict()
    info(f"states {path}: {d['cold_solved']} cold rung(s), {d['sweep_steps']} sweep step(s) "
         f"({d['sweep_lowered']} lowered), {d['extras_solved']} off-ladder point(s) in {d['seconds']:.0f} s; "
         f"sweeps {'converged' if d['sweeps_converged'] else 'not converged'}")
    for f in d["failed"]:
        info(f"  FAILED {f}")
    if as_json:
        emit_json(d)
    if d["failed"]:
        raise typer.Exit(1)


@states_app.command("info")
def info_cmd(preset: str = PresetOpt, file: Optional[Path] = FileOpt, as_json: bool = JsonOpt) -> None:
    """Ladder, rungs done, branch / energy margin / order parameters per rung, fingerprint and commit."""
    from moireu.data.states import States

    st = States.load(_path(file, preset))
    d = st.info()
    d["cost"] = cost_summary(st)
    if as_json:
        emit_json(d)
        return
    info(f"states {d['file']} (preset {d['preset']}, fingerprint {d['fingerprint']}, {d['n_atoms']} atoms, "
         f"biases {d['biases_meV']} meV)")
    for nu, r in d["rungs"].items():
        info(f"  ν = {nu}: {len(r['done'])} of {len(d['ladder'])} rungs done"
             + (f"; missing {r['missing']}" if r["missing"] else ""))
    sw = d.get("sweeps") or {}
    info(f"  sweeps: {sw.get('passes', 0)} pass(es), {'converged' if sw.get('converged') else 'not converged'}")
    c = d["cost"]
    if c.get("per_point_cold_units") is not None:
        info(f"  cost per ladder point: {c['per_point_cold_units']:.2f} cold solves (one cold solve "
             f"{c['cold_solve_seconds']:.1f} s)")
    info("  kind    U (eV)  branch        E − E(U=0 ladder) (meV)  margin (meV)  max m   stagg m  gap (meV)")
    e0 = next((p["total_energy"] for p in d["points"] if p["kind"] == "ladder"), 0.0)
    for p in d["points"]:
        m = p["energy_margin"]
        info(f"  {p['kind']:<7} {p['U']:6.3f}  {p['branch']:<12} {1e3 * (p['total_energy'] - e0):12.2f}"
             f"{'' if m is None else f'{1e3 * m:18.2f}':>18}  {p['max_moment']:.4f}  {p['staggered_moment']:.4f}"
             f"  {1e3 * p['gap']:8.2f}{'  !' if p['unresolved'] else ''}")
    for p in d["points"]:
        if p["unresolved"]:
            u = p["unresolved"]
            info(f"  ! U = {p['U']:.3f}: the {u['candidate']} start stopped unconverged after {u['iterations']} "
                 f"iterations {-u['below_meV']:.2f} meV below the stored state (max moment {u['max_moment']:.4f}): "
                 "the stored state is the lowest converged one, not certified as the HF ground state")
    for c in d["concavity"]:
        info(f"  ! U = {c['U']:.3f} lies {-c['below_chord_meV']:.2f} meV below the chord of its neighbours "
             f"{c['neighbours'][0]:g} and {c['neighbours'][1]:g} eV: E_HF(U) is concave, so a neighbour does not hold "
             "the lowest state")
    prov = d.get("provenance") or {}
    info(f"  written {prov.get('created')} at commit {prov.get('git_commit')}")


def cost_summary(st: "object") -> dict:
    """Seconds of one cold candidate solve (median) and the cost per ladder point in those units."""
    import numpy as np

    colds, per = [], []
    for p in st.points("ladder"):  # type: ignore[attr-defined]
        c = p.record.get("candidates", {})
        colds += [v["seconds"] for k, v in c.items() if k in ("seed", "ferro", "nonmagnetic", "reference")]
        cost = p.record.get("cost") or {}
        per.append(sum(v for k, v in cost.items() if k.endswith("_seconds") and "cpu" not in k))
    if not colds:
        return {"cold_solve_seconds": None, "per_point_cold_units": None}
    unit = float(np.median(colds))
    return {"cold_solve_seconds": unit, "per_point_cold_units": float(np.mean(per)) / unit if per else None,
            "points": len(per)}


def cheapest_rung(st: "object", filling: float = 0.0) -> float:
    """The stored ladder rung whose recomputation costs least (a sweep-carried rung: one solve from its
    neighbour; else the cold rung of the fewest solve seconds), among the rungs ``states info`` does not
    flag: an unresolved rung, or one in a concavity triple, sits where the SCF is fragile, and a check of
    the file must not hinge on it."""
    from moireu.data.schema import SWEEPS

    flagged = {p.U for p in st.points("ladder") if p.unresolved is not None}  # type: ignore[attr-defined]
    for c in st.concavity(filling):  # type: ignore[attr-defined]
        flagged |= {c["U"], *c["neighbours"]}
    rungs = [p for p in st.points("ladder") if p.filling == filling]  # type: ignore[attr-defined]
    rungs = [p for p in rungs if p.U not in flagged] or rungs
    if not rungs:
        raise InputError("the states file holds no ladder rung to verify")

    def cost(p: "object") -> tuple[int, float]:
        c = p.record.get("candidates", {})  # type: ignore[attr-defined]
        if p.branch in SWEEPS.values():  # type: ignore[attr-defined]
            return (0, float(c.get(p.branch, {}).get("seconds", 0.0)))  # type: ignore[attr-defined]
        return (1, sum(float(v.get("seconds", 0.0)) for v in c.values()))

    return min(rungs, key=cost).U  # type: ignore[attr-defined]


@states_app.command("verify")
def verify(
    preset: str = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    file: Optional[Path] = FileOpt,
    U: Optional[float] = typer.Option(None, "--U", help="the stored point to recompute (eV; default: the "
                                      "ladder rung that was cheapest to find)"),
    filling: float = typer.Option(0.0, "--filling"),
    as_json: bool = JsonOpt,
) -> None:
    """Recompute one stored point from scratch and compare (energy ≤ 1e-6 eV, per-atom LDOS ≤ 1e-6 relative,
    same branch); exit 1 when it disagrees."""
    cfg = resolve(preset, config, set_)
    from moireu.data.states import States
    from moireu.data.verify import recompute_point

    st = States.load(_path(file, cfg.preset))
    st.check(cfg)
    if U is None:
        U = cheapest_rung(st, filling)
    rep = recompute_point(cfg, st, U, filling)
    info(f"states: U = {U:g} recomputed ({rep['how']}): ΔE = {rep['energy_diff_eV']:.2e} eV, "
         f"LDOS max relative difference {rep['ldos_rel_diff']:.2e}, branch {rep['branch']} "
         f"(stored {rep['stored_branch']}) in {rep['seconds']:.0f} s — {'agrees' if rep['ok'] else 'DISAGREES'}")
    if as_json:
        emit_json(rep)
    if not rep["ok"]:
        fail(f"the recomputed state at U = {U:g} disagrees with the stored one: {rep['why']}", 1)


def register(app: typer.Typer) -> None:
    app.add_typer(states_app, name="states")
