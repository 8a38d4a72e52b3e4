import json

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.stm import ImageTransform, build_patch, ftldos, read_user_map, render_map, user_map_to_image

T = ImageTransform(n_pixels=32, moire_period=None)


def _graphene_patch(graphene_cell, cells=14):
    xy, cell = graphene_cell
    return build_patch(xy, cell, np.array([1.0, 0.7]), cells=cells)


def test_atom_table_csv_matches_training_transform(tmp_path, graphene_cell):
    p = _graphene_patch(graphene_cell)
    f = tmp_path / "atoms.csv"
    lines = ["# my STM export", "x,y,ldos,extra"] + [f"{float(x)!r},{float(y)!r},{float(v)!r},0" for (x, y), v in zip(p.xy, p.values)]
    f.write_text("\n".join(lines))
    img = user_map_to_image(f, T.to_json())
    ref = ftldos(p.xy, p.values, transform=T)
    np.testing.assert_allclose(img.values, ref.values, rtol=1e-5, atol=1e-5)
    assert img.attrs["map_kind"] == "atoms" and json.loads(img.attrs["image_transform"])["n_pixels"] == 32
    # whitespace table without header, and an (M, 3) array
    g = tmp_path / "atoms.txt"
    np.savetxt(g, np.column_stack([p.xy, p.values]))
    np.testing.assert_allclose(user_map_to_image(g, T).values, ref.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(user_map_to_image(np.column_stack([p.xy, p.values]), T).values, ref.values,
                               rtol=1e-5, atol=1e-5)


def _rendered(graphene_cell, px=0.3, n=128):
    p = _graphene_patch(graphene_cell, cells=20)
    half = px * n / 2
    return render_map(p.xy, p.values, pixels=n, extent=(-half, half, -half, half), tip_height=2.0)


def test_pixel_map_shows_bragg_peaks(tmp_path, graphene_cell):
    m = _rendered(graphene_cell)
    f = tmp_path / "map.npy"
    np.save(f, m.values)
    (tmp_path / "map.npy.json").write_text(json.dumps({"pixel_size": 0.3}))
    img = user_map_to_image(f, ImageTransform(n_pixels=65, normalize="none"))
    a = img.values
    iy, ix = np.unravel_index(np.argmax(a), a.shape)
    k = np.array([img.kx.values[ix], img.ky.values[iy]])
    assert abs(np.linalg.norm(k) - 4 * np.pi / (np.sqrt(3) * 2.46)) < 0.15  # a first-shell Bragg peak
    # the same through .npz and through an explicit pixel size
    z = tmp_path / "map.npz"
    np.savez(z, ldos=m.values, pixel_size=0.3)
    np.testing.assert_allclose(user_map_to_image(z, ImageTransform(n_pixels=65, normalize="none")).values, a,
                               rtol=1e-5, atol=1e-6 * a.max())
    assert read_user_map(f, pixel_size=(0.3, 0.3)).shape == (128, 128)


def test_image_files(tmp_path, graphene_cell):
    from PIL import Image

    m = _rendered(graphene_cell).values
    u16 = np.round(65535 * (m - m.min()) / np.ptp(m)).astype(np.uint16)
    f = tmp_path / "map.png"
    Image.fromarray(u16).save(f)
    um = read_user_map(f, pixel_size=0.3)
    assert um.kind == "grid" and um.shape == (128, 128)
    # top row of the file is the largest y
    np.testing.assert_allclose(um.values.reshape(128, 128), u16[::-1].astype(float))
    assert user_map_to_image(f, T, pixel_size=0.3).shape == (32, 32)
    t = tmp_path / "map.tif"
    Image.fromarray(m.astype(np.float32)).save(t)
    np.testing.assert_allclose(read_user_map(t, pixel_size=0.3).values.reshape(128, 128), m[::-1], rtol=1e-6)
    rgb = np.stack([u16 >> 8, (u16 >> 4) & 255, u16 & 255], axis=-1).astype(np.uint8)
    c = tmp_path / "colour.png"
    Image.fromarray(rgb).save(c)
    with pytest.raises(InputError, match="colour"):
        read_user_map(c, pixel_size=0.3)
    with pytest.raises(InputError, match="pixel size"):
        read_user_map(f)


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
    um = read_user_map(f)
    assert um.meta["channel"] == "LI_Demod_1_X"  # the dI/dV channel is preferred
    assert um.pixel_size == pytest.approx((40.0 / nx, 40.0 / ny))
    np.testing.assert_array_equal(um.values.reshape(ny, nx), data[1, 0])
    back = read_user_map(f, channel="Z", direction="backward")
    np.testing.assert_array_equal(back.values.reshape(ny, nx), data[0, 1][:, ::-1])
    # cross-check with nanonispy (which needs the np.float / np.int aliases removed in NumPy 1.24)
    import nanonispy.read as nr

    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)
    s = nr.Scan(str(f))
    np.testing.assert_array_equal(s.signals["LI_Demod_1_X"]["forward"], um.values.reshape(ny, nx))
    np.testing.assert_allclose(s.header["scan_range"] * 1e10 / nx, um.pixel_size)
    monkeypatch.undo()
    assert user_map_to_image(f, T).shape == (32, 32)
    with pytest.raises(InputError, match="channel 'dIdV' not in the file"):
        read_user_map(f, channel="dIdV")
    d = tmp_path / "down.sxm"
    _write_sxm(d, data, ["Z", "LI_Demod_1_X"], scan_dir="down")
    np.testing.assert_array_equal(read_user_map(d).values.reshape(ny, nx), data[1, 0][::-1])


def test_geometry_refusals(rng):
    a = rng.random((64, 64))
    with pytest.raises(InputError, match="too coarse.*Nyquist"):
        user_map_to_image(a, T, pixel_size=1.2)
    with pytest.raises(InputError, match="field of view .* too small"):
        user_map_to_image(a, ImageTransform(n_pixels=32, moire_period=30.0), pixel_size=0.5)  # 32 Å < 60 Å
    user_map_to_image(a, ImageTransform(n_pixels=32, moire_period=15.0), pixel_size=0.5)
    b = a.copy()
    b[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        user_map_to_image(b, T, pixel_size=0.5)
    with pytest.raises(InputError, match="constant"):
        user_map_to_image(np.ones((64, 64)), T, pixel_size=0.5)
    with pytest.raises(InputError, match="too small"):
        user_map_to_image(rng.random((4, 64)), T, pixel_size=0.5)
    with pytest.raises(InputError, match="pixel size"):
        user_map_to_image(a, T)


def test_unknown_format_and_bad_transform(tmp_path):
    f = tmp_path / "map.xlsx"
    f.write_text("x")
    with pytest.raises(InputError, match="unsupported map format"):
        read_user_map(f)
    with pytest.raises(InputError, match="does not exist"):
        read_user_map(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="unknown image_transform keys"):
        ImageTransform.from_dict({"n_pixels": 32, "colour": "viridis"})
