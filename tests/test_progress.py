"""Progress in logs (issue 13): `bands` and `analyze` report progress when stderr is not a terminal."""

import io

from moireu.progress import LogProgress, progress_bar


def test_log_progress_lines_are_throttled_but_mark_changes_and_the_end():
    buf = io.StringIO()
    p = LogProgress("x", every=3600.0, stream=buf)
    with p:
        t = p.add_task("step a", total=100)
        for _ in range(99):
            p.advance(t)
        p.update(t, description="step b")
        p.advance(t)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[x] step a 0/100, elapsed 00:00")
    assert lines[1].startswith("[x] step b 99/100") and ", ETA " in lines[1]
    assert lines[2].startswith("[x] step b 100/100") and len(lines) == 3


def test_bands_progress_reaches_a_log(capsys):
    from moireu.cli.bands import compute_bands
    from moireu.config import load_config

    assert isinstance(progress_bar("bands"), LogProgress)  # pytest captures stderr: not a terminal
    compute_bands(load_config("demo", overrides=["lattice.index=1", "lattice.band_points=8", "lattice.dos_kmesh=2"]))
    err = capsys.readouterr().err
    assert "[bands] bands i=1 (28 atoms) 0/" in err and "elapsed" in err
