"""Nanonis .3ds grid spectroscopy reader, on grids laid out from the documented format.

The writer below follows Nanonis' layout: ``key=value`` header lines (CR LF), ``:HEADER_END:``, then
big-endian float32 per grid point — the fixed parameters (Sweep Start, Sweep End), the experiment
parameters, then each channel's sweep values — points along x, lines along y, the first line at the
bottom. The files are also read by nanonispy, an independent reader, as a check of the layout.
"""

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.io import read_map

NX, NY, NPTS = 8, 8, 5
CX, CY, W, H = 20e-9, -5e-9, 4e-9, 3.2e-9  # frame centre and size (m): 5 Å × 4 Å pixels


def write_3ds(path, values, channels, sweep=(0.3, -0.1), sweep_signal="Bias (V)", filetype="Linear",
              grid_settings=None, truncate=0):
    """values: (ny, nx, channels, points) float; returns the path."""
    ny, nx, nch, npts = values.shape
    params = ["X (m)", "Y (m)", "Z (m)"]
    head = [f'Grid dim="{nx} x {ny}"',
            "Grid settings=" + (grid_settings or f"{CX:E};{CY:E};{W:E};{H:E};1.500000E+1"),
            f"Filetype={filetype}", f'Sweep Signal="{sweep_signal}"', 'Fixed parameters="Sweep Start;Sweep End"',
            'Experiment parameters="' + ";".join(params) + '"', f"# Parameters (4 byte)={2 + len(params)}",
            f"Experiment size (bytes)={4 * npts * nch}", f"Points={npts}", 'Channels="' + ";".join(channels) + '"',
            "Delay before measuring (s)=0E+0", 'Experiment="Grid Spectroscopy"', 'Start time="01.02.2024 10:00:00"',
            'End time="01.02.2024 11:00:00"', "User=", "Comment=test grid", f"Bias>Bias (V)={sweep[0]:g}"]
    pts = []
    for iy in range(ny):
        for ix in range(nx):
            x = CX - W / 2 + (ix + 0.5) * W / nx
            y = CY - H / 2 + (iy + 0.5) * H / ny
            pts.append(np.concatenate([[sweep[0], sweep[1], x, y, 1e-10], values[iy, ix].ravel()]))
    raw = ("\r\n".join(head) + "\r\n:HEADER_END:\r\n").encode() + np.asarray(pts, dtype=">f4").tobytes()
    path.write_bytes(raw[:len(raw) - truncate])
    return path


@pytest.fixture
def grid(tmp_path):
    rng = np.random.default_rng(3)
    v = rng.random((NY, NX, 2, NPTS)).astype(np.float32)
    v[:, :, 1, :] += np.arange(NPTS)  # the lock-in channel: each bias its own level
    return write_3ds(tmp_path / "grid.3ds", v, ["Current (A)", "LI Demod 1 X (A)"]), v


def test_3ds_map_nearest_fermi_level_and_explicit_bias(grid):
    f, v = grid
    m = read_map(f)  # sweep 0.3, 0.2, 0.1, 0.0, -0.1 V: E_F is point 3; the lock-in channel by default
    assert m.meta["channel"] == "LI Demod 1 X (A)" and m.meta["value_unit"] == "A"
    assert m.meta["channel_kind"] == "signal"
    np.testing.assert_array_equal(m.values, v[:, :, 1, 3])
    assert abs(m.meta["bias_V"]) < 1e-6 and m.meta["sweep_V"] == pytest.approx([-0.1, 0.3])
    assert m.pixel_size == pytest.approx((5.0, 4.0))  # Grid settings width / nx, height / ny, in Å
    assert m.meta["scan_angle"] == 15.0
    b = read_map(f, bias=0.18)  # nearest sweep point: 0.2 V
    np.testing.assert_array_equal(b.values, v[:, :, 1, 1])
    assert b.meta["bias_V"] == pytest.approx(0.2) and b.meta["bias_requested_V"] == 0.18
    np.testing.assert_array_equal(read_map(f, bias=-0.1).values, v[:, :, 1, 4])
    with pytest.raises(InputError, match=r"bias 0.5 V is outside the grid's sweep \[-0.1, 0.3\] V"):
        read_map(f, bias=0.5)


def test_3ds_channels(grid):
    f, v = grid
    for name in ("Current", "Current (A)", "current"):
        c = read_map(f, channel=name)
        assert c.meta["channel"] == "Current (A)"
        np.testing.assert_array_equal(c.values, v[:, :, 0, 3])
    with pytest.raises(InputError, match=r"channel 'LIX' not in the file; available: Current \(A\), "
                                         r"LI Demod 1 X \(A\)"):
        read_map(f, channel="LIX")
    with pytest.raises(InputError, match="no backward sweep"):
        read_map(f, direction="backward")
    assert read_map(f, pixel_size=0.45).pixel_size == (0.45, 0.45)


def test_3ds_lines_run_up_the_frame(tmp_path):
    """Each value is a function of the point's position: line 0 is the bottom, points run along +x."""
    ix, iy = np.meshgrid(np.arange(NX), np.arange(NY))
    x = CX - W / 2 + (ix + 0.5) * W / NX
    y = CY - H / 2 + (iy + 0.5) * H / NY
    field = (3e9 * x + 7e9 * y).astype(np.float32)
    v = np.repeat(field[:, :, None, None], NPTS, axis=3)
    m = read_map(write_3ds(tmp_path / "pos.3ds", v, ["LI Demod 1 X (A)"]))
    X0, Y0 = (CX - W / 2) * 1e10, (CY - H / 2) * 1e10  # frame corner (Å)
    px, py = m.pixel_size
    xs = (X0 + (np.arange(NX) + 0.5) * px) * 1e-10
    ys = (Y0 + (np.arange(NY) + 0.5) * py) * 1e-10
    np.testing.assert_allclose(m.values, 3e9 * xs[None, :] + 7e9 * ys[:, None], rtol=1e-5)


def test_3ds_multisegment_sweep_and_backward_channels(tmp_path):
    rng = np.random.default_rng(4)
    bias = np.array([0.4, 0.25, 0.05, -0.02, -0.3])  # non-linear (multi-segment) sweep, recorded as a channel
    v = rng.random((NY, NX, 4, NPTS)).astype(np.float32)
    v[:, :, 0, :] = bias
    v[:, :, 2, :] = bias[::-1]  # the backward sweep runs back
    f = write_3ds(tmp_path / "mls.3ds", v, ["Bias (V)", "LI Demod 1 X (A)", "Bias [bwd] (V)",
                                            "LI Demod 1 X [bwd] (A)"], filetype="MLS")
    m = read_map(f)
    assert m.meta["channel"] == "LI Demod 1 X (A)"
    np.testing.assert_array_equal(m.values, v[:, :, 1, 3])  # -0.02 V is the nearest to 0
    back = read_map(f, direction="backward")
    assert back.meta["channel"] == "LI Demod 1 X [bwd] (A)"
    np.testing.assert_array_equal(back.values, v[:, :, 3, 1])  # bias[::-1][1] = -0.02 V
    np.testing.assert_array_equal(read_map(f, bias=0.3).values, v[:, :, 1, 1])
    no_bias = write_3ds(tmp_path / "mls2.3ds", v[:, :, 1:2], ["LI Demod 1 X (A)"], filetype="MLS")
    with pytest.raises(InputError, match="cannot tell the bias of each sweep point"):
        read_map(no_bias)


def test_3ds_broken_and_unsupported_files(grid, tmp_path):
    f, v = grid
    per = 4 * (5 + 2 * NPTS)
    cut = tmp_path / "cut.3ds"
    cut.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(InputError, match=f"truncated .3ds file: it holds {NX * NY - -(-100 // per)} of the "
                                         f"8 x 8 = 64 grid points"):
        read_map(cut)
    header_only = tmp_path / "header.3ds"
    header_only.write_bytes(f.read_bytes()[:f.read_bytes().find(b":HEADER_END:")])
    with pytest.raises(InputError, match="not a Nanonis .3ds file"):
        read_map(header_only)
    nan = v.copy()
    nan[2, 5, 1, 3] = np.nan
    with pytest.raises(InputError, match="1 of 64 pixels of channel 'LI Demod 1 X \\(A\\)' at 0 V are NaN"):
        read_map(write_3ds(tmp_path / "nan.3ds", nan, ["Current (A)", "LI Demod 1 X (A)"]))
    # the NaN point is at another bias: the map at 0.2 V is whole
    assert read_map(tmp_path / "nan.3ds", bias=0.2).shape == (NY, NX)
    z = write_3ds(tmp_path / "z.3ds", v, ["Current (A)", "LI Demod 1 X (A)"], sweep_signal="Z (m)")
    with pytest.raises(InputError, match="sweeps 'Z \\(m\\)', not the bias"):
        read_map(z)
    bad = write_3ds(tmp_path / "bad.3ds", v, ["Current (A)", "LI Demod 1 X (A)"], grid_settings="n/a")
    with pytest.raises(InputError, match="pixel size is unknown; pass --pixel-size"):
        read_map(bad)
    assert read_map(bad, pixel_size=0.5).pixel_size == (0.5, 0.5)
    flat = write_3ds(tmp_path / "flat.3ds", v, ["Current (A)", "LI Demod 1 X (A)"],
                     grid_settings=f"{CX:E};{CY:E};0;0;0")
    with pytest.raises(InputError, match="pixel size must be one or two positive numbers"):
        read_map(flat)
    npy = tmp_path / "map.npy"
    np.save(npy, np.ones((8, 8)))
    with pytest.raises(InputError, match=r"a .npy file holds no bias sweep.*grid-spectroscopy file \(.3ds\)"):
        read_map(npy, pixel_size=0.5, bias=0.1)


def test_3ds_agrees_with_nanonispy(grid, monkeypatch):
    f, v = grid
    import nanonispy.read as nr

    monkeypatch.setattr(np, "float", float, raising=False)  # nanonispy 1.1 uses aliases NumPy removed
    monkeypatch.setattr(np, "int", int, raising=False)
    g = nr.Grid(str(f))
    monkeypatch.undo()
    sweep = g.signals["sweep_signal"]
    for bias in (None, 0.18, -0.04):
        m = read_map(f, bias=bias)
        k = int(np.argmin(np.abs(sweep - (0.0 if bias is None else bias))))
        np.testing.assert_array_equal(g.signals["LI Demod 1 X (A)"][:, :, k], m.values)
    assert np.allclose(np.array(g.header["size_xy"]) * 1e10 / [NX, NY], m.pixel_size)


def test_predict_takes_the_map_at_the_bias_asked_for(tmp_path):
    """moireu predict --bias threads down to the .3ds reader: the moiré map sits at 0.1 V, noise at 0 V."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from moireu.cli import app

    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tbg_i7_U4.npy"  # U = 4 eV, 0.45 Å pixels
    a = np.load(example).astype(np.float32)
    noise = np.random.default_rng(5).standard_normal((2,) + a.shape).astype(np.float32)
    v = np.stack([a, noise[0], noise[1]], axis=-1)[:, :, None, :]  # sweep 0.1, 0.0, -0.1 V
    n = a.shape[0]
    f = write_3ds(tmp_path / "grid.3ds", v, ["LI Demod 1 X (A)"], sweep=(0.1, -0.1),
                  grid_settings=f"0;0;{n * 0.45e-10:E};{n * 0.45e-10:E};0")
    r = CliRunner().invoke(app, ["predict", str(f), "--bias", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert abs(d["U"] - 4.0) <= 0.3 and d["in_distribution"], d
    r = CliRunner().invoke(app, ["predict", str(f), "--json"])  # nearest 0 V: the noise map
    assert r.exit_code == 3, r.output
    assert "no moiré lattice found" in json.loads(r.stdout)["ood_reasons"][0]
    r = CliRunner().invoke(app, ["predict", str(example), "--bias", "0.1", "--json"])
    assert r.exit_code != 0 and "no bias sweep" in str(r.exception) + r.output
