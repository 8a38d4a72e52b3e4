"""CLI plumbing (issue 13): unwritable --out and non-finite --set values are one `error:` line, exit 2."""

import subprocess
import sys

import pytest


def run(*args):
    p = subprocess.run([sys.executable, "-c", "from moireu.cli import main; main()", *args],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr


@pytest.mark.parametrize("args,msg", [
    (["bands", "--out", "/proc/moireu/bands"], "cannot write to --out"),
    (["bands", "--set", "lattice.interlayer_distance=inf", "--out", "/tmp/never"], "finite number"),
    (["dataset", "build", "--out", "/tmp/never.zarr", "--set", "stm.tip_height=inf"], "finite number"),
    (["dataset", "build", "--out", "/tmp/never.zarr", "--set", "stm.window_scale=inf"], "finite number"),
    (["bands", "--config", "/tmp"], "is a directory"),
])
def test_one_error_line_exit_2(args, msg):
    rc, err = run(*args)
    assert rc == 2 and err.startswith("error: ") and msg in err and "Traceback" not in err, err
