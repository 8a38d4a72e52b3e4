"""Gwyddion .gwy reader: files written by gwyfile's own GwyContainer / GwyDataField objects."""

import gwyfile
import numpy as np
import pytest
from gwyfile.objects import GwyContainer, GwyDataField

from moireu.errors import InputError
from moireu.io import MapData, read_map


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _write(path, channels):
    """channels: (title, data (yres, xres), xreal, yreal, unit_xy, unit_z); Gwyddion's row 0 is the top."""
    c = GwyContainer()
    for i, (title, data, xreal, yreal, uxy, uz) in enumerate(channels):
        c[f"/{i}/data"] = GwyDataField(np.ascontiguousarray(data, dtype=float), xreal=xreal, yreal=yreal,
                                       si_unit_xy=uxy, si_unit_z=uz)
        c[f"/{i}/data/title"] = title
    c.tofile(str(path))
    return path


def test_gwy_values_pixel_size_units_and_channels(tmp_path, rng):
    topo = rng.random((30, 40)) * 1e-10  # (yres, xres), metres
    didv = rng.random((30, 40))
    f = _write(tmp_path / "scan.gwy", [("Topography", topo, 20e-9, 12e-9, "m", "m"),
                                        ("dI/dV", didv, 20e-9, 12e-9, "m", "S")])
    m = read_map(f)  # the first channel
    assert isinstance(m, MapData) and m.shape == (30, 40)
    assert m.pixel_size == pytest.approx((5.0, 4.0))  # 20 nm / 40, 12 nm / 30, in Å
    np.testing.assert_array_equal(m.values, topo[::-1])  # the top row of the field is the largest y
    assert m.meta["channel"] == "Topography" and m.meta["value_unit"] == "m"
    assert m.meta["channel_kind"] == "height"  # the flag predict warns on
    s = read_map(f, channel="dI/dV")
    np.testing.assert_array_equal(s.values, didv[::-1])
    assert s.meta["value_unit"] == "S" and s.meta["channel_kind"] == "signal"
    assert read_map(f, channel="di/dv").meta["channel"] == "dI/dV"  # case-insensitive
    assert read_map(f, channel="1").meta["channel"] == "dI/dV"  # the channel number
    with pytest.raises(InputError, match=r"channel 'Current' not in the file; available: 'Topography' \(#0\), "
                                         r"'dI/dV' \(#1\)"):
        read_map(f, channel="Current")
    assert read_map(f, pixel_size=0.4).pixel_size == (0.4, 0.4)
    # gwyfile reads back what it wrote, and so do we: the same numbers through its own loader
    np.testing.assert_array_equal(gwyfile.load(str(f))["/1/data"].data[::-1], s.values)


def test_gwy_lateral_units_are_parsed_not_assumed(tmp_path, rng):
    a = rng.random((16, 16))
    nm = _write(tmp_path / "nm.gwy", [("Z", a, 8.0, 8.0, "nm", "nm")])
    assert read_map(nm).pixel_size == pytest.approx((5.0, 5.0))
    none = _write(tmp_path / "nounit.gwy", [("Z", a, 8.0, 8.0, None, None)])
    with pytest.raises(InputError, match="no lateral length unit.*--pixel-size"):
        read_map(none)
    m = read_map(none, pixel_size=0.3)
    assert m.pixel_size == (0.3, 0.3) and m.meta["channel_kind"] == "unknown"
    volts = _write(tmp_path / "volts.gwy", [("Z", a, 8.0, 8.0, "V", "A")])
    with pytest.raises(InputError, match="no lateral length unit"):
        read_map(volts)


def test_gwy_broken_files_are_input_errors(tmp_path, rng):
    a = rng.random((32, 32))
    f = _write(tmp_path / "ok.gwy", [("Z", a, 16e-9, 16e-9, "m", "m")])
    cut = tmp_path / "cut.gwy"
    cut.write_bytes(f.read_bytes()[:-2000])
    with pytest.raises(InputError, match="truncated .gwy"):
        read_map(cut)
    junk = tmp_path / "junk.gwy"
    junk.write_bytes(b"not a gwyddion file at all")
    with pytest.raises(InputError, match="not a Gwyddion 2 .gwy file"):
        read_map(junk)
    nan = a.copy()
    nan[3, 4] = np.nan
    g = _write(tmp_path / "nan.gwy", [("Z", nan, 16e-9, 16e-9, "m", "m")])
    with pytest.raises(InputError, match="1 of 1024 pixels .* NaN"):
        read_map(g)
    empty = GwyContainer()
    empty["/filename"] = "x"
    empty.tofile(str(tmp_path / "empty.gwy"))
    with pytest.raises(InputError, match="no image channel"):
        read_map(tmp_path / "empty.gwy")
    with pytest.raises(InputError, match="no bias sweep"):
        read_map(f, bias=0.1)


def test_predict_warns_on_a_gwyddion_height_channel(tmp_path):
    """The .gwy reader's channel kind reaches predict's height-topograph warning (the text-grid mechanism)."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from moireu.cli import app

    a = np.load(Path(__file__).resolve().parents[2] / "docs" / "examples" / "tbg_i7_U4.npy").astype(float)
    n = a.shape[0]  # 0.45 Å pixels, U = 4 eV
    f = _write(tmp_path / "topo.gwy", [("Topography", a[::-1] * 1e-11, n * 0.45e-10, n * 0.45e-10, "m", "m")])
    r = CliRunner().invoke(app, ["predict", str(f), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert abs(d["U"] - 4.0) <= 0.3 and "height topograph (values in m)" in d["warnings"][0], d
