"""The paper-image copy of a contract-D store: same samples and labels, reference images, resumable."""

import json

import numpy as np
import pytest

from moireu.errors import InputError


def _contract_d_store(path, n_bias=2, per=3):
    """A store with per-atom TB LDOS of a tiny TBG cell (i = 2) at 3 'U' points (contract D)."""
    import xarray as xr

    from moireu.lattice import build_tbg, kmesh
    from moireu.stm import ldos_from_spectrum

    m = build_tbg(2, 3.35, 6.0)
    kf, w = kmesh(m, (2, 2))
    e, v = np.linalg.eigh(m.hk_batch(kf))
    e0 = 0.5 * (e[:, m.n_orb // 2 - 1].max() + e[:, m.n_orb // 2].min())
    levels = np.array([0.0, 0.3])[:n_bias]
    base = ldos_from_spectrum(e, v, w, e0 + levels, eta=0.05, kind="lorentzian")  # (n_bias, N)
    top = m.positions[:, 2] > m.positions[:, 2].mean()
    U = np.array([0.0, 2.0, 4.0])
    # a stand-in for the HF states: the layer polarisation grows with U
    ldos = np.stack([base * np.where(top, 1 + 0.1 * u, 1 - 0.1 * u) for u in U])
    pts, rows, var = np.meshgrid(np.arange(3), np.arange(n_bias), np.arange(per), indexing="ij")
    pts, rows, var = pts.ravel(), rows.ravel(), var.ravel()
    n = pts.size
    ds = xr.Dataset({
        "image": (("sample", "ky", "kx"), np.zeros((n, 8, 8), np.float32)),
        "U": ("sample", U[pts]), "split": ("sample", np.array(["grid"] * n, dtype=object)),
        "bias": ("sample", levels[rows]), "variation": ("sample", var.astype(np.int32)),
        "offset_x": ("sample", 1.3 * var.astype(float)), "offset_y": ("sample", np.zeros(n)),
        "rotation_deg": ("sample", np.zeros(n)), "sample_point": ("sample", pts.astype(np.int32)),
        "ldos": (("point", "bias_level", "atom"), ldos), "atom_xyz": (("atom", "xyz"), m.positions),
        "cell": (("vec", "xy"), np.asarray(m.cell)), "point_U": ("point", U)},
        coords={"bias_level": levels, "kx": np.arange(8.0), "ky": np.arange(8.0)},
        attrs={"config": json.dumps({"stm": {"patch_cells": 2}}), "image_transform": "{}"})
    ds.to_zarr(path, mode="w", consolidated=False)
    return ds


def test_paper_store_same_samples_reference_images_and_resume(tmp_path):
    import xarray as xr

    from moireu.data import paper as paper_mod
    from moireu.stm.paper import PaperTransform, paper_image

    src = tmp_path / "d.zarr"
    ds = _contract_d_store(src)
    t = PaperTransform(grid=101, patch_cells=2, figsize_in=1.5, dpi=64, size=32)
    old_block = paper_mod._BLOCK
    paper_mod._BLOCK = 5  # several blocks, to test the resume
    try:
        rep = paper_mod.paper_store(src, tmp_path / "p.zarr", t)
        out = xr.open_zarr(tmp_path / "p.zarr")
        assert rep["n_samples"] == 18 and rep["blocks_reused"] == 0
        assert out["image"].shape == (18, 32, 32)
        assert np.array_equal(out["U"].values, ds["U"].values) and list(out["split"].values) == ["grid"] * 18
        assert json.loads(out.attrs["image_transform"])["kind"] == "paper"
        # sample 7 = point 1, bias row 0, variation 1: its own LDOS row and crop origin
        want = paper_image(ds["atom_xyz"].values, ds["cell"].values, ds["ldos"].values[1, 0], t, offset=(1.3, 0.0))
        assert np.array_equal(out["image"].values[7], want)
        # images change with the 'U' of the state
        assert np.abs(out["image"].values[0] - out["image"].values[12]).max() > 0.02
        with pytest.raises(InputError, match="--force"):
            paper_mod.paper_store(src, tmp_path / "p.zarr", t)
        # an interrupted run keeps its finished blocks
        calls = []
        real = paper_mod._render_block

        def boom(args):
            if len(calls) == 2:
                raise KeyboardInterrupt
            calls.append(1)
            return real(args)

        paper_mod._render_block = boom
        with pytest.raises(KeyboardInterrupt):
            paper_mod.paper_store(src, tmp_path / "q.zarr", t)
        paper_mod._render_block = real
        rep2 = paper_mod.paper_store(src, tmp_path / "q.zarr", t)
        assert rep2["blocks_reused"] == 2
        assert np.array_equal(xr.open_zarr(tmp_path / "q.zarr")["image"].values, out["image"].values)
    finally:
        paper_mod._BLOCK = old_block


def test_paper_store_refuses_a_store_without_ldos(tmp_path):
    import xarray as xr

    from moireu.data.paper import paper_store

    xr.Dataset({"image": (("sample", "ky", "kx"), np.zeros((2, 4, 4), np.float32)),
                "U": ("sample", [0.0, 1.0])}).to_zarr(tmp_path / "old.zarr", mode="w", consolidated=False)
    with pytest.raises(InputError, match="contract D"):
        paper_store(tmp_path / "old.zarr", tmp_path / "x.zarr")


def test_paper_store_keeps_the_reference_grid_and_every_heldout_sample(tmp_path):
    import xarray as xr

    from moireu.data.paper import paper_store
    from moireu.stm.paper import PaperTransform

    src = tmp_path / "d.zarr"
    ds = _contract_d_store(src, n_bias=1, per=2)  # U = 0, 2, 4 (grid), 2 samples each
    split = np.array(["grid", "grid", "grid", "grid", "grid", "heldout"], dtype=object)
    ds = ds.assign(split=("sample", split))
    ds.attrs["config"] = json.dumps({"stm": {"patch_cells": 2}, "dataset": {"paper_U_values": [0.0, 2.0]}})
    ds.to_zarr(src, mode="w", consolidated=False)
    paper_store(src, tmp_path / "p.zarr", PaperTransform(grid=65, patch_cells=2, figsize_in=1.0, dpi=32, size=16))
    out = xr.open_zarr(tmp_path / "p.zarr")
    # the grid sample at U = 4 is off the reference grid: dropped; the held-out sample stays
    assert out["U"].values.tolist() == [0.0, 0.0, 2.0, 2.0, 4.0]
    assert [str(x) for x in out["split"].values] == ["grid"] * 4 + ["heldout"]


def test_paper_store_keeps_the_reference_acquisitions_only(tmp_path):
    """``dataset.paper_n_offsets``: the reference sees the first draws v < n of every (U, bias), the same
    images whatever number of acquisitions our networks get."""
    import xarray as xr

    from moireu.data.paper import paper_store
    from moireu.stm.paper import PaperTransform

    t = PaperTransform(grid=65, patch_cells=2, figsize_in=1.0, dpi=32, size=16)
    src = tmp_path / "d.zarr"
    ds = _contract_d_store(src, n_bias=1, per=3)  # variations 0, 1, 2 at every U
    ds.attrs["config"] = json.dumps({"stm": {"patch_cells": 2}, "dataset": {"paper_n_offsets": 2}})
    ds.to_zarr(src, mode="w", consolidated=False)
    paper_store(src, tmp_path / "p.zarr", t)
    out = xr.open_zarr(tmp_path / "p.zarr")
    assert sorted(set(out["variation"].values.tolist())) == [0, 1]
    assert out.sizes["sample"] == 2 * ds.sizes["sample"] // 3
    # the same images as a store that only ever had those two acquisitions
    small = ds.isel(sample=np.flatnonzero(ds["variation"].values < 2))
    small.attrs["config"] = json.dumps({"stm": {"patch_cells": 2}, "dataset": {}})
    small.to_zarr(tmp_path / "s.zarr", mode="w", consolidated=False)
    paper_store(tmp_path / "s.zarr", tmp_path / "q.zarr", t)
    assert np.array_equal(xr.open_zarr(tmp_path / "q.zarr")["image"].values, out["image"].values)
