"""``moireu lattice MAP``: the moiré metrology command (--json, --plot, bad input)."""

import json
import math
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from moireu.cli import app
from moireu.errors import InputError


def _moire_file(tmp_path, theta=2.0, n=256, px=3.0):
    """A moiré-only map of an unstrained twist θ (three cosines of |g| = 2|G| sin(θ/2)) with a sidecar JSON."""
    G = 4 * math.pi / (math.sqrt(3) * 2.46)
    gabs = 2 * G * math.sin(math.radians(theta) / 2)
    x = (np.arange(n) + 0.5) * px
    X, Y = np.meshgrid(x, x)
    z = sum(np.cos(gabs * (math.cos(a) * X + math.sin(a) * Y)) for a in np.radians([10.0, 70.0, 130.0]))
    path = tmp_path / "tbg.npy"
    np.save(path, z)
    (tmp_path / "tbg.npy.json").write_text(json.dumps({"pixel_size": px}))
    return path


def test_lattice_json_and_plot(tmp_path):
    path = _moire_file(tmp_path)
    png = tmp_path / "fft.png"
    r = CliRunner().invoke(app, ["lattice", str(path), "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert abs(d["twist_deg"] - 2.0) < 0.01 and d["strain_percent"] < 0.02 and not d["atomic_resolved"]
    lam = 2.46 / (2 * math.sin(math.radians(1.0)))
    np.testing.assert_allclose(d["moire_wavelengths"], lam, rtol=2e-3)
    assert len(d["moire_vectors"]) == 3 and d["scanner"] is None and d["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # human report, pixel size given on the command line (overrides the sidecar)
    r = CliRunner().invoke(app, ["lattice", str(path), "--pixel-size", "1.5"])
    assert r.exit_code == 0, r.output
    assert "twist         θ = 4.0" in r.stdout and "moiré wavelengths" in r.stdout


def test_lattice_bad_input(tmp_path, monkeypatch, capsys):
    noise = tmp_path / "noise.npy"
    np.save(noise, np.random.default_rng(0).standard_normal((256, 256)))
    r = CliRunner().invoke(app, ["lattice", str(noise), "--pixel-size", "0.45"])
    assert isinstance(r.exception, InputError) and "no moiré lattice found" in str(r.exception)
    # through the console entry point: 'error: <reason>' and exit status 2
    from moireu.cli import main

    monkeypatch.setattr(sys, "argv", ["moireu", "lattice", str(noise)])  # no pixel size anywhere
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pixel size" in err, err
