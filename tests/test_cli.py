"""The `steelscan` command: help for every subcommand, one-line errors with a non-zero exit, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from steelscan.cli import app, main

COMMANDS = ["stats", "synth", "train", "evaluate", "classify", "detect", "segment", "tune", "grade", "models", "benchmark",
            "experiment"]


def test_every_subcommand_is_registered_with_help(capsys):
    main(["--help"])
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert name in listed
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Usage" in out and len(out.strip().splitlines()) > 3, name
    assert {c.name for c in app.registered_commands} >= set(COMMANDS) - {"benchmark", "experiment"}


@pytest.mark.parametrize("argv,expected", [
    (["stats", "/nonexistent/folder", "--format", "neu-cls"], "not found"),
    (["train", "/nonexistent.yaml"], "config file not found"),
    (["classify", "/nonexistent.bmp"], "no such file or folder"),
    (["evaluate", "nosuchmodel", "--data", "."], "model not found"),
    (["synth", "neu-cls", "/tmp/steelscan-never", "--n", "0"], "n"),
])
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("steelscan: error:") and expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "steelscan", "train", str(tmp_path / "x.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"steelscan: error: config file not found: {tmp_path / 'x.yaml'}"]


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "resnet50d" in out
