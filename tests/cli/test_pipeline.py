"""``moireu.cli.pipeline.Pipeline``: markers skip finished stages, a newer input reruns a stage, a failing
stage stops the pipeline with its exit code, and every stage is logged with its command."""

import os
import time

import pytest
import typer

from moireu.cli.pipeline import Pipeline
from moireu.config import load_config


def test_stages_skip_rerun_on_newer_input_and_stop_on_failure(tmp_path):
    logged = []
    p = Pipeline("demo", load_config("demo"), tmp_path / "run", on_stage=lambda log: logged.append(len(log)))
    assert (tmp_path / "run" / "config.toml").is_file() and p.conf[-1] == str(tmp_path / "run" / "config.toml")
    marker, inp = tmp_path / "run" / "models.json", tmp_path / "run" / "input.txt"
    inp.write_text("x")
    time.sleep(0.01)
    p.stage("models", marker, ["models", "--json"], stdout_to=marker, inputs=(inp,))
    assert marker.is_file() and '"cnn_paper"' in marker.read_text()
    p.stage("models", marker, ["models", "--json"], stdout_to=marker, inputs=(inp,))
    assert p.log[-1]["skipped"] and p.log[-1]["command"] == "moireu models --json"
    later = marker.stat().st_mtime + 5
    os.utime(inp, (later, later))  # the input changed after the marker: the stage reruns
    p.stage("models", marker, ["models", "--json"], stdout_to=marker, inputs=(inp,))
    assert not p.log[-1]["skipped"] and p.log[-1]["rc"] == 0
    with pytest.raises(typer.Exit) as exc:
        p.stage("bad", tmp_path / "run" / "never", ["no-such-command"])
    assert exc.value.exit_code == 2 and p.log[-1]["rc"] == 2
    assert logged == [1, 2, 3, 4]
