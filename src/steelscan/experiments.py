"""Experiments: one base recipe trained under several variants on the same data and budget, one table.

An experiment file is YAML with two keys: `base` (a full run config) and `variants` (name -> list of
`key=value` overrides, the same syntax as `--set`). Each variant is validated before any training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from pydantic import BaseModel, ConfigDict, ValidationError  # noqa: E402

from steelscan.config import RunConfig, config_from_dict, dump_config  # noqa: E402
from steelscan.errors import SteelscanError  # noqa: E402


class ExperimentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base: dict[str, Any]
    variants: dict[str, list[str]]


def load_experiment(path: str | Path, overrides: list[str] = ()) -> tuple[dict[str, RunConfig], Path]:
    path = Path(path)
    if not path.is_file():
        raise SteelscanError(f"experiment file not found: {path}")
    try:
        exp = ExperimentFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise SteelscanError(f"invalid experiment file {path}: expected keys base and variants ({str(exc).splitlines()[0]})") from None
    if not exp.variants:
        raise SteelscanError(f"experiment file {path} lists no variants")
    source = f"{path} (base + variant)"
    return {name: config_from_dict(exp.base, [*overrides, *sets], source) for name, sets in exp.variants.items()}, path


def run_experiment(path: str | Path, out: str | Path, overrides: list[str] = (), log=print) -> dict:
    """Train every variant, then tabulate per-class recall, accuracy and macro-F1 from their metrics."""
    from steelscan.train import fit

    configs, path = load_experiment(path, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, cfg in configs.items():
        log(f"variant {name}: training")
        cfg = cfg.model_copy(update={"out_dir": str(out / "runs"), "name": name.replace(" ", "_")})
        run = fit(cfg)
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"variant": name, "run": str(run), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "recall": {c: v["recall"] for c, v in m["per_class"].items()},
                     "train_minutes": m["train_minutes"], "config": dump_config(cfg)})
    result = {"experiment": str(path), "limit_per_class": dict(next(iter(configs.values())).data.limit_per_class),
              "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    plot_recall(rows, out / "recall.png", title=f"{path.stem}: per-class recall on the validation split")
    return result


def plot_recall(rows: list[dict], out: Path, title: str) -> None:
    classes = list(rows[0]["recall"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.6 * len(classes) + 2, 4))
    for i, r in enumerate(rows):
        ax.bar(np.arange(len(classes)) + i * width, [100 * r["recall"][c] for c in classes], width, label=r["variant"])
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=20)
    ax.set_ylabel("recall %"); ax.set_ylim(0, 102); ax.set_title(title); ax.legend(fontsize=8, loc="lower right")  # noqa: E702
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
