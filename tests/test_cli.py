"""The command line: ``xr-getregion demo`` runs the reference page's example."""

from __future__ import annotations

import ast
import subprocess
import sys

from xr_getregion.cli import main


def test_demo_prints_the_collection_and_both_tables(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "ImageCollection (5 images)" in out and "EPSG:32615" in out
    assert "Extracted pixel info (11 rows with the header):" in out
    assert "Point geometry example (11 rows with the header):" in out
    rows = [ast.literal_eval(line.strip()) for line in out.splitlines() if line.startswith("  [")]
    assert rows[0] == ["id", "longitude", "latitude", "time", "B2", "B3", "B4"]
    assert len(rows) == 22
    assert rows[1][:4] == [
        "LC08_023036_20200709",
        -90.49614697490799,
        34.85198299374928,
        1594303347000,
    ]
    assert any(None in row for row in rows[1:11])  # the cloud over the ROI


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "xr_getregion", "demo"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Extracted pixel info (11 rows with the header):" in done.stdout


def test_unknown_command_exits_with_usage():
    done = subprocess.run(
        [sys.executable, "-m", "xr_getregion", "nope"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "usage:" in done.stderr
