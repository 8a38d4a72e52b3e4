"""An all-zero attribution (a dead model) is flagged and kept out of the attention crossover."""

import torch

from moireu.analysis.run import LoadedModel, analyze
from moireu.config import AnalysisConfig
from moireu.ml.models import create_model


def test_all_zero_gradcam_is_flagged_and_excluded(data, tmp_path):
    torch.manual_seed(0)
    dead = create_model("cnn_paper", width=2, hidden=4).eval()
    with torch.no_grad():
        dead.head[-1].bias.fill_(-1e3)  # every output clamped to 0: no gradient reaches the image
    live = create_model("cnn", width=2).eval()
    res = analyze(data, tmp_path / "a", [LoadedModel("dead", dead), LoadedModel("live", live)],
                  AnalysisConfig(n_bootstrap=5, attribution_per_u=1, kernel_ridge=False, baseline_components=(3,)),
                  seed=0, progress=False)
    by = {(e["model"], e["method"]): e for e in res["interpretability"]}
    assert by[("dead", "gradcam")]["all_zero"] and "attention" not in by[("dead", "gradcam")]
    assert not by[("live", "guided_backprop")]["all_zero"] and "attention" in by[("live", "guided_backprop")]
    qty = [e["quantity"] for e in res["crossover"]["estimates"]]
    assert not any("dead" in q for q in qty)
    assert any("dead Grad-CAM: every map is zero" in n for n in res["notes"])
