"""Analysis figures: the true U axis of the similarity map, and figures that keep their labels."""

import numpy as np

from moireu.plot.analysis import centred_cells, eigen_images_figure, similarity_figure


def test_centred_cells_of_an_uneven_grid():
    U = np.array([0.0, 0.5, 1.0, 5.5, 6.0])
    e, own = centred_cells(U)
    assert np.allclose(e, [-0.25, 0.25, 0.75, 1.25, 5.25, 5.75, 6.25])
    assert own.tolist() == [0, 1, 2, -1, 3, 4]  # a blank gap between 1.25 and 5.25 eV
    for i, u in enumerate(U):  # every cell is centred on its U
        j = int(np.flatnonzero(own == i)[0])
        assert np.isclose(0.5 * (e[j] + e[j + 1]), u)
    e1, own1 = centred_cells(np.array([2.0]))
    assert np.allclose(e1, [1.5, 2.5]) and own1.tolist() == [0]


def test_similarity_map_draws_uneven_u_at_their_values(tmp_path):
    from PIL import Image

    U = np.array([0.0, 0.5, 1.0, 5.5, 6.0])
    S = np.full((5, 5), 0.9999)
    S[3, :] = S[:, 3] = 0.99  # the U = 5.5 stripe
    np.fill_diagonal(S, 1.0)
    p = similarity_figure(U, S, tmp_path / "s.png")
    im = np.asarray(Image.open(p).convert("RGB")).astype(int)
    assert im.shape[0] > 100 and im.shape[1] > 100


def test_eigen_images_keep_colour_bar_labels_inside_the_canvas(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    comps = rng.standard_normal((3, 16, 16)) * np.array([1e-4, 1.0, 123.0])[:, None, None]
    k = np.linspace(-3, 3, 16)
    p = eigen_images_figure(comps, np.array([0.6, 0.3, 0.1]), k, k, tmp_path / "e.png")
    im = np.asarray(Image.open(p).convert("L")).astype(int)
    # a tight bounding box leaves a white margin on the right: nothing is cut at the edge
    assert (im[:, -2:] > 250).all()
