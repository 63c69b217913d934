"""`fit(cfg)`: train any task from a config and write a run folder.

The run folder holds config.yaml (resolved), data.json (layout, class names, the reader's problems),
split.json, metrics.json, the task's plots, curves, model.pt (the best checkpoint on validation, with its
`ModelMeta`) and last.pt (weights, optimiser, schedule and history: `train.resume` continues from it).
Single process or torchrun + DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 evaluates,
logs and writes. Mixed precision on CUDA when `train.amp`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from steelscan import __version__
from steelscan.config import RunConfig, config_from_dict, dump_config, load_config, require_data_root
from steelscan.core.errors import ConfigError, SteelscanError
from steelscan.data.formats import read_data
from steelscan.data.formats.base import LabelledData
from steelscan.data.splits import split_items
from steelscan.engine.clock import TrainingClock
from steelscan.engine.dist import any_rank, dist_info, gather_weight_digests
from steelscan.engine.loop import train_one_epoch
from steelscan.engine.optim import make_optimizer, make_scheduler
from steelscan.core.progress import Tracked
from steelscan.models import create_model, list_models, model_entry
from steelscan.engine.runs import CHECKPOINT, init_weights, new_run_dir, save_checkpoint, write_json

log = logging.getLogger("steelscan.train")
LAST = "last.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_training_data(cfg: RunConfig) -> LabelledData:
    """The config's data set (and its extra folder, appended with the same classes), checked against the task."""
    data = read_data(require_data_root(cfg), cfg.data.format)
    if cfg.data.extra_root:
        extra = read_data(cfg.data.extra_root, cfg.data.format or data.format)
        if extra.class_names != data.class_names or extra.task != data.task:
            raise ConfigError(f"data.extra_root {cfg.data.extra_root} holds {extra.task} classes {extra.class_names}; "
                              f"expected those of data.root: {data.task} {data.class_names}")
        data.items += extra.items
        data.problems += extra.problems
    if cfg.task is not None and cfg.task != data.task:
        raise ConfigError(f"task is {cfg.task} but {data.root} is {data.format} data, a {data.task} layout")
    if data.problems:
        counts = ", ".join(f"{n} {k}" for k, n in data.problem_counts().items())
        log.warning("%s: %d label problem(s) skipped or fixed (%s); `steelscan stats %s` lists them",
                    data.root, len(data.problems), counts, data.root)
    return data


def resolve_task(cfg: RunConfig, data: LabelledData) -> RunConfig:
    """Fill what the config leaves to the data: the task, and check the model fits it."""
    if cfg.task is None:  # validated again: checks across sections (loss.name against the task) need the task
        cfg = config_from_dict(cfg.model_dump(mode="json"), [f"task={data.task}"],
                               f"(task {data.task} from {data.format} data {data.root})")
    entry = model_entry(cfg.model.name)
    if entry.task != cfg.task:
        raise ConfigError(f"model.name {cfg.model.name!r} is a {entry.task} model but task is {cfg.task}; "
                          f"expected one of {', '.join(list_models(task=cfg.task))}")
    return cfg


def fit(cfg: RunConfig, progress: bool = True) -> Path | None:
    """Train from a config; return the run folder (None on ranks other than 0)."""
    rank, world, local_rank = dist_info()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but no CUDA device is available (use device: cpu)")
    if world > 1:
        dist.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cfg.device == "cuda" else "cpu")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _fit(cfg, rank, world, device, progress and rank == 0)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _fit(cfg: RunConfig, rank: int, world: int, device: torch.device, progress: bool) -> Path | None:
    from steelscan.tasks.base import get_task

    data = read_training_data(cfg)
    cfg = resolve_task(cfg, data)
    task = get_task(cfg.task)
    split = split_items(data, cfg.data.val_fraction, cfg.seed, cfg.data.val_remainders)
    if not split.train or not split.val:
        raise SteelscanError(f"empty split: {len(split.train)} train / {len(split.val)} val images from {data.root}")
    seed_everything(cfg.seed)  # the same seed on every rank: identical initial weights
    job = task.prepare(cfg, data, split, device)
    model = create_model(cfg.model.name, **job.model_kwargs)
    if cfg.model.init and not cfg.train.resume:
        copied, fresh = init_weights(model, cfg.model.init)
        if rank == 0:
            log.info("model.init: %d tensors from %s, %d fresh%s", copied, cfg.model.init, len(fresh),
                     f" (e.g. {', '.join(fresh[:3])})" if fresh else "")
    model = model.to(device)
    net = DistributedDataParallel(model, find_unused_parameters=job.find_unused_parameters) if world > 1 else model

    g = torch.Generator().manual_seed(cfg.seed)
    sampler = job.sampler
    if world > 1:
        sampler = DistributedSampler(job.train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(job.train_set, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=g, num_workers=cfg.train.num_workers, collate_fn=job.collate_fn,
                        drop_last=len(job.train_set) > cfg.train.batch_size * world,
                        persistent_workers=cfg.train.num_workers > 0)
    optimizer = make_optimizer(cfg, net.parameters())
    steps = min(len(loader), cfg.train.max_steps or len(loader))
    clock = TrainingClock(cfg.train.time_budget_minutes)
    scheduler = make_scheduler(cfg, optimizer, math.ceil(steps / cfg.train.grad_accum),
                               progress=clock.fraction if clock.budget_s is not None else None)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp and device.type == "cuda")
    ema = make_ema(model, cfg.train.ema_decay)
    evaluated = model if ema is None else ema.module  # what is validated and saved as model.pt
    meta = job.meta.model_copy(update={"data_format": data.format, "steelscan_version": __version__})

    state = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "seconds": 0.0}
    run_dir = None
    if cfg.train.resume:
        run_dir = Path(cfg.train.resume)
        state = _load_last(run_dir, model, optimizer, scheduler, scaler, ema)
        clock.add(state["seconds"])
        log.info("resuming %s after epoch %d", run_dir, state["epoch"])
        if rank == 0:  # the folder's config says what the run ran (e.g. the raised train.epochs), repeatable as is
            done = cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": None})})
            (run_dir / "config.yaml").write_text(dump_config(done))
    elif rank == 0:
        run_dir = new_run_dir(cfg.out_dir, cfg.name)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        write_json(run_dir / "data.json", {"root": str(data.root), "format": data.format, "task": data.task,
                                           "class_names": data.class_names, "problems": data.problem_counts()})
        write_json(run_dir / "split.json", split.record)
    if rank == 0:
        log.info("run folder %s: %s, model %s", run_dir, job.describe, cfg.model.name)

    t_start = time.perf_counter()
    val: dict = {}
    for epoch in range(state["epoch"] + 1, cfg.train.epochs + 1):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        g.manual_seed(cfg.seed + epoch)  # the epoch's shuffle, the same whether or not the run was resumed
        if job.set_epoch is not None:
            job.set_epoch(epoch)
        t0 = time.perf_counter()
        batches = Tracked(loader, f"epoch {epoch}/{cfg.train.epochs}", total=steps, enabled=progress)
        clock.start()
        losses = train_one_epoch(net, batches, optimizer, job.step, device, scheduler, cfg.train.grad_accum, scaler,
                                 cfg.train.max_steps, cfg.train.clip_grad_norm or job.clip_grad_norm,
                                 stop=clock.exhausted if clock.budget_s is not None else None, world=world,
                                 log_every=50 if progress else 0, ema=ema)
        clock.pause()
        out_of_time = any_rank(clock.exhausted(), world)
        if rank == 0:
            val = job.evaluate(evaluated, device, False)
            state["history"].append({"epoch": epoch, "train_loss": losses.get("loss", float("nan")),
                                     "train_losses": {k: v for k, v in losses.items() if k != "loss"},
                                     **{f"val_{k}": v for k, v in val.items() if k in job.history_keys},
                                     "seconds": time.perf_counter() - t0})
            log.info("epoch %d/%d  train loss %.4f  val %s  (%.0f s)", epoch, cfg.train.epochs,
                     state["history"][-1]["train_loss"], val.get("summary", f"{val['score']:.4f}"),
                     state["history"][-1]["seconds"])
            if state["best"] is None or val["score"] >= state["best"]:
                state["best"], state["best_epoch"] = val["score"], epoch
                save_checkpoint(run_dir / CHECKPOINT, evaluated, meta.to_dict())
            state["epoch"], state["seconds"] = epoch, clock.seconds
            _save_last(run_dir, model, optimizer, scheduler, scaler, state, ema)
        if out_of_time:
            if rank == 0:
                log.info("time budget of %g min spent in epoch %d: training stops", cfg.train.time_budget_minutes, epoch)
            break
    digests = gather_weight_digests(model, world)
    if rank != 0:
        return None
    if state["best_epoch"] is not None and state["best_epoch"] != state["epoch"]:
        best = torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=True)
        evaluated.load_state_dict(best["state_dict"])
        log.info("best validation score in epoch %d of %d: keeping that checkpoint", state["best_epoch"], state["epoch"])
    final = job.evaluate(evaluated, device, True)
    meta = meta.model_copy(update={"val_metrics": final.get("headline", {})})
    save_checkpoint(run_dir / CHECKPOINT, evaluated, meta.to_dict())
    metrics = job.finish(evaluated, final, run_dir, state["history"])
    metrics.update(split="val", best_epoch=state["best_epoch"], epochs_run=state["epoch"],
                   train_minutes=(time.perf_counter() - t_start) / 60,
                   training_minutes_excluding_eval=clock.seconds / 60,
                   time_budget_minutes=cfg.train.time_budget_minutes, history=state["history"], world_size=world,
                   rank_weight_digests=digests)
    write_json(run_dir / "metrics.json", metrics)
    return run_dir


def make_ema(model: torch.nn.Module, decay: float | None):
    """timm's ModelEmaV3 with warm-up (None when `decay` is None); `.steps` counts its updates."""
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=decay, use_warmup=True)
    ema.steps = 0
    return ema


def _save_last(run_dir: Path, model, optimizer, scheduler, scaler, state: dict, ema=None) -> None:
    model = getattr(model, "module", model)
    cpu = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}  # noqa: E731
    blob = {"state_dict": cpu(model),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
            "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "state": state,
            "ema": None if ema is None else {"state_dict": cpu(ema.module), "steps": ema.steps}}
    tmp = run_dir / (LAST + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(run_dir / LAST)  # atomic: a killed run never leaves a half-written checkpoint


def _load_last(run_dir: Path, model, optimizer, scheduler, scaler, ema=None) -> dict:
    path = run_dir / LAST
    if not path.is_file():
        raise ConfigError(f"train.resume: expected a run folder holding {LAST}, got {run_dir}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["state_dict"])
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    torch.set_rng_state(blob["rng"])
    if ema is not None:
        if blob.get("ema") is None:
            raise ConfigError(f"train.resume: {path} was trained without train.ema_decay; resume it without EMA")
        ema.module.load_state_dict(blob["ema"]["state_dict"])
        ema.steps = int(blob["ema"]["steps"])
    return blob["state"]


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> RunConfig:
    """The config of a run folder to continue, with train.resume pointing at it."""
    run_dir = Path(run_dir)
    return load_config(run_dir / "config.yaml", [*overrides, f"train.resume={run_dir}"])
