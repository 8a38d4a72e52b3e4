"""``moireu stm`` end to end on a tiny HF result (TBG i = 2, 76 atoms)."""

import json

import numpy as np
import pytest
import xarray as xr

from moireu.errors import InputError

SETS = ["lattice.index=2", "hf.kmesh=[2,2]", "stm.kmesh=[2,2]", "stm.patch_cells=3", "stm.n_pixels=16",
        "stm.map_pixels=80"]


@pytest.fixture(scope="module")
def hf_results(tmp_path_factory):
    from moireu.config import load_config
    from moireu.hf import CoulombParams, HFSystem
    from moireu.lattice import build_tbg

    cfg = load_config("demo", None, SETS)
    lat, hf = cfg.lattice, cfg.hf
    model = build_tbg(lat.index, lat.interlayer_distance, lat.cutoff)
    system = HFSystem(model, kmesh=hf.kmesh, coulomb=CoulombParams(eps=hf.eps, gate_distance=hf.gate_distance,
                                                                    fock_range=hf.fock_range, long_range=hf.long_range))
    d = tmp_path_factory.mktemp("hf")
    good = system.solve(U=2.0, filling=0.0, kT=hf.kT, config=cfg.to_dict())
    assert good.converged
    good.save(d / "good.nc")
    bad = system.solve(U=2.0, filling=0.0, kT=hf.kT, max_iter=1, config=cfg.to_dict())
    assert not bad.converged
    bad.save(d / "bad.nc")
    return d


def _run(args):
    from typer.testing import CliRunner

    from moireu.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=True)


def test_stm_command_writes_images(hf_results, tmp_path):
    out = tmp_path / "stm"
    r = _run(["stm", str(hf_results / "good.nc"), "--bias", "0,2", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "stm.json").read_text())
    assert s["biases_eV"] == [0.0, 0.002] and s["n_pixels"] == 16
    # θ = 13.2°: two of the rotated layer's six first-shell peaks fall just outside the window
    assert s["n_bragg_peaks"] == 10 and s["scan"]["pixels"] == 80
    assert all(a["in_range"] and abs(a["twist_deg"] - 13.17) < 0.1 for a in s["align"])
    # a finished run is kept, also with --json, unless --force
    r = _run(["stm", str(hf_results / "good.nc"), "--bias", "0", "--out", str(out), "--json"])
    assert isinstance(r.exception, InputError) and "--force" in str(r.exception)
    assert json.loads((out / "stm.json").read_text())["biases_eV"] == [0.0, 0.002]
    # the written map + sidecar is a predict input that gives back the stored image
    from moireu.stm import ImageTransform, user_map_image

    back, _ = user_map_image(out / "map_p0_000meV.npy", ImageTransform.from_dict(s["image_transform"]))
    np.testing.assert_allclose(back.values, np.load(out / "ftldos_p0_000meV.npy"), atol=1e-4)
    with xr.open_dataset(out / "ftldos.nc") as ds:
        img = ds["ftldos"].load()
    assert img.dims == ("bias", "ky", "kx") and img.dtype == np.float32 and img.shape == (2, 16, 16)
    assert img.attrs["normalize"] == "zscore" and json.loads(img.attrs["image_transform"])["n_pixels"] == 16
    assert np.allclose(img.kx.max(), 1.1 * 2 * np.pi / 2.46)
    with xr.open_dataset(out / "ldos.nc") as ds:
        ldos = ds["ldos"].load()
    assert ldos.shape == (2, 2, 76) and float(ldos.min()) >= 0
    npy = np.load(out / "ftldos_p0_000meV.npy")
    np.testing.assert_array_equal(npy, img.sel(bias=0.0).values)
    assert (out / "stm_p2_000meV.png").stat().st_size > 1000 and (out / "ldos_map.nc").is_file()


def test_stm_command_refusals(hf_results, tmp_path):
    r = _run(["stm", str(hf_results / "bad.nc"), "--out", str(tmp_path / "a")])
    assert isinstance(r.exception, InputError) and "did not converge" in str(r.exception)
    r = _run(["stm", str(hf_results / "bad.nc"), "--out", str(tmp_path / "b"), "--allow-unconverged",
              "--bias", "0"])
    assert r.exit_code == 0, r.output
    r = _run(["stm", str(hf_results / "good.nc"), "--out", str(tmp_path / "c"), "--bias", "90000"])
    assert isinstance(r.exception, InputError) and "outside the computed spectrum" in str(r.exception)
    r = _run(["stm", str(hf_results / "good.nc"), "--out", str(tmp_path / "d"), "--set", "stm.n_pixels=4"])
    assert isinstance(r.exception, InputError) and "stm.n_pixels" in str(r.exception)
    r = _run(["stm", str(hf_results / "good.nc"), "--out", str(tmp_path / "e"), "--set", "stm.map_pixels=4"])
    assert isinstance(r.exception, InputError) and "stm.map_pixels" in str(r.exception)
    r = _run(["stm", str(hf_results / "good.nc"), "--out", str(tmp_path / "f"), "--bias", "zero"])
    assert isinstance(r.exception, InputError) and "meV" in str(r.exception)
