"""``moireu demo`` end to end on a tiny system (TBG i = 1, 16 × 16 images): every stage runs, the
report lists every figure, and a rerun skips finished stages (the input-change rerun of a stage is
tested on :class:`moireu.cli.pipeline.Pipeline` directly)."""

import json
import os
import subprocess
import sys

import pytest

TINY = ["lattice.index=1", "dataset.U_values=[0.0, 2.0, 4.0, 6.0]", "dataset.heldout=2", "dataset.n_offsets=5",
        "dataset.biases=[0.0]", "stm.n_pixels=16", "stm.map_pixels=128", "stm.kmesh=[2, 2]", "hf.kmesh=[2, 2]",
        "train.epochs=2", "train.ensemble=2", "train.input_size=0", "analysis.n_bootstrap=5",
        "analysis.attribution_per_u=2", "analysis.baseline_components=[2]", "analysis.pca_components=2",
        "analysis.pca_max_components=4"]


def demo(out, *extra):
    cmd = [sys.executable, "-m", "moireu", "demo", "--preset", "demo", "--out", str(out)]
    for s in TINY:
        cmd += ["--set", s]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.mark.timeout(900)
def test_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    r = demo(out, "--full")  # + ResNet-18 and robustness
    report = out / "report.html"
    assert f"report: {report.resolve()}" in r.stdout
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 10  # bands, LDOS/FT, HF sweep, parity, PCA, Grad-CAM, …
    timing = json.loads((out / "demo_timing.json").read_text())
    assert all(not s["skipped"] and s["rc"] == 0 for s in timing["stages"])
    for split in ("test", "heldout"):
        ev = json.loads((out / "train_cnn" / f"eval_{split}.json").read_text())
        assert ev["n"] > 0 and 0.0 <= ev["coverage90"] <= 1.0
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert [m["name"] for m in analysis["models"]] == ["cnn", "resnet18"]
    assert analysis["crossover"]["estimates"]
    assert not (out / "train_cnn_mild").exists()  # the demo trains on the measurement model only
    sweep = json.loads((out / "hf" / "sweep.json").read_text())
    assert sweep["points"][0]["energy_meV"] == 0.0 and "total_energy" not in sweep["points"][0]
    assert "energy_meV" in html and isinstance(sweep["energy_reference"][0]["total_energy_eV"], float)

    # rerun: every stage but the (idempotent) dataset build and the report is skipped
    demo(out, "--full")
    timing = json.loads((out / "demo_timing.json").read_text())
    ran = {s["stage"] for s in timing["stages"] if not s["skipped"]}
    assert ran == {"dataset", "report"}, ran

