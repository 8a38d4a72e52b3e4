"""``moireu.cli.pipeline.Pipeline``: markers skip finished stages, a newer input reruns a stage, a failing
stage stops the pipeline with its exit code, and every stage is logged with its command."""

import os
import time
from pathlib import Path

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


# a stand-in for `python -m moireu ARGS`: writes ARGS[1] bytes of "x" to ARGS[0] (or fails with exit 3)
_WRITE = ("import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, exist_ok=True); "
          "p.write_bytes(b'x' * int(sys.argv[2]))")
_FAIL = "import sys; sys.exit(3)"


def _pipe(tmp_path, run, digest, code):
    import sys

    p = Pipeline("paper", load_config("demo"), tmp_path / run, kept=tmp_path / "kept", digest=digest)
    p.exe = [sys.executable, "-c", code]
    return p


def test_kept_results_are_restored_on_a_fresh_run_and_refused_when_stale_or_edited(tmp_path):
    import json

    from moireu.cli.pipeline import KEEP_MAX_BYTES

    p = _pipe(tmp_path, "a", "d1", _WRITE)
    res = tmp_path / "a" / "r" / "res.json"
    p.stage("make", res, [str(res), "7"], keep=("r",))
    man = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    e = man["stages"]["make"]
    assert set(e["files"]) == {"r/res.json"} and e["provenance"]["git_commit"] and e["key"]
    assert (tmp_path / "kept" / "r" / "res.json").read_bytes() == b"x" * 7
    # another machine: no run directory, the command would fail, the kept result stands in
    q = _pipe(tmp_path, "b", "d1", _FAIL)
    rb = tmp_path / "b" / "r" / "res.json"
    assert q.reusable("make", [str(rb), "7"])
    q.stage("make", rb, [str(rb), "7"], keep=("r",))
    assert q.log[-1]["reused"] and rb.read_bytes() == b"x" * 7
    # other HF states (digest), other arguments, or an edited kept file: the stage runs again
    assert not _pipe(tmp_path, "c", "d2", _FAIL).reusable("make", [str(tmp_path / "c" / "r" / "res.json"), "7"])
    assert not q.reusable("make", [str(rb), "8"])
    (tmp_path / "kept" / "r" / "res.json").write_bytes(b"y" * 7)
    assert q.kept.check("make", q.key("make", [str(rb), "7"])) == "kept file r/res.json does not match its checksum"
    with pytest.raises(typer.Exit) as exc:
        _pipe(tmp_path, "d", "d1", _FAIL).stage("make", tmp_path / "d" / "r" / "res.json",
                                                [str(tmp_path / "d" / "r" / "res.json"), "7"], keep=("r",))
    assert exc.value.exit_code == 3
    # the same run directory with other HF states: its marker no longer counts, the stage runs again
    p.stage("make", res, [str(res), "7"], keep=("r",))
    assert p.log[-1]["skipped"]  # same settings: done already
    p2 = _pipe(tmp_path, "a", "d3", _WRITE)
    p2.stage("make", res, [str(res), "7"], keep=("r",))
    assert not p2.log[-1]["skipped"] and q.kept.__class__(tmp_path / "kept").entry("make")["key"] == p2.key(
        "make", [str(res), "7"])
    # a file too large to keep is listed, and a stage that must provide it is not reusable without it
    big = tmp_path / "a" / "big" / "w.pt"
    p.stage("big", big, [str(big), str(KEEP_MAX_BYTES + 1)], keep=("big",))
    e = json.loads((tmp_path / "kept" / "manifest.json").read_text())["stages"]["big"]
    assert e["files"] == {} and e["not_kept"][0].startswith("big/w.pt")
    r = _pipe(tmp_path, "e", "d1", _FAIL)
    args = [str(tmp_path / "e" / "big" / "w.pt"), str(KEEP_MAX_BYTES + 1)]
    assert r.reusable("big", args) and not r.reusable("big", args, needs=("big/w.pt",))


def test_paper_builds_no_store_when_every_stage_is_kept(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from moireu.cli import app
    from moireu.cli.pipeline import Pipeline as P

    calls, skipped = [], []
    monkeypatch.setattr(P, "reusable", lambda self, name, args, needs=(), config=None: True)
    cmds = {}
    monkeypatch.setattr(P, "stage", lambda self, name, marker, args, **k: (calls.append(name),
                                                                          cmds.setdefault(name, args)))
    monkeypatch.setattr(P, "skip", lambda self, name, why: skipped.append(name))
    monkeypatch.setattr("moireu.analysis.reproduction.write_doc", lambda src, doc: None)
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--seeds", "0", "--out", str(tmp_path / "run"),
                                 "--keep", str(tmp_path / "kept"), "--doc", str(tmp_path / "doc.md")])
    assert r.exit_code == 0, r.output
    assert skipped == ["dataset", "paper images"] and "dataset" not in calls
    assert calls[0] == "train ours cnn seed 0" and calls[3] == "train repro resnet18_paper seed 0"
    assert calls[-1] == "analysis ours"
    # nothing kept: the stores are built first
    calls.clear(), skipped.clear()
    monkeypatch.setattr(P, "reusable", lambda self, name, args, needs=(), config=None: False)
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--seeds", "0", "--out", str(tmp_path / "run2"),
                                 "--keep", str(tmp_path / "kept"), "--doc", str(tmp_path / "doc.md")])
    assert r.exit_code == 0, r.output
    assert calls[:2] == ["dataset", "train ours cnn seed 0"] and not skipped
    # the reference's analysis looks at its CNN alone (neither reference checkpoint is kept: one to retrain, not two)
    runs = cmds["analysis paper"][cmds["analysis paper"].index("--runs") + 1:]
    assert [Path(r).name for r in runs] == ["cnn_paper_s0"]
    assert calls.index("paper images") == calls.index("train repro resnet18_paper seed 0") - 1
    # the reference networks on fewer seeds than ours (each costs 30–60 min on a CPU)
    calls.clear(), skipped.clear(), cmds.clear()
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--seeds", "0,1", "--repro-seeds", "1",
                                 "--out", str(tmp_path / "run5"), "--keep", str(tmp_path / "kept"),
                                 "--doc", str(tmp_path / "doc.md")])
    assert r.exit_code == 0, r.output
    trained = [c for c in calls if c.startswith("train")]
    assert trained == ["train ours cnn seed 0", "train ours cnn seed 1", "train repro resnet18_paper seed 1",
                       "train repro cnn_paper seed 1"]
    runs = cmds["analysis paper"][cmds["analysis paper"].index("--runs") + 1:]
    assert [Path(r).name for r in runs] == ["cnn_paper_s1"]
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--repro-seeds", "x", "--out", str(tmp_path / "r6")])
    assert "--repro-seeds must be comma-separated integers" in str(r.exception)  # exit 2 through moireu.cli.main
    # ours alone: no reference images, no reference networks
    calls.clear(), skipped.clear()
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--seeds", "0", "--out", str(tmp_path / "run3"),
                                 "--keep", str(tmp_path / "kept"), "--doc", str(tmp_path / "doc.md"),
                                 "--no-reproduction"])
    assert r.exit_code == 0, r.output
    assert skipped == ["paper images"] and not any("repro" in c or c == "analysis paper" for c in calls)
    # a blind store of another dataset seed, built just before the first evaluation on it
    calls.clear(), skipped.clear()
    r = CliRunner().invoke(app, ["paper", "--preset", "demo", "--seeds", "0", "--out", str(tmp_path / "run4"),
                                 "--keep", str(tmp_path / "kept"), "--doc", str(tmp_path / "doc.md"),
                                 "--no-reproduction", "--blind-seed", "7", "--blind-u", "3"])
    assert r.exit_code == 0, r.output
    assert calls.index("blind store") == calls.index("evaluate ours cnn seed 0 blind") - 1
    assert "blind store" not in str(skipped)


def test_more_acquisitions_for_ours_leave_the_reference_results_valid(tmp_path):
    """The reference stages are keyed on the config as they see it (:func:`reference_view`): our networks
    getting more acquisitions (n_offsets) beyond the reference's (paper_n_offsets) changes our keys, not theirs;
    the reference's own count, or anything else, changes theirs."""
    from moireu.cli.paper import reference_view

    def keys(**ds):
        cfg = load_config("demo").model_copy(update={"dataset": load_config("demo").dataset.model_copy(update=ds)})
        p = Pipeline("paper", cfg, tmp_path / "run", digest="d")
        return p.key("train", ["x"]), p.key("train", ["x"], reference_view(cfg.to_dict()))

    ours8, ref8 = keys(n_offsets=8, paper_n_offsets=8)
    ours24, ref24 = keys(n_offsets=24, paper_n_offsets=8)
    assert ours8 != ours24 and ref8 == ref24
    # the view is the config an 8-acquisition store had before paper_n_offsets existed
    assert keys(n_offsets=8, paper_n_offsets=None)[1] == ref8
    assert keys(n_offsets=24, paper_n_offsets=12)[1] != ref8
    assert keys(n_offsets=24, paper_n_offsets=8, biases=(0.0,))[1] != ref8
