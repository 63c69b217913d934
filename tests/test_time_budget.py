"""`train.time_budget_minutes` (every task): the training clock, the stop after an optimiser step, the
budget-following schedule, the config check, and a budgeted `fit` on a tiny synthetic NEU-DET."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from steelscan.config import config_from_dict, load_config
from steelscan.core.errors import SteelscanError
from steelscan.engine.clock import TrainingClock
from steelscan.engine.fit import fit
from steelscan.engine.loop import train_one_epoch
from steelscan.engine.optim import make_scheduler
from steelscan.tasks.detection.task import detection_step
from tests.conftest import REPO

torch.set_num_threads(1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clock_counts_only_running_time_against_the_budget():
    t = FakeClock()
    clock = TrainingClock(1.0, clock=t)  # 60 s
    clock.start()
    t.now += 30
    clock.pause()
    t.now += 1000  # evaluating: not counted
    assert clock.seconds == 30 and clock.fraction() == 0.5 and not clock.exhausted()
    clock.start()
    t.now += 30
    assert clock.seconds == 60 and clock.exhausted()
    unlimited = TrainingClock(None, clock=t)
    unlimited.start()
    t.now += 1e9
    assert unlimited.fraction() == 0.0 and not unlimited.exhausted()


class LossModel(nn.Module):
    """Stands in for a detector in training mode: model(images, targets) -> dict of losses."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, images, targets):
        return {"a": (self.w * torch.stack([im.mean() for im in images]).sum()) ** 2}


def _loader(n: int):
    return [([torch.rand(1, 8, 8)], [{"boxes": torch.zeros(0, 4)}]) for _ in range(n)]


class CountingLoader(list):
    """A list of batches that records how many were drawn."""

    drawn = 0

    def __iter__(self):
        for batch in list.__iter__(self):
            self.drawn += 1
            yield batch


@pytest.mark.parametrize("grad_accum,asks_to_stop,expected_batches", [(1, 3, 3), (2, 2, 4)])
def test_stop_is_asked_after_each_optimiser_step_and_ends_the_epoch(grad_accum, asks_to_stop, expected_batches):
    model = LossModel()
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= asks_to_stop

    loader = CountingLoader(_loader(10))
    losses = train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), detection_step,
                             torch.device("cpu"), grad_accum=grad_accum, stop=stop)
    assert loader.drawn == expected_batches and len(asked) == asks_to_stop and "loss" in losses


def test_without_stop_the_epoch_runs_to_the_end():
    model = LossModel()
    losses = train_one_epoch(model, _loader(5), torch.optim.SGD(model.parameters(), lr=0.01), detection_step,
                             torch.device("cpu"))
    assert set(losses) == {"loss", "a"}


def test_schedule_follows_the_budget_share_after_warm_up():
    cfg = config_from_dict({"task": "detection", "data": {"format": "neu-det"}, "model": {"name": "frcnn_mobilenetv3_large"},
                            "optim": {"lr": 1.0, "warmup_epochs": 1}, "train": {"epochs": 1000, "time_budget_minutes": 1}})
    t = FakeClock()
    clock = TrainingClock(1.0, clock=t)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(cfg, opt, steps_per_epoch=2, progress=clock.fraction)

    def step() -> None:
        opt.step()
        sched.step()

    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # warm-up: step 0 of 2
    clock.start()
    step()
    step()  # warm-up done, no time spent: the top of the cosine
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0, abs=1e-3)
    t.now += 30  # half the budget: the middle of the cosine, whatever the (tiny) step share
    step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.505, abs=1e-3)
    t.now += 60  # past the budget: the floor, 1% of the base rate
    step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_budget_is_positive_and_for_every_task():
    with pytest.raises(SteelscanError, match=r"train.time_budget_minutes.*greater than 0"):
        config_from_dict({"task": "detection", "train": {"time_budget_minutes": 0}})
    for task in ("classification", "detection", "segmentation"):
        assert config_from_dict({"task": task, "train": {"time_budget_minutes": 5}}).train.time_budget_minutes == 5


def test_budgeted_fit_stops_after_the_first_step_and_still_evaluates(tmp_path):
    from steelscan.data.synthetic import write_neu_det

    det = tmp_path / "det"
    write_neu_det(det, n=8, seed=3, workers=1, class_counts={"crazing": 4, "scratches": 4})
    cfg = load_config(REPO / "configs" / "neu_det_tiny.yaml", [
        f"data.root={det}", f"out_dir={tmp_path / 'runs'}", "train.threads=1", "train.epochs=50",
        "train.max_steps=null", "train.time_budget_minutes=0.0001", "detector.n_samples=0"])
    run = fit(cfg, progress=False)
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["history"]) == 1  # 6 ms of budget: spent by the first step of epoch 1 of 50
    assert m["time_budget_minutes"] == 0.0001 and 0 < m["training_minutes_excluding_eval"] <= m["train_minutes"]
    assert m["map50_95"] is not None and m["n_images"] == 2  # the final evaluation ran (COCO mAP too)
    assert (run / "model.pt").is_file()
