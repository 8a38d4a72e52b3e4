"""The HTML report: content, graceful degradation, and a real render in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from moireu.analysis.report import REFERENCE, metric_cell, write_report
from moireu.config import load_config, save_resolved
from moireu.errors import InputError

CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var d = document.createElement('div'); d.id = 'imgcheck';
  d.textContent = 'IMGCHECK total=' + imgs.length + ' bad=' + bad;
  document.body.appendChild(d);
});
</script>"""


def _png(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.linspace(0, 1, 10), np.linspace(0, 1, 10) ** 2)
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data):
    from moireu.analysis.run import analyze

    rd = tmp_path_factory.mktemp("run")
    save_resolved(load_config("demo"), rd)
    _png(rd / "bands" / "bands.png", "bands")
    (rd / "bands" / "bands.json").write_text(json.dumps({"theta_deg": 4.41, "bandwidth_meV": 12.3, "n_orb": 676}))
    _png(rd / "stm" / "ldos_map.png", "LDOS")
    _png(rd / "train_cnn" / "curves.png", "curves")
    _png(rd / "train_cnn" / "parity_test.png", "parity")
    (rd / "train_cnn" / "eval_test.json").write_text(json.dumps({"metrics": {"mae": 0.21, "mae_std": 0.03,
                                                                             "rmse": 0.3, "r2": 0.97}}))
    (rd / "train_cnn" / "robustness.json").write_text(json.dumps({"clean": {"mae": 0.2}, "noisy": {"mae": 0.4}}))
    idx_rng = np.random.default_rng(0)
    g = idx_rng.permutation(np.flatnonzero(data.grid))
    idx = {"train": g[:30], "val": g[30:40], "test": g[40:], "heldout": np.flatnonzero(data.heldout)}
    from moireu.config import AnalysisConfig

    analyze(data, rd / "analysis", [], AnalysisConfig(n_bootstrap=20, baseline_components=(3,), kernel_ridge=False),
            split_idx=idx, progress=False)
    write_report(rd)
    return rd


def test_report_contents(run_dir):
    html = (run_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    n_img = html.count("<img ")
    assert n_img >= 10 and html.count("data:image/png;base64,") == n_img  # self-contained
    assert not re.search(r'<img [^>]*src="(?!data:)', html)
    import html as _html

    for ref in REFERENCE:
        assert _html.escape(ref["model"]) in html
    # the reference paper is named and its rows are marked as another system; the report leads with metrics
    assert "arXiv:2602.18890" in html and "another system" in html
    assert html.index('id="metrics"') < html.index('id="setup"')
    assert "0.14 ± 0.03" in html and "0.43" in html
    assert "0.210 ± 0.03" in html  # the model's eval metrics
    assert "PCA(3)+ridge" in html and "U_c" in html
    assert "i = 7" in html and "4.408°" in html  # physical setup from config.toml
    assert "Hartree–Fock sweep: not run" in html  # hf/ missing → graceful


def test_report_degrades_gracefully(tmp_path):
    (tmp_path / "empty").mkdir()
    out = write_report(tmp_path / "empty")
    html = out.read_text()
    assert html.count(": not run") >= 6 and "<img" not in html
    with pytest.raises(InputError):
        write_report(tmp_path / "missing")


def test_report_leads_with_the_kept_paper_table(tmp_path):
    import json

    (tmp_path / "run").mkdir()
    rep = tmp_path / "reproduction.json"
    rep.write_text(json.dumps({"config": {"lattice": {"index": 9}}, "note": "n",
                               "rows": [{"source": "ours", "model": "cnn", "test_mae": "0.05", "runs": 1}]}))
    html = write_report(tmp_path / "run", paper=rep).read_text()
    assert "Paper / reproduction / ours — lattice index i = 9" in html and "0.05" in html
    assert "not in this run" in write_report(tmp_path / "run").read_text()


def test_metric_cell_formats():
    assert metric_cell({"MAE": 0.5, "MAE_std": 0.05}, "mae") == "0.500 ± 0.05"
    assert metric_cell({"test": 1}, "r2") == "–"
    assert metric_cell({"metrics": {"r2": 0.9}}, "r2") == "0.900"


def _chromium() -> str | None:
    from moireu.cli.common import which_chromium

    exe = which_chromium()
    if exe is None and shutil.which("apt-get"):
        try:
            subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, timeout=900,
                           capture_output=True)
        except (OSError, subprocess.SubprocessError):
            pass
        exe = which_chromium()
    return exe


def test_report_renders_in_chromium(run_dir, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium: not installed and `apt-get install chromium` was not possible here")
    html = (run_dir / "report.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>")
    page = tmp_path / "check.html"
    page.write_text(html)
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    r = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r"IMGCHECK total=(\d+) bad=(\d+)", r.stdout)
    assert m, f"chromium did not run the check script; stderr: {r.stderr[-2000:]}"
    total, bad = int(m.group(1)), int(m.group(2))
    assert total == html.count("<img ") and total >= 10
    assert bad == 0, f"{bad} of {total} images failed to load"
    shot = run_dir / "report_screenshot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,4000", (run_dir / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000
