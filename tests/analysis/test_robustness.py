"""The robustness table's glue: same images for every run, rows per (run, corruption), refusals."""

import json

import numpy as np
import pytest
import xarray as xr

from moireu.analysis.robustness import Acquisitions, format_rows, render_heldout, robustness_rows
from moireu.errors import InputError


class _Model:
    """A stand-in run: predicts U + bias, interval ± half, in distribution below a U cut."""

    def __init__(self, bias, half, cut):
        self.bias, self.half, self.cut = bias, half, cut
        self.seen = []

    def predict_details(self, x):
        self.seen.append(x.numpy().copy())
        u = x.numpy().reshape(len(x), -1)[:, 0].astype(float) + self.bias
        return {"mean": u, "lower": u - self.half, "upper": u + self.half, "in_distribution": u < self.cut}


class _Run:
    def __init__(self, model):
        self.model = model


def _acq(name, U, in_range):
    images = np.zeros((len(U), 4, 4), np.float32)
    images[:, 0, 0] = U  # the stand-in model reads U from pixel (0, 0)
    return Acquisitions(name, images, np.asarray(U, float), np.asarray(in_range), np.full(len(U), 4.41))


def test_rows_known_answers_and_same_images_for_every_run():
    a, b = _Run(_Model(0.1, 0.2, 10.0)), _Run(_Model(-0.5, 0.2, 2.0))
    acqs = [_acq("clean", [1.0, 2.0, 3.0, 4.0], [True] * 4), _acq("drift", [1.0, 5.0], [True, False])]
    rows = robustness_rows({"a": a, "b": b}, acqs)
    assert [(r["model"], r["corruption"]) for r in rows] == [("a", "clean"), ("b", "clean"), ("a", "drift"),
                                                              ("b", "drift")]
    ra, rb = rows[0], rows[1]
    assert ra["mae"] == pytest.approx(0.1) and ra["coverage90"] == 1.0 and ra["in_distribution"] == 1.0
    assert rb["mae"] == pytest.approx(0.5) and rb["coverage90"] == 0.0
    assert rb["in_distribution"] == pytest.approx(0.5)  # U = 1, 2 → 0.5, 1.5 < 2
    assert rows[2]["in_distribution"] == 0.5 and rows[2]["align_in_range"] == 0.5  # alignment refusal counts
    assert all(np.array_equal(x, y) for x, y in zip(a.model.seen, b.model.seen))
    md = format_rows(rows)
    assert "| clean |" in md and "| drift |" in md and "0.100 / 1.00 / 1.00" in md


def test_render_refuses_a_store_without_per_atom_ldos(tmp_path):
    ds = xr.Dataset({"image": (("sample", "ky", "kx"), np.zeros((2, 4, 4), np.float32)),
                     "U": ("sample", [0.0, 1.0]), "split": ("sample", ["grid", "heldout"])},
                    attrs={"config": json.dumps({"seed": 0})})
    with pytest.raises(InputError, match="per-atom LDOS"):
        render_heldout(ds, "clean")
