"""Text exports of STM maps: a grid with a header (units parsed, never assumed), or a per-atom table."""

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.io import MapData, read_map


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _rows(a):
    return "\n".join(" ".join(f"{v:.6g}" for v in row) for row in a)


def test_data_size_surface_size_header_with_spelled_out_units(tmp_path, rng):
    # the layout of the export in the issue: Data Size / Surface Size / X Unit / Z Unit, then rows (top row first)
    a = rng.random((16, 24))
    f = tmp_path / "topo.txt"
    f.write_text("Data Size: 24 x 16\nSurface Size: 12.0000 x 8.0000\nX Unit: NanoMeter\nY Unit: NanoMeter\n"
                 "Z Unit: PicoMeter\n" + _rows(a) + "\n")
    m = read_map(f)
    assert isinstance(m, MapData) and m.shape == (16, 24)
    assert m.pixel_size == pytest.approx((120.0 / 24, 80.0 / 16))  # Å
    np.testing.assert_allclose(m.values, a[::-1], rtol=1e-5)  # the file's first row is the top (largest y)
    assert m.meta["channel_kind"] == "height" and m.meta["value_unit"] == "PicoMeter"
    # --pixel-size overrides the header
    assert read_map(f, pixel_size=0.5).pixel_size == (0.5, 0.5)


def test_gwyddion_ascii_matrix_and_wsxm_headers(tmp_path, rng):
    a = rng.random((12, 10))
    gwy = tmp_path / "gwy.txt"  # Gwyddion "ASCII data matrix" export with its optional header
    gwy.write_text("# Channel: dI/dV\n# Width: 5.000 nm\n# Height: 60.0 Å\n# Value units: S\n" + _rows(a))
    m = read_map(gwy)
    assert m.pixel_size == pytest.approx((5.0, 5.0)) and m.meta["channel_kind"] == "signal"
    wsxm = tmp_path / "wsxm.asc"  # WSxM ASCII matrix
    wsxm.write_text("WSxM file copyright UAM\nWSxM ASCII Matrix file\nX Amplitude: 1 nm\nY Amplitude: 1.2 nm\n"
                    "Z Amplitude: 0.3 nm\n" + _rows(a))
    m = read_map(wsxm)
    assert m.pixel_size == pytest.approx((1.0, 1.0)) and m.meta["channel_kind"] == "height"


def test_grids_without_units_or_size_are_refused_with_the_reason(tmp_path, rng):
    a = rng.random((10, 10))
    f = tmp_path / "nounit.txt"
    f.write_text("Data Size: 10 x 10\nSurface Size: 100 x 100\n" + _rows(a))
    with pytest.raises(InputError, match="without a length unit"):
        read_map(f)
    f.write_text("Data Size: 12 x 10\nSurface Size: 100 x 100\nX Unit: nm\n" + _rows(a))
    with pytest.raises(InputError, match="says 'Data Size: 12 x 10' but the file holds 10 x 10"):
        read_map(f)
    bare = tmp_path / "bare.dat"
    bare.write_text(_rows(a))
    with pytest.raises(InputError, match="pass --pixel-size"):
        read_map(bare)
    assert read_map(bare, pixel_size=0.4).shape == (10, 10)
    f.write_text("Surface Size: 100 x 100\nX Unit: furlong\n" + _rows(a))
    with pytest.raises(InputError, match="without a length unit it names \\('furlong'\\)"):
        read_map(f)
    f.write_text("Surface Size: 1 x 1\nX Unit: nm\n" + _rows(a) + "\n1 2 x\n")
    with pytest.raises(InputError, match="is not numeric"):
        read_map(f)


def test_three_column_files_are_still_atom_tables(tmp_path, rng):
    xy, v = rng.random((20, 2)) * 10, rng.random(20)
    f = tmp_path / "atoms.txt"
    np.savetxt(f, np.column_stack([xy, v]), header="x y ldos")
    t = read_map(f)
    np.testing.assert_allclose(t.values, v)
