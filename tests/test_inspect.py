"""A tiny end-to-end inspection: export -> inspect -> defects.json, records, grade, report; resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from steelscan.cli import main
from steelscan.core.errors import SteelscanError
from steelscan.inspection.merge import MIN_PIECE_PX
from steelscan.deploy.predictors import load_predictor
from steelscan.inspection.chain import SegmenterChain
from steelscan.inspection.runner import finish_coil, folder_frames, inspect_frames, open_coil, read_frame
from steelscan.store import Store
from tests.service_helpers import coil_frames, tiny_artifact


@pytest.fixture(scope="module")
def coil_and_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("coil")
    coil_frames(root / "coil", n=6, seed=4)
    return root / "coil", tiny_artifact(root)


def test_tiny_end_to_end_inspect(coil_and_artifact, tmp_path, capsys):
    coil_dir, artifact = coil_and_artifact
    out = tmp_path / "out"
    assert main(["inspect", str(coil_dir), "--out", str(out), "--model", str(artifact)]) == 0
    text = capsys.readouterr().out
    assert "grade" in text and "report:" in text
    doc = json.loads((out / "defects.json").read_text())
    assert doc["coil"]["coil_id"] == "SYN000004" and doc["coil"]["n_frames"] == 6
    assert doc["grade"]["grade"] and isinstance(doc["periodic"], list) and doc["defects"]
    for d in doc["defects"]:
        assert {"id", "class", "confidence", "along_m", "across_mm", "length_mm", "width_mm", "area_mm2", "frame",
                "bbox"} <= set(d)
        assert 0 <= d["along_m"] <= doc["coil"]["length_m"] and d["area_mm2"] > 0
        assert d["area_px"] >= MIN_PIECE_PX  # specks are not defects
    assert (out / "report" / "report.html").is_file() and (out / "report" / "defects.csv").is_file()
    store = Store(str(out / "records.db"))
    assert store.frames_done("SYN000004") == set(range(6)) and store.coil("SYN000004")["status"] == "closed"
    store.close()
    # grade reads what inspect wrote
    assert main(["grade", str(out / "defects.json")]) == 0
    # a second run resumes: nothing re-inspected, the same defects
    assert main(["inspect", str(coil_dir), "--out", str(out), "--model", str(artifact)]) == 0
    assert json.loads((out / "defects.json").read_text())["defects"] == doc["defects"]


KILLER = """
import os, signal, sys
from pathlib import Path
from steelscan.deploy.predictors import load_predictor
from steelscan.inspection.chain import SegmenterChain
from steelscan.inspection.runner import folder_frames, inspect_frames, open_coil
from steelscan.store import Store
coil, paths = open_coil(Path(sys.argv[1]))
store = Store(sys.argv[3])
def die(k, s):
    if k == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-coil, right after frame 2 was committed
inspect_frames(coil, folder_frames(paths, coil.frame_shape), SegmenterChain(load_predictor(sys.argv[2], threads=1, batch_size=8)), store,
               on_frame=die)
"""


def test_resume_after_a_kill_keeps_committed_frames_and_adds_no_duplicates(coil_and_artifact, tmp_path):
    coil_dir, artifact = coil_and_artifact
    db = str(tmp_path / "killed.db")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(coil_dir), str(artifact), db], capture_output=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    coil, paths = open_coil(coil_dir)
    store = Store(db)
    assert store.frames_done(coil.coil_id) == {0, 1, 2}
    before = store.pieces(coil.coil_id)
    rt = SegmenterChain(load_predictor(artifact, threads=1, batch_size=8))
    stats = inspect_frames(coil, folder_frames(paths, coil.frame_shape), rt, store)
    assert stats == {**stats, "frames": 3, "resumed": 3}
    after = store.pieces(coil.coil_id)
    assert after[: len(before)] == before and len(set(after)) == len(after)
    resumed = finish_coil(coil, store)
    fresh = Store(str(tmp_path / "fresh.db"))
    inspect_frames(coil, folder_frames(paths, coil.frame_shape), rt, fresh)
    assert finish_coil(coil, fresh)["defects"] == resumed["defects"]


def test_bad_frames_and_sequences_get_clear_errors(coil_and_artifact, tmp_path):
    import shutil

    coil_dir, _ = coil_and_artifact
    bad = tmp_path / "bad"
    shutil.copytree(coil_dir, bad)
    frames = sorted((bad / "frames").iterdir())
    frames[3].unlink()
    with pytest.raises(SteelscanError, match="frames missing from the sequence"):
        open_coil(bad)
    (bad / "frames" / "000003.png").write_bytes(frames[2].read_bytes()[:200])  # truncated
    with pytest.raises(SteelscanError, match="truncated"):
        read_frame(bad / "frames" / "000003.png")
    import cv2

    cv2.imwrite(str(bad / "frames" / "000003.png"), np.zeros((128, 256), np.uint16))
    with pytest.raises(SteelscanError, match="16-bit"):
        read_frame(bad / "frames" / "000003.png")
    cv2.imwrite(str(bad / "frames" / "000003.png"), np.zeros((100, 256), np.uint8))
    with pytest.raises(SteelscanError, match="the coil's frames are 256x128"):
        read_frame(bad / "frames" / "000003.png", (128, 256))
    (bad / "frames" / "000003.png").write_bytes(b"")
    with pytest.raises(SteelscanError, match="empty"):
        read_frame(bad / "frames" / "000003.png")
    (bad / "manifest.yaml").write_text((coil_dir / "manifest.yaml").read_text().replace("mm_per_px_along: 1.0",
                                                                                        "mm_per_px_along: -1.0"))
    with pytest.raises(SteelscanError, match="mm_per_px_along must be"):
        open_coil(coil_dir, bad / "manifest.yaml")


def test_inspect_refuses_unknown_artifacts(coil_and_artifact, tmp_path, capsys):
    coil_dir, _ = coil_and_artifact
    (tmp_path / "x.onnx").write_bytes(b"junk")
    assert main(["inspect", str(coil_dir), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "x.onnx")]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err
