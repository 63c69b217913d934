"""Recipes: YAML -> `--set key=value` overrides -> a validated, frozen pydantic config.

Every section forbids unknown keys; a typo is reported with the closest valid key. The resolved config is
saved in the run folder, so a run can always be repeated from its own folder.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steelscan.core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    # The data set folder, in any layout `steelscan stats` reads. Required: nothing defaults to a data set.
    root: str | None = None
    # The layout: detected from the folder when null (folders, neu-cls, yolo, coco, voc, neu-det, masks, rle).
    format: str | None = None
    # Without a split of the data set's own (train/val/test folders or data.yaml entries), this share of the
    # images forms a deterministic, stratified validation split (saved in the run folder as split.json).
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # NEU split by image number, so that NEU-CLS and NEU-DET split alike. Numbers divisible by 5 are held
    # out elsewhere; of the rest, numbers with `n % 5 in val_remainders` form our validation split. Severstal-
    # style RLE folders without a split of their own split by crc32(image id) % 5 in val_remainders.
    val_remainders: tuple[int, ...] = (4,)
    # Classification: the side the images are resized to; null = from the data (its most common size).
    image_size: int | None = Field(None, ge=8)
    # Binary defect / no-defect mode (the 2-stage gate): label 1 = defect.
    binary: bool = False
    # Imbalance experiments: keep only this many training images of a class, e.g. {"crazing": 30}.
    limit_per_class: dict[str, int] = Field(default_factory=dict)
    # A second folder in the same layout and with the same classes, split alike (e.g. the real Severstal
    # sample beside synthetic strips); metrics are also reported per folder.
    extra_root: str | None = None
    # A folder of defect-free images (e.g. `steelscan synth neu-clean`), split by a checksum of the name:
    # detection adds them with no boxes; the binary gate (data.binary) adds them as label 0 (clean).
    clean_root: str | None = None
    # Detection: an annotation with no box: keep it as a defect-free image (the default), skip it, or fail.
    empty_annotations: Literal["skip", "clean", "error"] = "clean"


class ModelConfig(_Section):
    name: str = "mobilenetv3_small"
    pretrained: bool = False
    in_chans: Literal[1, 3] | None = None  # null = from the data: 3 when its images hold colour, else 1
    dcn: bool = False
    drop_rate: float = 0.0
    # Start from a checkpoint's weights (run folder, .pt or built-in name), e.g. a shipped model fine-tuned on a
    # plant's images: tensors of the same name and shape are copied, the rest (another class count) start fresh.
    init: str | None = None


class AugmentConfig(_Section):
    hflip: bool = True
    vflip: bool = True
    brightness_contrast: float = 0.2  # limit for RandomBrightnessContrast; 0 switches it off
    random_resized_crop: tuple[float, float] | None = (0.7, 1.0)  # scale range; null switches it off
    cutout: float = 0.0  # probability of a random CoarseDropout
    improved_cutout: float = 0.0  # probability of blanking a labelled defect box (needs neu-det boxes)
    defect_blackout: float = 0.0  # detection: probability of blanking every box of an image (it becomes clean)
    mosaic: float = Field(0.0, ge=0.0, le=1.0)  # detection: probability of a 4-image mosaic (YOLO's), with scale jitter
    det_root: str | None = None  # NEU-DET boxes for improved_cutout of NEU-CLS images


class LossConfig(_Section):
    # classification: ce, weighted_ce, softmax_focal. segmentation (4 sigmoid channels): bce, weighted_bce,
    # bce_dice (bce_weight * weighted BCE + dice_weight * Dice), focal.
    # null = the task's default: ce (classification), bce_dice (segmentation); detection has its own losses.
    name: Literal["ce", "weighted_ce", "softmax_focal", "bce", "weighted_bce", "bce_dice", "focal"] | None = None
    gamma: float = 2.0
    alpha: float | None = 0.25  # focal
    label_smoothing: float = 0.0
    pos_weight: tuple[float, ...] | None = None  # weighted_bce / bce_dice: one per class (or one for all)
    bce_weight: float = Field(0.75, ge=0.0)
    dice_weight: float = Field(0.25, ge=0.0)
    # segmentation: BCE on the per-class presence head (the classification gate), added with this weight
    presence_weight: float = Field(0.2, ge=0.0)


class ImbalanceConfig(_Section):
    sampler: Literal["none", "balanced"] = "none"
    # Minor-class oversampling with augmentation: repeat a class's images until it has this many.
    oversample_to: dict[str, int] = Field(default_factory=dict)


class OptimConfig(_Section):
    name: Literal["adamw", "sgd", "radam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: Literal["cosine", "none"] = "cosine"
    warmup_epochs: float = 0.0


class TrainConfig(_Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    max_steps: int | None = None  # stop early (smoke tests)
    amp: bool = True  # used on CUDA only
    tta: bool = False
    threads: int | None = None
    # Stop once this much *training* time is spent (checked after each optimiser step; evaluation is not
    # counted), then evaluate. train.epochs stays an upper bound, and the cosine schedule follows the larger
    # of the step share and the budget share.
    time_budget_minutes: float | None = Field(None, gt=0)
    clip_grad_norm: float | None = Field(None, gt=0)  # detection uses detector.clip_grad_norm when null
    # A run folder to continue: its last.pt holds the weights, optimiser, schedule and history.
    resume: str | None = None
    # Evaluate and save an exponential moving average of the weights (timm's ModelEmaV3, warm-up on: the
    # effective decay grows from 0 towards this value over the first thousands of steps); null = off.
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)


class DetectorConfig(_Section):
    """Detector options (task: detection). The family and backbone are model.name (frcnn_*, fcos_*); DCN is
    model.dcn. The rpn_*, box_batch_size_per_image, representation_size, anchor and coordconv keys are Faster
    R-CNN's; head_convs, center_sampling_radius and topk_candidates are FCOS's."""

    spp: bool = False  # spatial pyramid pooling on the top backbone map
    coordconv: bool = False  # coordinate channels before the first conv of the RPN head and the box head
    # Short side after the model's own resize; a list = multi-scale training (evaluation uses the last).
    # NEU images are 200 px: the defaults keep them 200 px, where torchvision's default makes them 800.
    # null = from the data: the training images' median short side (NEU: 200) and their largest long side.
    min_size: int | tuple[int, ...] | None = None
    max_size: int | None = None
    fpn_channels: int = Field(128, ge=8)
    representation_size: int = Field(512, ge=8)
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)  # one per FPN level (strides 4..64), resized pixels
    aspect_ratios: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    rpn_pre_nms_top_n_train: int = Field(1000, ge=1)
    rpn_post_nms_top_n_train: int = Field(500, ge=1)
    rpn_pre_nms_top_n_test: int = Field(500, ge=1)
    rpn_post_nms_top_n_test: int = Field(200, ge=1)
    rpn_batch_size_per_image: int = Field(256, ge=1)
    box_batch_size_per_image: int = Field(256, ge=1)
    head_convs: int = Field(2, ge=1, le=4)  # FCOS: 3x3 convs per head branch
    center_sampling_radius: float = Field(1.5, gt=0.0)  # FCOS: positives within this many strides of a box centre
    topk_candidates: int = Field(300, ge=1)  # FCOS: best locations per level before NMS
    box_detections_per_img: int = Field(50, ge=1)
    box_score_thresh: float = Field(0.05, ge=0.0, le=1.0)  # kept for mAP; low, so PR curves reach high recall
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)  # shown and drawn detections (checkpoint default)
    frozen_stages: int = Field(0, ge=0, le=4)  # freeze the stem and the first N backbone stages
    freeze_bn: bool = False  # frozen BatchNorm statistics (pretrained backbones on small CPU batches)
    clip_grad_norm: float | None = 10.0  # early RPN losses spike on from-scratch backbones
    n_samples: int = Field(8, ge=0)  # validation images drawn with their detections in samples.png


class SegmentationConfig(_Section):
    """Severstal segmentation (task: segmentation): crops, gate and post-processing defaults.

    The post-processing values here are the defaults saved with the model; `steelscan tune` replaces the
    thresholds and minimum areas with values searched on validation data.
    """

    # (height, width) of the random training crops (1st place: 256x512); null = 256x512 cut to the smallest image
    crop: tuple[int, int] | None = None
    defect_share: float = Field(0.6, ge=0.0, le=1.0)  # share of training crops that contain a defect
    crops_per_image: int = Field(1, ge=1)  # training crops per image and epoch
    # Per class, or one value for every class.
    threshold: tuple[float, ...] = (0.5,)  # pixel probability threshold
    min_area: tuple[int, ...] = (600,)  # 1st place: drop a class mask smaller than this (px): (600, 600, 900, 2000)
    min_component: int = Field(0, ge=0)  # remove connected components smaller than this (px) first
    gate: Literal["none", "hard", "soft"] = "none"  # combine the presence head with the masks
    gate_threshold: tuple[float, ...] = (0.5,)  # hard gate: drop a class below this probability
    tta: bool = False  # mean over none, hflip, vflip


class TwoStageConfig(_Section):
    """The 2-stage pipeline of Wang 2021 (task: detection): a binary gate sends an image on to the detector only
    when its P(defect) >= gate_threshold. Saved into the detector's checkpoint meta as the default of
    `steelscan detect --gate` / `steelscan benchmark two-stage`; the command line overrides both."""

    gate: str | None = None  # a binary classifier (run folder, .pt or built-in name); null = no gate
    gate_threshold: float = Field(0.3, ge=0.0, le=1.0)  # the paper's 0.3: recall matters more than skips


class RunConfig(_Section):
    task: Literal["classification", "detection", "segmentation"] | None = None  # null = from the data's layout
    name: str = "run"
    seed: int = 0
    device: Literal["cpu", "cuda"] = "cpu"
    out_dir: str = "runs"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    imbalance: ImbalanceConfig = ImbalanceConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    detector: DetectorConfig = DetectorConfig()
    two_stage: TwoStageConfig = TwoStageConfig()
    segmentation: SegmentationConfig = SegmentationConfig()

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        seg_losses = {"bce", "weighted_bce", "bce_dice", "focal"}
        if self.task is not None and self.loss.name is not None and \
                (self.task == "segmentation") != (self.loss.name in seg_losses):
            expected = sorted(seg_losses) if self.task == "segmentation" else ["ce", "softmax_focal", "weighted_ce"]
            raise ValueError(f"loss.name {self.loss.name!r} does not fit task {self.task}; expected one of {expected}")
        crop = self.segmentation.crop
        if crop is not None and any(c <= 0 or c % 32 for c in crop):
            raise ValueError(f"segmentation.crop sides must be positive multiples of 32, got {list(crop)}")
        return self


def per_class(values: tuple, n_classes: int, key: str) -> tuple:
    """A per-class option: one value for every class, or exactly one per class."""
    if len(values) == 1:
        return tuple(values) * n_classes
    if len(values) != n_classes:
        raise ConfigError(f"{key} needs one value per class ({n_classes}) or one for all, got {list(values)}")
    return tuple(values)


def require_data_root(cfg: RunConfig) -> Path:
    if not cfg.data.root:
        raise ConfigError("data.root is not set: expected the data set folder in the recipe (data: {root: PATH}) "
                          "or on the command line (--data PATH)")
    return Path(cfg.data.root)


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _format_error(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if not loc:  # a check across sections (a model validator): its message names the keys
            problems.append(err["msg"].removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _valid_keys(RunConfig, loc), n=1)
            hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
            problems.append(f"unknown key '{key}'{hint}")
        else:
            problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    return f"invalid config {source}: " + "; ".join(problems)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """Parse `key.sub=value` strings; values are YAML scalars/lists (safe_load, never eval)."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    return out


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping (recipes, rules, coil manifests); errors name the file."""
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{what} {path} must be a mapping, got {type(tree).__name__}")
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML recipe, apply `--set` overrides, validate. Errors name the file and the key."""
    tree: dict = {}
    source = "(defaults)"
    if path is not None:
        path = Path(path)
        source = str(path)
        tree = read_yaml_mapping(path, "config")
    return config_from_dict(tree, overrides, source)


def config_from_dict(tree: dict, overrides: list[str] = (), source: str = "(dict)") -> RunConfig:
    """Validate a config tree (e.g. the `base` of an experiment file) after applying `--set` overrides."""
    tree = copy.deepcopy(tree)
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
