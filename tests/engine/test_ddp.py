"""torchrun with two gloo processes trains every task to identical weights on each rank (DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steelscan.engine.dist import weight_digest
from steelscan.engine.runs import load_checkpoint
from tests.conftest import REPO

RECIPES = {
    "classification": {"model": {"name": "mobilenetv3_small"}, "data": {"image_size": 32}},
    "detection": {"model": {"name": "frcnn_mobilenetv3_large"}, "optim": {"name": "sgd", "lr": 0.005},
                  "detector": {"min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32,
                               "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20,
                               "rpn_pre_nms_top_n_test": 20, "rpn_post_nms_top_n_test": 10,
                               "box_batch_size_per_image": 16, "n_samples": 0}},
    "segmentation": {"model": {"name": "unet_resnet18"}, "segmentation": {"crop": [64, 64]}},
}


@pytest.mark.slow
@pytest.mark.parametrize("task,fixture", [("classification", "tiny_folders"), ("detection", "tiny_yolo"),
                                          ("segmentation", "tiny_rle")])
def test_two_gloo_processes_end_with_identical_weights(task, fixture, tmp_path, request):
    root = request.getfixturevalue(fixture)
    recipe = {**RECIPES[task], "train": {"epochs": 1, "batch_size": 2, "max_steps": 3, "threads": 1},
              "out_dir": str(tmp_path / "runs")}
    recipe["data"] = {**recipe.get("data", {}), "root": str(root)}
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = Path(sys.executable).with_name("torchrun")
    port = {"classification": 29541, "detection": 29542, "segmentation": 29543}[task]
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m", "steelscan",
                           "train", str(cfg)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1  # rank 0 alone writes
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["world_size"] == 2
    digests = metrics["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    model, meta = load_checkpoint(runs[0])
    assert weight_digest(model) == digests[0]  # ...and they are the weights rank 0 saved
    assert meta.task == task
