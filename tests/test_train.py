"""The engine end to end on synthetic NEU data (labelled synthetic), DDP with gloo, and a few real steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from steelscan.cli import main
from steelscan.config import load_config
from steelscan.engine.runs import load_checkpoint
from steelscan.engine.dist import weight_digest as _weight_digest
from steelscan.engine.fit import fit
from tests.conftest import REPO, shared_data

TINY = ["model.name=mobilenetv3_small", "data.image_size=48", "train.epochs=1", "train.batch_size=8"]


@pytest.fixture(scope="module")
def synth_neu(tmp_path_factory) -> tuple[Path, Path]:
    from steelscan.data.synthetic import write_neu_cls, write_neu_det

    root = tmp_path_factory.mktemp("synth")
    write_neu_cls(root / "cls", n=48, seed=3, workers=1)  # 8 per class: numbers 1..8, of which 4 is val
    write_neu_det(root / "det", n=48, seed=3, workers=1)
    return root / "cls", root / "det"


def _cfg(tmp_path, synth_neu, *extra):
    cls, det = synth_neu
    return load_config(None, [*TINY, f"data.root={cls}", f"augment.det_root={det}", f"out_dir={tmp_path}", *extra])


def test_fit_writes_a_complete_run_folder(tmp_path, synth_neu):
    run = fit(_cfg(tmp_path, synth_neu, "augment.improved_cutout=0.5", "train.tta=true"))
    for name in ("config.yaml", "split.json", "metrics.json", "curves.png", "confusion.png", "model.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["tta"] is True
    assert 0.0 <= metrics["accuracy"] <= 1.0 and set(metrics["per_class"]) == {
        "crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"}
    split = json.loads((run / "split.json").read_text())
    assert all(int(Path(k).stem.rsplit("_", 1)[1]) % 5 == 4 for k in split["val"])  # names keep their suffix
    assert not set(split["train"]) & set(split["val"])
    # The resolved config reloads to the same config: the run can be repeated from its own folder.
    assert load_config(run / "config.yaml") == load_config(run / "config.yaml", [])
    model, meta = load_checkpoint(run)
    assert meta.input_size == (48, 48) and meta.class_names[0] == "crazing"


def test_same_seed_same_weights(tmp_path, synth_neu):
    a = fit(_cfg(tmp_path / "a", synth_neu, "train.max_steps=3"))
    b = fit(_cfg(tmp_path / "b", synth_neu, "train.max_steps=3"))
    c = fit(_cfg(tmp_path / "c", synth_neu, "train.max_steps=3", "seed=1"))
    da, db, dc = (_weight_digest(load_checkpoint(r)[0]) for r in (a, b, c))
    assert da == db != dc


def test_binary_gate_mode_trains(tmp_path, synth_neu):
    run = fit(_cfg(tmp_path, synth_neu, "data.binary=true", "augment.improved_cutout=1.0", "train.max_steps=2"))
    _, meta = load_checkpoint(run)
    assert meta.class_names == ("clean", "defect") and meta.model_kwargs["num_classes"] == 2


@pytest.mark.parametrize("loss,extra", [("weighted_ce", []), ("softmax_focal", ["imbalance.sampler=balanced"]),
                                        ("ce", ["imbalance.oversample_to={crazing: 12}", "data.limit_per_class={crazing: 2}"])])
def test_imbalance_options_train(tmp_path, synth_neu, loss, extra):
    run = fit(_cfg(tmp_path, synth_neu, f"loss.name={loss}", "train.max_steps=2", *extra))
    assert (run / "metrics.json").is_file()


def test_cli_train_evaluate_classify(tmp_path, synth_neu, capsys):
    cls, det = synth_neu
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"model: {{name: mobilenetv3_small}}\ndata: {{root: {cls}, image_size: 48}}\n"
                   f"train: {{epochs: 1, batch_size: 8, max_steps: 2}}\nout_dir: {tmp_path / 'runs'}\n")
    assert main(["train", str(cfg)]) == 0
    run = next((tmp_path / "runs").iterdir())
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data", str(cls), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("task", "accuracy", "macro_f1", "per_class", "n_images", "ms_per_image"):
        assert key in res
    # 8 numbers per class; No. 5 is NEU's held-out fifth, which the neu-cls reader leaves out (48 - 6 images)
    assert res["task"] == "classification" and res["n_images"] == 42 and res["ms_per_image"] > 0
    assert main(["evaluate", str(run), "--data", str(cls), "--split", "val", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_images"] == 6  # numbers 1..8 per class: only No. 4 is validation

    # Bad files are skipped and logged, never fatal; the good ones are classified.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.bmp").write_text("not an image")
    good = cv2.imread(str(next(cls.glob("Cr_*.bmp"))), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(bad / "Cr_1.bmp"), good)
    (bad / "Cr_2.bmp").write_bytes((bad / "Cr_1.bmp").read_bytes()[:5000])  # truncated BMP
    cv2.imwrite(str(bad / "Cr_3.png"), np.zeros((64, 300), np.uint8))  # another size: resized
    pred = tmp_path / "pred.json"
    capsys.readouterr()
    assert main(["classify", str(bad), "--model", str(run), "--json", str(pred)]) == 0
    res = json.loads(pred.read_text())
    assert sorted(Path(p["path"]).name for p in res["predictions"]) == ["Cr_1.bmp", "Cr_3.png"]
    assert sorted(Path(s["path"]).name for s in res["skipped"]) == ["Cr_2.bmp", "notes.bmp"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["classify", str(empty), "--model", str(run)]) == 2
    assert "expected image files" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["evaluate", "no-such-model", "--data", str(cls)]) == 2


def test_ddp_two_processes_end_with_identical_weights(tmp_path, synth_neu):
    cls, _ = synth_neu
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(f"model: {{name: mobilenetv3_small}}\ndata: {{root: {cls}, image_size: 48}}\n"
                   f"train: {{epochs: 2, batch_size: 4, threads: 1}}\nout_dir: {tmp_path / 'runs'}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_port=29533", "-m", "steelscan", "train", str(cfg)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1  # rank 0 alone writes
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # ...and they are the weights rank 0 saved.
    assert _weight_digest(load_checkpoint(runs[0])[0]) == digests[0]


def test_a_few_steps_on_real_neu_cls(tmp_path):
    root = shared_data("neu-cls")
    run = fit(load_config(None, [*TINY, f"data.root={root}", "train.max_steps=3", f"out_dir={tmp_path}"]))
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 1080 and len(split["val"]) == 360
    assert json.loads((run / "metrics.json").read_text())["n_images"] == 360
    assert torch.isfinite(torch.tensor(json.loads((run / "metrics.json").read_text())["history"][0]["train_loss"]))


def test_imbalance_experiment_compares_variants(tmp_path, synth_neu, capsys):
    cls, _ = synth_neu
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"base:\n  model: {{name: mobilenetv3_small}}\n  data: {{root: {cls}, image_size: 48, limit_per_class: {{crazing: 2}}}}\n"
        f"  train: {{epochs: 1, batch_size: 8, max_steps: 2}}\n"
        f"variants:\n  plain: []\n  weighted: ['loss.name=weighted_ce']\n")
    assert main(["experiment", "imbalance", str(exp), "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["variant"] for r in res["rows"]] == ["plain", "weighted"]
    assert res["limit_per_class"] == {"crazing": 2} and "crazing" in res["rows"][0]["recall"]
    assert (tmp_path / "out" / "recall.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "plain" in printed and "weighted" in printed and "recall" in printed
    # A bad variant is refused before anything trains.
    exp.write_text(exp.read_text() + "  broken: ['loss.nam=ce']\n")
    assert main(["experiment", "imbalance", str(exp), "--out", str(tmp_path / "out2")]) == 2
    assert "did you mean 'loss.name'" in capsys.readouterr().err and not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_ablation_table_prints_views_and_the_paper_and_continues(tmp_path, synth_neu, capsys):
    cls, _ = synth_neu
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"base:\n  model: {{name: mobilenetv3_small}}\n  data: {{root: {cls}, image_size: 48}}\n"
        f"  train: {{epochs: 1, batch_size: 8, max_steps: 2}}\n"
        f"variants:\n  plain: []\n  dcn: ['model.dcn=true']\n"
        f"reference: {{plain: 97.5}}\nreference_source: a paper\n")
    out = tmp_path / "out"
    assert main(["experiment", "ablation", str(exp), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "classification" and [r["variant"] for r in res["rows"]] == ["plain", "dcn"]
    views = res["rows"][0]["accuracy_by_view"]
    assert set(views) == {"original", "hflip", "vflip", "tta"} and all(0 <= v <= 1 for v in views.values())
    printed = capsys.readouterr().out
    assert "TTA" in printed and "97.50" in printed and "paper" in printed
    # The same command again reads finished variants back; a variant cut short resumes from its last.pt.
    dcn_run = Path(res["rows"][1]["run"])
    (dcn_run / "metrics.json").unlink()
    assert main(["experiment", "ablation", str(exp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "plain: done before" in printed and "dcn: resuming" in printed
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([Path(r["run"]).name for r in res["rows"]])
    exp.write_text(exp.read_text().replace("reference: {plain: 97.5}", "reference: {other: 1.0}"))
    assert main(["experiment", "ablation", str(exp), "--out", str(out)]) == 2
    assert "reference names variants it lacks" in capsys.readouterr().err
