"""The `steelscan` command: help for every subcommand, one-line errors with a non-zero exit, no tracebacks."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from steelscan.cli import app, main

COMMANDS = ["stats", "convert", "synth", "train", "evaluate", "classify", "detect", "segment", "tune", "grade", "models", "benchmark",
            "experiment", "inspect", "evaluate-coil", "serve", "export"]


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


# ---------------------------------------------------------------------------------------- broken models, bad images
def _grey_png(path, side: int = 200, seed: int = 0):
    from PIL import Image
    import numpy as np

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)).save(path)
    return path


def _one_line_exit_2(argv, capsys, *words) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("steelscan: error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (argv, err)
    return err


def test_zero_byte_checkpoint_is_one_line_from_every_command(tmp_path, capsys):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    image = _grey_png(tmp_path / "a.png")
    for argv in (["classify", str(image), "--model", str(empty)],
                 ["detect", str(image), "--model", str(empty)],
                 ["segment", str(image), "--model", str(empty), "--out", str(tmp_path / "seg")],
                 ["export", str(empty), "--out", str(tmp_path / "x.onnx")]):
        _one_line_exit_2(argv, capsys, "empty.pt", "empty (0 bytes)")
    _one_line_exit_2(["evaluate", str(empty), "--data", str(tmp_path)], capsys)
    # a truncated or foreign .pt is the same kind of error
    (tmp_path / "cut.pt").write_bytes((Path(__file__).parents[1] / "src/steelscan/weights/neu-cls.pt").read_bytes()[:5000])
    _one_line_exit_2(["classify", str(image), "--model", str(tmp_path / "cut.pt")], capsys, "cut.pt",
                     "truncated or corrupt")
    (tmp_path / "notes.pt").write_text("not a checkpoint at all\n")
    _one_line_exit_2(["detect", str(image), "--model", str(tmp_path / "notes.pt")], capsys, "notes.pt",
                     "expected a torch.save zip file")


def test_zero_byte_gate_is_one_line(tmp_path, capsys):
    empty = tmp_path / "gate.pt"
    empty.write_bytes(b"")
    image = _grey_png(tmp_path / "a.png")
    _one_line_exit_2(["detect", str(image), "--model", "neu-det", "--gate", str(empty)], capsys, "gate.pt", "empty")


def test_classify_skips_a_bomb_and_a_1x1_image_and_classifies_the_rest(tmp_path, capsys):
    import json
    import struct

    from PIL import Image
    import numpy as np

    folder = tmp_path / "images"
    folder.mkdir()
    good = [_grey_png(folder / f"good{k}.png", seed=k) for k in range(2)]
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpeg, format="JPEG")
    bomb = bytearray(jpeg.getvalue())
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)  # 333 bytes declaring 65000 x 65000
    (folder / "bomb.jpg").write_bytes(bytes(bomb))
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(folder / "tiny.png")
    out = tmp_path / "out.json"
    assert main(["classify", str(folder), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "skipped 2 file(s)" in captured.err
    doc = json.loads(out.read_text())
    assert sorted(p["path"] for p in doc["predictions"]) == sorted(map(str, good))
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {"bomb.jpg", "tiny.png"}
    assert "4225000000 px" in reasons["bomb.jpg"] and "limit is" in reasons["bomb.jpg"]
    assert "1x1 px" in reasons["tiny.png"] and "at least 8 px" in reasons["tiny.png"]


def test_a_1x1_image_alone_is_refused_by_detect_and_segment(tmp_path, capsys):
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "tiny.png")
    assert main(["detect", str(tmp_path / "tiny.png"), "--model", "neu-det"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 file(s)" in err and "at least 8 px" in err and "Traceback" not in err
    assert main(["segment", str(tmp_path / "tiny.png"), "--model", "severstal", "--out", str(tmp_path / "seg")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 file(s)" in err and "at least 8 px" in err and "Traceback" not in err
