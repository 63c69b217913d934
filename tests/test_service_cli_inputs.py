"""Issue 14's command-line findings: zero-byte weights, decompression bombs in a folder, 1x1 frames, a named pipe
among the frames, a coil id with a trailing newline. Each is one line on stderr and exit 2 (or a skipped file
with its reason), never a traceback or a hang."""

from __future__ import annotations

import os
import struct
import threading

import numpy as np
import pytest
import yaml
from PIL import Image

from steelscan.cli import main
from steelscan.core.errors import ImageError, SteelscanError
from steelscan.inspection.runner import frame_paths, read_frame

GEOMETRY = ["--mm-per-px-across", "1", "--mm-per-px-along", "1", "--strip-width-mm", "256"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("steelscan: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def coil_folder(root, n: int, shape=(128, 256), manifest: dict | None = None):
    frames = root / "frames"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(frames / f"{k:06d}.png")
    if manifest is not None:
        (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return root


@pytest.mark.parametrize("argv", [
    ["classify", "{img}", "--model", "{zero}"], ["detect", "{img}", "--model", "{zero}"],
    ["segment", "{img}", "--model", "{zero}"], ["export", "{zero}"], ["evaluate", "{zero}", "--data", "{tmp}"],
    ["tune", "{zero}", "--data", "{tmp}"], ["inspect", "{coil}", "--out", "{tmp}/out", "--model", "{zero}", *GEOMETRY],
])
def test_zero_byte_weights_are_one_line_and_exit_2(tmp_path, capsys, argv):
    zero = tmp_path / "zero.pt"
    zero.write_bytes(b"")
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(img)
    coil = coil_folder(tmp_path / "coil", 2)
    args = [a.format(img=img, zero=zero, tmp=tmp_path, coil=coil) for a in argv]
    assert main(args) == 2
    assert "zero.pt is empty (0 bytes)" in one_line_error(capsys)


def test_a_decompression_bomb_in_a_folder_is_skipped_with_its_reason(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="JPEG")
    bomb = bytearray(buf.getvalue())
    i = bomb.find(b"\xff\xc0")
    bomb[i + 5 : i + 9] = struct.pack(">HH", 65000, 65000)  # 333 bytes declaring 65000 x 65000
    (folder / "a_bomb.jpg").write_bytes(bytes(bomb))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(folder / "b_good.png")
    assert main(["classify", str(folder)]) == 0
    out = capsys.readouterr()
    assert "b_good.png" in out.out and "Traceback" not in out.err
    assert "a_bomb.jpg" in out.err and "4225000000 px" in out.err.replace("\n", " ").replace("  ", " ")


def test_one_pixel_frames_are_refused_in_one_line(tmp_path, capsys):
    coil = coil_folder(tmp_path / "coil", 2, shape=(1, 1))
    with pytest.raises(ImageError, match="at least 8 px"):
        read_frame(coil / "frames" / "000000.png")
    assert main(["inspect", str(coil), "--out", str(tmp_path / "out"), *GEOMETRY]) == 2
    err = one_line_error(capsys)
    assert "1x1 px" in err and "at least 8 px" in err and "frame_overlap_px" not in err


def test_a_named_pipe_among_the_frames_is_skipped_not_read(tmp_path, caplog):
    coil = coil_folder(tmp_path / "coil", 2)
    os.mkfifo(coil / "frames" / "000002.png")
    (coil / "frames" / "000003.png").mkdir()  # a folder named like a frame, too
    found: list = []
    t = threading.Thread(target=lambda: found.append(frame_paths(coil)), daemon=True)
    t.start()
    t.join(timeout=10)
    if t.is_alive():
        with open(coil / "frames" / "000002.png", "wb"):
            pass
        pytest.fail("listing the frames hung on a named pipe")
    assert [p.name for p in found[0]] == ["000000.png", "000001.png"]
    assert "000002.png" in caplog.text and "not a regular file" in caplog.text


def test_frame_gaps_are_counted_without_a_set_of_every_number(tmp_path):
    coil = coil_folder(tmp_path / "coil", 2)
    Image.fromarray(np.zeros((128, 256), np.uint8)).save(coil / "frames" / "9999999.png")
    with pytest.raises(SteelscanError, match=r"missing from the sequence: 9999997 of 0\.\.9999999, the first is "
                                             r"number 2"):
        frame_paths(coil)


def test_a_manifest_coil_id_with_a_trailing_newline_is_refused(tmp_path, capsys):
    coil = coil_folder(tmp_path / "coil", 2, manifest={"coil_id": "C9\n", "mm_per_px_across": 1.0,
                                                       "mm_per_px_along": 1.0, "strip_width_mm": 300})
    from tests.service_helpers import tiny_artifact

    model = tiny_artifact(tmp_path)
    assert main(["inspect", str(coil), "--out", str(tmp_path / "out"), "--model", str(model)]) == 2
    assert "coil id must match" in one_line_error(capsys)
