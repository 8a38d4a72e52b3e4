"""RHK .sm4 reader, on files laid out byte by byte from the SM4 format description.

The writer below follows the published layout (little-endian; UTF-16 strings): file header (size,
``STiMage`` signature, page/object counts) and its object list → page index header → page index
array (a GUID, data type, source, object count, minor version and the objects of each page) → page
header (116 bytes of fixed fields, 64 reserved, its objects) → string data → int32 page data.
It shares no code with the reader.
"""

import struct

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.io import read_map

SIGNATURE = "STiMage 005.006 1"


def _strings(label, x_units="m", y_units="m", z_units="m"):
    items = [label, "system", "", "", "C:\\data", "01/02/24", "10:11:12", x_units, y_units, z_units, "X", "Y"]
    return len(items), b"".join(struct.pack("<H", len(s)) + s.encode("utf-16-le") for s in items)


def _page_header(p, string_count, n_objects):
    ny, nx = p["raw"].shape
    fixed = struct.pack("<HH", 0, string_count)
    fixed += struct.pack("<3I", p["page_type"], 0, p.get("line_type", 0))
    fixed += struct.pack("<2i", 0, 0)  # x/y corner
    fixed += struct.pack("<6I", nx, ny, 0, p["scan_dir"], 0, 4 * nx * ny)  # sizes, image type, scan, group, data size
    fixed += struct.pack("<2i", int(p["raw"].min()), int(p["raw"].max()))
    fixed += struct.pack("<11f", p["x_scale"], p["y_scale"], p["z_scale"], 0.0, p["x_offset"], p["y_offset"],
                         p["z_offset"], 0.01, 0.25, 1e-10, 0.0)  # … period, bias, current, angle
    fixed += struct.pack("<4I", 0, 0, 0, n_objects) + bytes(64)
    field = struct.pack("<H", len(fixed) - 2)
    return field + fixed[2:]


def write_sm4(path, pages, truncate=0):
    """pages: dicts with raw (ny, nx) int32, label, page_type, scan_dir, x/y/z scale and offset, data_type."""
    n = len(pages)
    file_header = 2 + 36 + 20
    top_objects = file_header
    pih = top_objects + 12
    pia = pih + 16 + 12
    body = pia + n * (32 + 2 * 12)
    blobs, index = [], []
    pos = body
    for p in pages:
        count, strings = _strings(p["label"], *p.get("units", ("m", "m", "m")))
        header = _page_header(p, count, 1)
        hoff = pos
        soff = hoff + len(header) + 12
        doff = soff + len(strings)
        data = np.ascontiguousarray(p["raw"], dtype="<i4").tobytes()
        blobs.append(header + struct.pack("<3I", 10, soff, len(strings)) + strings + data)
        index.append((p.get("data_type", 0), hoff, len(header) + 12, doff, len(data)))
        pos = doff + len(data)
    out = struct.pack("<H", file_header - 2) + SIGNATURE.ljust(18, "\0").encode("utf-16-le")
    out += struct.pack("<5I", n, 1, 12, 0, 0)
    out += struct.pack("<3I", 1, pih, 28)  # the page index header object
    out += struct.pack("<4I", n, 1, 0, 0) + struct.pack("<3I", 2, pia, n * (32 + 24))
    for k, (dtype, hoff, hsize, doff, dsize) in enumerate(index):
        out += bytes([k + 1] * 16) + struct.pack("<4I", dtype, 0, 2, 6)
        out += struct.pack("<3I", 3, hoff, hsize) + struct.pack("<3I", 4, doff, dsize)
    assert len(out) == body
    out += b"".join(blobs)
    path.write_bytes(out[:len(out) - truncate])
    return path


def _page(raw, label, page_type, scan_dir=0, xs=-2.5e-10, ys=-2.0e-10, zs=1e-12, zo=0.0, units=("m", "m", "m")):
    return {"raw": raw, "label": label, "page_type": page_type, "scan_dir": scan_dir, "x_scale": xs, "y_scale": ys,
            "z_scale": zs, "z_offset": zo, "x_offset": 1e-9, "y_offset": 3e-9, "units": units}


def _physical(f, p):
    """raw int32 page sampling f(x, y) (m) at raw pixel (i, j) = (x_off + j·x_scale, y_off + i·y_scale), and the
    map moireu must return: f at increasing x along the columns, increasing y along the rows."""
    ny, nx = p["raw"].shape
    x = np.float32(p["x_offset"]) + np.arange(nx) * np.float32(p["x_scale"])
    y = np.float32(p["y_offset"]) + np.arange(ny) * np.float32(p["y_scale"])
    zs, zo = float(np.float32(p["z_scale"])), float(np.float32(p["z_offset"]))
    p["raw"] = np.round((f(x[None, :], y[:, None]) - zo) / zs).astype(np.int32)
    X, Y = np.sort(x), np.sort(y)
    return np.round((f(X[None, :], Y[:, None]) - zo) / zs) * zs + zo


def test_sm4_values_orientation_pixel_size_and_channels(tmp_path):
    ny, nx = 24, 32
    f = lambda x, y: 3.0 * x + 7.0 * y  # noqa: E731 - a different slope along x and y
    topo = _page(np.zeros((ny, nx)), "Topography", 1)  # both scales negative: flipped along x and y
    expect_topo = _physical(f, topo)
    back = _page(np.zeros((ny, nx)), "Topography", 1, scan_dir=1, xs=2.5e-10)  # scanned left, positive x scale
    expect_back = _physical(lambda x, y: -f(x, y), back)
    cur = _page(np.zeros((ny, nx)), "Current", 2, xs=2.5e-10, ys=2.0e-10, zs=1e-13, zo=5e-12, units=("m", "m", "A"))
    expect_cur = _physical(lambda x, y: 1e-2 * f(x, y) + 1e-11, cur)
    lia = _page(np.zeros((ny, nx)), "LIA Current", 5, units=("m", "m", "A"))
    expect_lia = _physical(lambda x, y: 1e-3 * f(y, x), lia)
    path = write_sm4(tmp_path / "scan.sm4", [topo, back, cur, lia])

    m = read_map(path)  # default: the lock-in page
    assert m.meta["channel"] == "LIA Current" and m.meta["value_unit"] == "A" and m.meta["channel_kind"] == "signal"
    assert m.shape == (ny, nx) and m.pixel_size == pytest.approx((2.5, 2.0), rel=1e-6)
    np.testing.assert_allclose(m.values, expect_lia, rtol=1e-6, atol=1e-18)
    t = read_map(path, channel="topography")
    assert t.meta["channel"] == "Topography" and t.meta["channel_kind"] == "height" and t.meta["scan_dir"] == "right"
    np.testing.assert_allclose(t.values, expect_topo, rtol=1e-6, atol=1e-18)
    b = read_map(path, channel="Topography", direction="backward")
    assert b.meta["scan_dir"] == "left"
    np.testing.assert_allclose(b.values, expect_back, rtol=1e-6, atol=1e-18)
    c = read_map(path, channel="current")
    assert c.meta["page_type"] == 2 and c.meta["value_unit"] == "A"
    np.testing.assert_allclose(c.values, expect_cur, rtol=1e-6, atol=1e-18)
    assert m.meta["sm4_bias"] == pytest.approx(0.25)
    with pytest.raises(InputError, match="channel 'Z Piezo' not in the file; available: Topography, Current, "
                                         "LIA Current"):
        read_map(path, channel="Z Piezo")
    with pytest.raises(InputError, match="'Current' has no backward scan"):
        read_map(path, channel="Current", direction="backward")
    assert read_map(path, pixel_size=0.45).pixel_size == (0.45, 0.45)


def test_sm4_units_and_spectra_only(tmp_path):
    raw = np.arange(64, dtype=np.int32).reshape(8, 8)
    nm = write_sm4(tmp_path / "nm.sm4", [_page(raw, "Topography", 1, xs=0.1, ys=0.1, units=("nm", "nm", "nm"))])
    assert read_map(nm).pixel_size == pytest.approx((1.0, 1.0))
    volts = write_sm4(tmp_path / "v.sm4", [_page(raw, "Topography", 1, units=("V", "V", "m"))])
    with pytest.raises(InputError, match="pixel size is unknown; pass --pixel-size"):
        read_map(volts)
    assert read_map(volts, pixel_size=0.5).pixel_size == (0.5, 0.5)
    spec = _page(raw, "I-V", 10)
    spec["data_type"] = 1
    spectra = write_sm4(tmp_path / "spec.sm4", [spec])
    with pytest.raises(InputError, match="holds no image page"):
        read_map(spectra)


def test_sm4_broken_files_are_input_errors(tmp_path):
    raw = np.arange(32 * 32, dtype=np.int32).reshape(32, 32)
    ok = write_sm4(tmp_path / "ok.sm4", [_page(raw, "Topography", 1)])
    assert read_map(ok).shape == (32, 32)
    cut = write_sm4(tmp_path / "cut.sm4", [_page(raw, "Topography", 1)], truncate=100)
    with pytest.raises(InputError, match="truncated or corrupt .sm4"):
        read_map(cut)
    head = tmp_path / "head.sm4"
    head.write_bytes(ok.read_bytes()[:80])
    with pytest.raises(InputError, match="truncated or corrupt .sm4"):
        read_map(head)
    junk = tmp_path / "junk.sm4"
    junk.write_bytes(b"\x38\x00" + "NotAnRHKFile".encode("utf-16-le") + bytes(100))
    with pytest.raises(InputError, match="not an RHK .sm4 file"):
        read_map(junk)
    huge = _page(raw, "Topography", 1, zs=float("inf"))
    with pytest.raises(InputError, match="NaN/inf"):
        read_map(write_sm4(tmp_path / "inf.sm4", [huge]))
