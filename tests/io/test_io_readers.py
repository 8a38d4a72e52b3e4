"""Map readers (moireu.io): one per format, registered by suffix; every one returns MapData/AtomTable."""

import json

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.io import AtomTable, MapData, read_map, readers, register_reader


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_registry_dispatch_and_conflicts(tmp_path):
    assert {".npy", ".npz", ".csv", ".txt", ".dat", ".xyz", ".png", ".tif", ".tiff", ".sxm"} <= set(readers())
    with pytest.raises(ValueError, match="already has the reader"):
        register_reader(".npy")(type("Other", (), {}))
    f = tmp_path / "map.xlsx"
    f.write_text("x")
    with pytest.raises(InputError, match="unsupported map format '.xlsx'.*\\.npy"):
        read_map(f)
    with pytest.raises(InputError, match="does not exist"):
        read_map(tmp_path / "nope.csv")


def test_npy_with_sidecar_and_override(tmp_path, rng):
    a = rng.random((40, 30))
    f = tmp_path / "map.npy"
    np.save(f, a)
    with pytest.raises(InputError, match="pixel size"):
        read_map(f)
    (tmp_path / "map.npy.json").write_text(json.dumps({"pixel_size": [0.3, 0.35], "bias_mV": 2}))
    m = read_map(f)
    assert isinstance(m, MapData) and m.shape == (40, 30) and m.pixel_size == (0.3, 0.35)
    assert m.meta["bias_mV"] == 2 and m.field_of_view == pytest.approx((9.0, 14.0))
    np.testing.assert_array_equal(m.values, a)
    assert read_map(f, pixel_size=0.5).pixel_size == (0.5, 0.5)
    (tmp_path / "map.npy.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_map(f)
    # (M, 3) without a pixel size is an atom table
    t = tmp_path / "atoms.npy"
    np.save(t, rng.random((50, 3)))
    assert isinstance(read_map(t), AtomTable)


@pytest.mark.parametrize("content,msg", [
    (np.array([{"a": 1}], dtype=object), "Python objects"),
    (np.ones((8, 8)) * (1 + 1j), "complex"),
    (np.array(["a", "b"]), "real numbers"),
])
def test_npy_bad_content_is_input_error_without_numpy_advice(tmp_path, content, msg):
    f = tmp_path / "bad.npy"
    np.save(f, content, allow_pickle=True)
    with pytest.raises(InputError, match=msg) as e:
        read_map(f, pixel_size=0.3)
    assert "allow_pickle" not in str(e.value)


def test_npy_corrupt_bytes(tmp_path):
    f = tmp_path / "junk.npy"
    f.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(InputError, match="not a valid .npy|not a readable .npy") as e:
        read_map(f, pixel_size=0.3)
    assert "allow_pickle" not in str(e.value)
    g = tmp_path / "truncated.npy"
    np.save(g, np.ones((64, 64)))
    g.write_bytes(g.read_bytes()[:300])
    with pytest.raises(InputError, match=".npy"):
        read_map(g, pixel_size=0.3)


def test_npz_grid_and_table(tmp_path, rng):
    a = rng.random((16, 16))
    z = tmp_path / "m.npz"
    np.savez(z, ldos=a, pixel_size=0.4)
    m = read_map(z)
    assert m.pixel_size == (0.4, 0.4) and np.array_equal(m.values, a)
    z2 = tmp_path / "t.npz"
    np.savez(z2, x=np.arange(5.0), y=np.arange(5.0), ldos=np.ones(5))
    assert isinstance(read_map(z2), AtomTable)
    z3 = tmp_path / "e.npz"
    np.savez(z3, foo=a)
    with pytest.raises(InputError, match="needs 'ldos'"):
        read_map(z3)


def test_tables(tmp_path, rng):
    xy = rng.random((20, 2)) * 10
    v = rng.random(20)
    f = tmp_path / "atoms.csv"
    f.write_text("\n".join(["# export", "y,ldos,x"] + [f"{float(b)!r},{float(c)!r},{float(a)!r}" for (a, b), c in zip(xy, v)]))
    t = read_map(f)
    np.testing.assert_allclose(t.xy, xy)
    np.testing.assert_allclose(t.values, v)
    g = tmp_path / "atoms.txt"
    np.savetxt(g, np.column_stack([xy, v]))
    np.testing.assert_allclose(read_map(g).values, v)
    bad = tmp_path / "bad.dat"
    bad.write_text("1 2 3\n4 5 x\n")
    with pytest.raises(InputError, match="line 2 is not numeric"):
        read_map(bad)
    two = tmp_path / "two.xyz"
    two.write_text("1 2\n3 4\n")
    with pytest.raises(InputError, match="need 3 columns"):
        read_map(two)


def test_image_files(tmp_path, rng):
    from PIL import Image

    m = rng.random((32, 48))
    u16 = np.round(65535 * m).astype(np.uint16)
    f = tmp_path / "map.png"
    Image.fromarray(u16).save(f)
    r = read_map(f, pixel_size=0.3)
    assert r.shape == (32, 48)
    np.testing.assert_allclose(r.values, u16[::-1].astype(float))  # top row of the file is the largest y
    t = tmp_path / "map.tif"
    Image.fromarray(m.astype(np.float32)).save(t)
    np.testing.assert_allclose(read_map(t, pixel_size=0.3).values, m[::-1], rtol=1e-6)
    rgb = np.stack([u16 >> 8, (u16 >> 4) & 255, u16 & 255], axis=-1).astype(np.uint8)
    c = tmp_path / "colour.png"
    Image.fromarray(rgb).save(c)
    with pytest.raises(InputError, match="colour"):
        read_map(c, pixel_size=0.3)
    with pytest.raises(InputError, match="pixel size"):
        read_map(f)
    (tmp_path / "map.png.json").write_text(json.dumps({"pixel_size": 0.25}))
    assert read_map(f).pixel_size == (0.25, 0.25)


def _write_sxm(path, data, names, rng_m=4e-9, scan_dir="up"):
    ny, nx = data.shape[-2:]
    hdr = [":NANONIS_VERSION:", "2", ":SCANIT_TYPE:", "              FLOAT            MSBFIRST",
           ":SCAN_PIXELS:", f"       {nx}       {ny}", ":SCAN_TIME:", "1.0 1.0",
           ":SCAN_RANGE:", f"           {rng_m:E}           {rng_m:E}", ":SCAN_OFFSET:", "0 0",
           ":SCAN_ANGLE:", "            0.000E+0", ":SCAN_DIR:", scan_dir, ":BIAS:", "            1.000E-1",
           ":ACQ_TIME:", "10.0", ":DATA_INFO:", "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset"]
    hdr += [f"\t{i}\t{n}\tA\tboth\t1.000E+0\t0.000E+0" for i, n in enumerate(names)]
    hdr += ["", ":SCANIT_END:", ""]
    path.write_bytes("\n".join(hdr).encode() + b"\n\n\x1a\x04" + data.astype(">f4").tobytes())


def test_nanonis_sxm_against_nanonispy(tmp_path, rng, monkeypatch):
    nx = ny = 48
    data = rng.random((2, 2, ny, nx)).astype(np.float32)  # (channel, direction, y, x)
    f = tmp_path / "scan.sxm"
    _write_sxm(f, data, ["Z", "LI_Demod_1_X"])
    m = read_map(f)
    assert m.meta["channel"] == "LI_Demod_1_X"  # the dI/dV channel is preferred
    assert m.pixel_size == pytest.approx((40.0 / nx, 40.0 / ny))
    np.testing.assert_array_equal(m.values, data[1, 0])
    back = read_map(f, channel="Z", direction="backward")
    np.testing.assert_array_equal(back.values, data[0, 1][:, ::-1])
    import nanonispy.read as nr

    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)
    s = nr.Scan(str(f))
    np.testing.assert_array_equal(s.signals["LI_Demod_1_X"]["forward"], m.values)
    np.testing.assert_allclose(s.header["scan_range"] * 1e10 / nx, m.pixel_size)
    monkeypatch.undo()
    with pytest.raises(InputError, match="channel 'dIdV' not in the file"):
        read_map(f, channel="dIdV")
    d = tmp_path / "down.sxm"
    _write_sxm(d, data, ["Z", "LI_Demod_1_X"], scan_dir="down")
    np.testing.assert_array_equal(read_map(d).values, data[1, 0][::-1])
    trunc = tmp_path / "trunc.sxm"
    trunc.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(InputError, match="incomplete .sxm"):
        read_map(trunc)
    assert read_map(f, pixel_size=0.5).pixel_size == (0.5, 0.5)


def test_mapdata_validation():
    with pytest.raises(InputError, match="2-D"):
        MapData(np.ones(5), 0.3)
    with pytest.raises(InputError, match="pixel size"):
        MapData(np.ones((8, 8)), -1.0)
    with pytest.raises(InputError, match="complex"):
        MapData(np.ones((8, 8), complex), 0.3)
    m = MapData(np.ones((4, 6)), (0.5, 0.25))
    xy = m.centred_xy()
    assert xy.shape == (24, 2) and np.allclose(xy.mean(axis=0), 0)
    assert np.allclose(xy[0], [-1.25, -0.375])
