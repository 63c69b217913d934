"""What a checkpoint or an exported artifact is: a typed, versioned record read in one place.

Like timm's pretrained config and anomalib's exported metadata: `ModelMeta` holds everything inference needs
(task, model and its builder arguments, class names in the data's order, input channels and size,
normalisation, thresholds and post-processing), so a predictor never reads a training config. It is saved
as a plain dict inside `model.pt` (readable with `torch.load(weights_only=True)`) and as JSON in an ONNX
artifact's metadata. `ModelMeta.from_dict` checks the schema version and migrates version-0 dicts (the
untyped meta of checkpoints written before this module existed, e.g. the first shipped models).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steelscan.core.errors import ModelFileError

SCHEMA_VERSION = 1
ARTIFACT_FORMAT = "steelscan-onnx"
ARTIFACT_VERSION = 2  # 2: the meta is a ModelMeta (schema 1) with an `artifact` section


class ArtifactInfo(BaseModel):
    """What an export added: the graph's format and version and, for segmenters, the tile and its gate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["steelscan-onnx"] = ARTIFACT_FORMAT
    version: int = ARTIFACT_VERSION
    tile: tuple[int, int] | None = None  # (h, w) the graph takes; segmenters cut frames to this
    tile_gate_threshold: float | None = None  # segmenters: a tile is decoded when max presence >= this
    feature_outputs: tuple[str, ...] = ()  # segmenters: encoder outputs where the graph is cut
    quantization: str | None = None


class ModelMeta(BaseModel):
    """A trained model's identity card. Frozen: derive a changed copy with `meta.model_copy(update=...)`."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    task: Literal["classification", "detection", "segmentation"]
    model: str  # registry name (`steelscan models`)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)  # builder arguments, `pretrained` off
    class_names: tuple[str, ...]  # the data's classes, in the model's output order
    in_chans: Literal[1, 3] = 1  # images are converted to this many channels before the model
    # (height, width): classification resizes to it; detection is the tile size trained on; segmentation the crop.
    input_size: tuple[int, int]
    min_input_size: int = 8  # refuse images smaller than this on either side
    mean: float = 0.5  # x = (pixel / 255 - mean) / std, the same for every channel
    std: float = 0.5
    # classification
    binary: bool = False  # a defect/no-defect gate: class_names == ('clean', 'defect')
    tta: bool = False  # mean over flips at inference by default
    # detection
    label_offset: int = 0  # model label = class index + label_offset (torchvision reserves 0 for background)
    score_threshold: float | None = None  # detections shown and counted as defects
    two_stage: dict[str, Any] | None = None  # default gate of `detect` (gate, gate_threshold)
    # segmentation: thresholds, minimum areas, gate (steelscan.postprocess.PostProcess.as_dict())
    postprocess: dict[str, Any] | None = None
    # provenance and quality
    data_format: str | None = None  # the layout trained from (folders, yolo, coco, ...)
    val_metrics: dict[str, Any] = Field(default_factory=dict)  # e.g. map50, dice_kaggle, all_empty_dice
    steelscan_version: str | None = None
    artifact: ArtifactInfo | None = None  # set on exported artifacts only

    @model_validator(mode="after")
    def _check(self) -> "ModelMeta":
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {list(self.class_names)}")
        if min(self.input_size) < 1:
            raise ValueError(f"input_size must be positive, got {list(self.input_size)}")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def baseline_warning(self) -> str | None:
        """One line when the stored scores show the model no better than predicting no defect at all, else
        None (also when nothing is known). Kaggle Dice scores an empty mask on a clean image 1, so a model
        can look good while finding nothing; its all-empty baseline is the bar. Reads `val_metrics`
        (dice_kaggle or kaggle_dice, with all_empty_dice), else a segmenter's tuning report."""
        m = self.val_metrics
        score, empty = m.get("dice_kaggle", m.get("kaggle_dice")), m.get("all_empty_dice")
        where = "validation data"
        if not (_finite(score) and _finite(empty)):
            tuned = (self.postprocess or {}).get("tuned")
            tuned = tuned if isinstance(tuned, dict) else {}
            score, empty = tuned.get("dice_chosen", tuned.get("dice_cv")), tuned.get("all_empty_dice")
            where = f"tuning data ({tuned.get('split', 'validation')} split)"
        if not (_finite(score) and _finite(empty)) or score > empty:
            return None
        return (f"model {self.model or '?'} scored Kaggle Dice {score:.4f} on its {where}, no better than "
                f"predicting no defects at all ({empty:.4f}): do not trust its findings")

    @classmethod
    def from_dict(cls, raw: Any, source: str = "checkpoint") -> "ModelMeta":
        """Validate a stored meta; a newer schema or a malformed one is a `ModelFileError` naming `source`."""
        if isinstance(raw, ModelMeta):
            return raw
        if not isinstance(raw, dict):
            raise ModelFileError(f"{source}: expected a metadata mapping, got {type(raw).__name__}")
        version = raw.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ModelFileError(f"{source}: metadata schema version {version!r}; this steelscan reads versions "
                                 f"0..{SCHEMA_VERSION}: upgrade steelscan")
        if version == 0:
            raw = _migrate_v0(raw)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"])) or "meta"
            raise ModelFileError(f"{source}: invalid metadata at '{where}': {err['msg']}") from None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _migrate_v0(old: dict[str, Any]) -> dict[str, Any]:
    """The untyped meta of the first checkpoints and artifacts (artifact version 1) -> schema 1."""
    task = old.get("task", "classification")
    kwargs = dict(old.get("model_kwargs", {}))
    if "image_size" in old:
        size = int(old["image_size"])
        input_size = (size, size)
    elif "crop" in old:
        input_size = tuple(old["crop"])
    else:
        input_size = tuple(old.get("tile", (256, 512)))
    new: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "task": task, "model": old["model"] if "model" in old else "",
        "model_kwargs": kwargs, "class_names": list(old.get("class_names", [])),
        "in_chans": int(kwargs.get("in_chans", old.get("in_chans", 1))), "input_size": input_size,
        "mean": float(old.get("mean", 0.5)), "std": float(old.get("std", 0.5)),
        "binary": bool(old.get("binary", False)), "tta": bool(old.get("tta", False)),
        "label_offset": int(old.get("label_offset", 0)), "score_threshold": old.get("score_threshold"),
        "two_stage": old.get("two_stage"), "postprocess": old.get("postprocess"),
    }
    if "format" in old:  # an artifact of version 1
        new["artifact"] = {"format": old["format"], "version": ARTIFACT_VERSION,
                           "tile": old.get("tile"), "tile_gate_threshold": old.get("tile_gate_threshold"),
                           "feature_outputs": old.get("feature_outputs", ()), "quantization": old.get("quantization")}
    return new
