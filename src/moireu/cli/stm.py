"""``moireu stm RESULT``: LDOS maps, FT-LDOS images and figures of a Hartree–Fock result."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from moireu.cli.common import ConfigOpt, ForceOpt, JsonOpt, SetOpt, emit_json, info, prepare_run_dir, preset_name


def _config_for_result(res, preset: Optional[str], config: Optional[Path], overrides: Optional[List[str]]):
    """The result's own stored config (lattice/hf must match it) → --config file → --set overrides.

    Without a stored config the preset is the base.
    """
    from moireu.config import _deep_update, apply_override, build_config, preset_dict, read_toml

    preset = preset_name(preset)
    stored = res.meta.get("config") if isinstance(res.meta, dict) else None
    if isinstance(stored, str):
        import json

        stored = json.loads(stored)
    raw = dict(stored) if isinstance(stored, dict) else preset_dict(preset or "demo")
    if not isinstance(stored, dict):
        raw.setdefault("preset", preset or "demo")
    if config:
        raw = _deep_update(raw, read_toml(config))
    for o in overrides or []:
        raw = apply_override(raw, o)
    return build_config(raw)


def _tag(bias_ev: float) -> str:
    return f"{1e3 * bias_ev:+.3f}meV".replace("+", "p").replace("-", "m").replace(".", "_")


def stm_cmd(
    result: Path = typer.Argument(..., help="HF result file (NetCDF written by `moireu scf`)"),
    bias: Optional[str] = typer.Option(None, "--bias", "-b",
                                       help="biases from E_F in meV, comma-separated (e.g. 0,2,4 = 0, 2, 4 meV); "
                                            "default: stm.biases of the config (stored in eV)"),
    out: Path = typer.Option(Path("runs/stm"), "--out", "-o", help="output directory"),
    offset: str = typer.Option("0,0", "--offset", help="sample point 'x,y' (Å) under the centre of the scan frame"),
    rotation: float = typer.Option(0.0, "--rotation", help="rotation of the scan frame (degrees)"),
    allow_unconverged: bool = typer.Option(False, "--allow-unconverged",
                                           help="simulate even if the HF solve did not converge"),
    preset: Optional[str] = typer.Option("demo", "--preset", "-p",
                                         help="preset used only when RESULT stores no config"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    json_: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """LDOS at E_F + bias, the simulated STM map of one nominal scan and its aligned FT-LDOS image(s).

    The map and image go through the measurement model of the training set and of `moireu predict`
    (moireu.stm.measure, moireu.stm.align). Writes ldos.nc (per-atom, per-spin LDOS), ldos_map.nc
    (maps, Å), ftldos.nc (float32 FT-LDOS images, k in Å⁻¹, options in attributes),
    ftldos_<bias>.npy, map_<bias>.npy + map_<bias>.npy.json (the map and its pixel size: a valid
    `moireu predict` input), stm_<bias>.png (map + FT with Bragg and moiré peaks) and stm.json.
    Sizes come from the [stm] config section: e.g. --set stm.n_pixels=256 --set stm.map_pixels=384.
    A finished run in --out is kept unless --force (also with --json).
    """
    import numpy as np
    import xarray as xr

    from moireu.errors import InputError
    from moireu.hf import HFResult
    from moireu.hf.driver import system_from_config
    from moireu.provenance import atomic_path, provenance, write_json_atomic
    from moireu.plot.stm import stm_figure
    from moireu.stm.simulate import parse_biases_mev, simulate_stm

    res = HFResult.load(result)
    if not res.converged and not allow_unconverged:
        raise InputError(f"HF result {str(result)!r} did not converge ({res.iterations} iterations); "
                         "refusing to simulate STM from it (use --allow-unconverged to override)")
    cfg = _config_for_result(res, preset, config, set_)
    try:
        ox, oy = (float(v) for v in offset.split(","))
    except ValueError:
        raise InputError(f"--offset expects 'x,y' in Å, got {offset!r}") from None
    biases = parse_biases_mev(bias) if bias is not None else list(cfg.stm.biases)
    out = prepare_run_dir(out, cfg, "stm.json", force=force,
                          extra={"hf_result": str(result)})
    system = system_from_config(cfg)
    lat, model = cfg.lattice, system.model
    system.check_compatible(res, what=f"HF result {str(result)!r}")
    st = cfg.stm
    info(f"STM: U={res.U} eV, ν={res.filling}, biases {[round(1e3 * b, 4) for b in biases]} meV, "
         f"η={1e3 * st.eta:g} meV ({st.broadening}), k-mesh {st.kmesh}, {st.map_pixels}² map, N={st.n_pixels}")
    sim = simulate_stm(system, res, st, biases, offset=(ox, oy), rotation_deg=rotation,
                       allow_unconverged=allow_unconverged, extra_attrs={"seed": cfg.seed, "source": str(result)})
    prov = provenance()
    ldos = xr.Dataset(
        {"ldos": (("bias", "spin", "atom"), sim.ldos),
         "x": (("atom",), model.positions[:, 0]), "y": (("atom",), model.positions[:, 1]),
         "layer": (("atom",), np.asarray(model.layer, np.int8)),
         "sublattice": (("atom",), np.asarray(model.sublattice, np.int8))},
        coords={"bias": ("bias", sim.biases, {"units": "eV from E_F"}), "spin": ["up", "down"]},
        attrs={"units": "states/eV/atom", "cell": np.asarray(model.cell).ravel().tolist(),
               "git_commit": prov["git_commit"], "moireu_version": prov["moireu_version"]}
        | {k: v for k, v in sim.images[0].attrs.items() if k in ("U", "filling", "eta", "broadening", "fermi_level")})
    maps = xr.concat(sim.maps, dim=xr.DataArray(sim.biases, dims="bias", name="bias"), combine_attrs="drop_conflicts")
    imgs = xr.concat(sim.images, dim=xr.DataArray(sim.biases, dims="bias", name="bias"), combine_attrs="drop_conflicts")
    for obj, name in ((ldos, "ldos.nc"), (maps.to_dataset(name="ldos_map"), "ldos_map.nc"),
                      (imgs.to_dataset(name="ftldos"), "ftldos.nc")):
        with atomic_path(out / name) as tmp:
            obj.to_netcdf(tmp, engine="netcdf4")
    files = []
    for b, m, img in zip(sim.biases, sim.maps, sim.images):
        tag = _tag(b)
        for name, arr in ((f"ftldos_{tag}.npy", img.values.astype(np.float32)), (f"map_{tag}.npy", m.values)):
            with atomic_path(out / name) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
        write_json_atomic(out / f"map_{tag}.npy.json", {"pixel_size": float(sim.scan.pixel_size), "bias_eV": float(b),
                                                         "U_eV": float(res.U), "source": str(result)})
        title = (f"TBG i={lat.index} θ={model.theta_deg:.3f}°, U={res.U:g} eV, ν={res.filling:g}, "
                 f"bias={1e3 * b:g} meV, η={1e3 * st.eta:g} meV, {st.map_pixels}² map of {sim.scan.pixel_size:g} Å")
        stm_figure(m, img, sim.peaks, out / f"stm_{tag}.png", title)
        files += [f"ftldos_{tag}.npy", f"map_{tag}.npy", f"map_{tag}.npy.json", f"stm_{tag}.png"]
    summary = {"result": str(result), "U": float(res.U), "filling": float(res.filling),
               "fermi_level_eV": float(res.fermi_level), "hf_converged": bool(res.converged),
               "biases_eV": sim.biases.tolist(), "n_pixels": st.n_pixels, "scan": sim.scan.to_dict(),
               "align": [a.to_dict() for a in sim.align], "offset": [ox, oy], "rotation_deg": rotation,
               "image_transform": sim.transform.to_dict(),
               "n_bragg_peaks": int(len(sim.peaks["bragg"])), "n_moire_peaks": int(len(sim.peaks["moire"])),
               "files": ["ldos.nc", "ldos_map.nc", "ftldos.nc"] + files, "provenance": prov}
    write_json_atomic(out / "stm.json", summary)
    info(f"wrote {len(sim.biases)} FT-LDOS image(s) and figures to {out}")
    if json_:
        emit_json(summary)


def register(app: typer.Typer) -> None:
    app.command("stm")(stm_cmd)
