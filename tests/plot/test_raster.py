"""The reference rasterisation: grayscale of known colours, the image size chain, origin and turbo's dark top."""

import io

import numpy as np
import pytest

from moireu.errors import InputError
from moireu.plot.raster import RasterSpec, luma, paper_raster, png_to_gray, render_png


def _png(rgb, size=(40, 30)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, tuple(rgb)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("rgb,want", [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29),
                                      ((255, 255, 255), 255), ((122, 4, 3), 39)])
def test_grayscale_of_known_colours_is_itu_601_luma(rgb, want):
    # L = (299 R + 587 G + 114 B) / 1000, rounded: red 76.2 → 76, green 149.7 → 150, blue 29.1 → 29
    g = png_to_gray(_png(rgb), size=16)
    assert g.shape == (16, 16) and g.dtype == np.float32
    assert np.allclose(g, want / 255.0)
    assert int(luma(np.array(rgb))) == want
    assert abs(want - (299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2]) / 1000) <= 0.5


def test_luma_matches_pil_on_random_colours():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(luma(rgb), np.asarray(Image.fromarray(rgb, "RGB").convert("L")))


def test_image_size_chain_1003_to_694x689_to_256():
    from PIL import Image

    a = np.random.default_rng(1).random((1003, 1003))
    png = render_png(a)
    im = Image.open(io.BytesIO(png))
    assert im.size == (694, 689)  # 8 in × 112 dpi, default axes box, tight bbox without padding
    x = paper_raster(a)
    assert x.shape == (256, 256) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


def test_origin_lower_and_turbo_top_end_is_dark():
    n = 301
    a = np.zeros((n, n))
    a[: n // 3] = 0.5  # low-k_y third at turbo's bright middle
    a[-1, -1] = 1.0  # sets the automatic upper colour limit
    x = paper_raster(a, RasterSpec(figsize_in=4.0, dpi=64, size=64))
    bottom, top = x[: 64 // 3 - 2].mean(), x[64 // 3 + 2:].mean()
    assert bottom > 0.6 and top < 0.2  # row 0 = lowest k_y (origin lower); turbo(0) is dark
    # the maximum of |F| (turbo's dark red end) is darker than the middle of the range
    lo, mid, hi = (int(luma(np.round(255 * np.array(__import__("matplotlib").colormaps["turbo"](v)[:3])).astype(int)))
                   for v in (0.0, 0.5, 1.0))
    assert hi < mid and lo < mid


def test_bad_inputs():
    with pytest.raises(InputError, match="2-D"):
        render_png(np.zeros(5))
    with pytest.raises(InputError, match="NaN"):
        render_png(np.full((4, 4), np.nan))
    with pytest.raises(InputError, match="not a readable image"):
        png_to_gray(b"nope")
