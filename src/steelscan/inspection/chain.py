"""What a station runs on each frame: the chain of models that turns frame pixels into pieces of defects.

Two chains share one interface (`frames_per_call`, `pieces`), so `steelscan inspect` and the service run
any model a plant trains:

- `SegmenterChain`: the segmenter's predictor cuts frames into its tiles, gates, stitches full-frame masks;
  one piece per connected component.
- `DetectorChain` (Wang 2021's two stages, then a defect classifier): frames are cut into tiles of the size
  the detector was trained on, spread evenly over the frame and overlapping by at least `tile_overlap` px;
  an optional defect/no-defect gate skips clean tiles; the detector runs on the rest; boxes of one defect
  seen by two tiles (twice, or cut by a tile border) are merged into one; an optional classifier names each
  piece from the tile the detector saw it in, the way commercial systems split detection and
  classification. Both classes and confidences are recorded; the classifier's class is the piece's class.

Pieces are then clipped to the frame's owned rows (`steelscan.inspection.geometry`), and `merge_pieces`
joins them across frames into defects.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from steelscan.core.errors import ConfigError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors import ClassifierPredictor, DetectorPredictor, SegmenterPredictor
from steelscan.inspection.merge import MIN_PIECE_PX, pieces_from_boxes, pieces_from_masks, union_find_groups
from steelscan.inspection.records import Piece

FrameItem = tuple[int, np.ndarray, tuple[int, int]]  # (frame index, uint8 image, owned rows [y0, y1))
FrameResult = tuple[list[Piece], dict]  # the frame's pieces and its record's info (ms, tiles, tiles_decoded)

# Default overlap of detector tiles: none beyond what spreading whole tiles over the frame gives. Measured on
# real NEU-DET images laid out as a coil (README): aligned tiles keep 99% of the detector's recall on single
# images, tiles overlapping by 30 px (straddling two photographs) 90%. Defects cut by a tile are merged either way.
DEFAULT_TILE_OVERLAP = 0
CUT_EDGE_PX = 3  # a box this close to an inner tile edge was cut by the tile
SAME_DEFECT_IOS = 0.5  # intersection over the smaller box: one defect seen by two overlapping tiles
ALIGN_SHARE = 0.5  # two parts of one cut defect overlap by this share of the narrower across the cut


class FrameChain(Protocol):
    meta: ModelMeta  # the model that finds defects (its class names are the coil's, unless a classifier names them)
    merges_within_frame: bool  # whether `merge_pieces` may join pieces of one frame, or only across frames

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def frames_per_call(self, frame_shape: tuple[int, int]) -> int: ...

    def pieces(self, items: Sequence[FrameItem]) -> list[FrameResult]: ...

    def describe(self) -> dict: ...


def frames_per_call(tiles_per_frame: int, batch: int) -> int:
    """Whole frames that fit one model call of `batch` tiles (at least one)."""
    return max(1, batch // max(1, tiles_per_frame))


class SegmenterChain:
    """Frames -> the segmenter's full-frame masks -> one piece per connected component in the owned rows."""

    merges_within_frame = True  # components a pixel or two apart are one defect the threshold cut

    def __init__(self, predictor: SegmenterPredictor) -> None:
        self.predictor, self.meta = predictor, predictor.meta

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.predictor.class_names

    def frames_per_call(self, frame_shape: tuple[int, int]) -> int:
        return frames_per_call(self.predictor.tiles_per_image(frame_shape), self.predictor.batch_size)

    def pieces(self, items: Sequence[FrameItem]) -> list[FrameResult]:
        """Frames of one call share the segmenter's batches of tiles; ms is each frame's share of the call."""
        t0 = time.perf_counter()
        seg = self.predictor.predict([img for _, img, _ in items])
        ms = round(1000 * (time.perf_counter() - t0) / len(items), 2)
        names = list(self.class_names)
        return [(pieces_from_masks(k, masks, probs, owned, names, MIN_PIECE_PX),
                 {"ms": ms, "tiles": int(n_tiles), "tiles_decoded": int(n_dec)})
                for (k, _, owned), masks, probs, n_tiles, n_dec in zip(items, seg.masks, seg.probabilities,
                                                                      seg.tiles, seg.decoded)]

    def describe(self) -> dict:
        return {"task": "segmentation", "model": self.meta.model, "source": self.predictor.source,
                "class_names": list(self.class_names)}


# -- detector tiles ----------------------------------------------------------------------------------------


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of `tile` px covering [0, length) with at least `overlap` px shared, spread evenly so
    the last tile ends at the border (a frame shorter than a tile is one tile)."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))  # ceil
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def tile_grid(frame_shape: tuple[int, int], tile: tuple[int, int], overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) in frame px, row by row."""
    h, w = frame_shape
    th, tw = min(tile[0], h), min(tile[1], w)
    return [(x, y, x + tw, y + th) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]


def cut_by_tile(box: np.ndarray, rect: tuple[int, int, int, int], frame_shape: tuple[int, int]) -> bool:
    """Whether a box (frame px) reaches an edge of its tile that is not a frame edge."""
    x1, y1, x2, y2 = box
    tx0, ty0, tx1, ty1 = rect
    h, w = frame_shape
    e = CUT_EDGE_PX
    return bool((tx0 > 0 and x1 <= tx0 + e) or (tx1 < w and x2 >= tx1 - e)
                or (ty0 > 0 and y1 <= ty0 + e) or (ty1 < h and y2 >= ty1 - e))


def merge_tile_boxes(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, cut: np.ndarray,
                     tiles: np.ndarray, gap: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of one frame from overlapping tiles -> one box per defect (union box, best score). Two boxes of a
    class from different tiles merge when they are one defect seen twice (intersection >= half the smaller box),
    or when one was cut by its tile and the other continues it: they touch (within `gap` px) and overlap across
    the cut by at least half the narrower. Boxes merely near each other, and boxes of one tile (the detector's
    own verdict), stay apart."""
    n = len(boxes)
    if n < 2:
        return boxes, scores, labels
    b = boxes.astype(np.float64)
    wh = np.maximum(b[:, 2:] - b[:, :2], 1e-6)

    def joined(i: int, j: int) -> bool:
        if labels[i] != labels[j] or tiles[i] == tiles[j]:
            return False
        iw = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
        ih = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
        if iw > 0 and ih > 0 and iw * ih >= SAME_DEFECT_IOS * min(wh[i].prod(), wh[j].prod()):
            return True
        if not (cut[i] or cut[j]) or iw < -gap or ih < -gap:
            return False
        return max(iw, 0) >= ALIGN_SHARE * min(wh[i, 0], wh[j, 0]) or max(ih, 0) >= ALIGN_SHARE * min(wh[i, 1], wh[j, 1])

    groups = union_find_groups(n, [(i, j) for i in range(n) for j in range(i + 1, n) if joined(i, j)])
    out_b, out_s, out_l = [], [], []
    for members in groups:
        m = np.array(members)
        out_b.append([b[m, 0].min(), b[m, 1].min(), b[m, 2].max(), b[m, 3].max()])
        out_s.append(scores[m].max())
        out_l.append(labels[m[0]])
    return (np.array(out_b, np.float32).reshape(-1, 4), np.array(out_s, np.float32), np.array(out_l, np.int64))


class DetectorChain:
    """Frames -> tiles -> (gate) -> detector -> boxes merged across tiles -> pieces -> (classifier renames)."""

    merges_within_frame = False  # a frame's boxes are final once merged across tiles: the detector's own verdict

    def __init__(self, detector: DetectorPredictor, *, gate: ClassifierPredictor | None = None,
                 gate_threshold: float = 0.3, classifier: ClassifierPredictor | None = None,
                 tile_overlap: int | None = None) -> None:
        self.detector, self.meta = detector, detector.meta
        self.gate, self.classifier = gate, classifier
        self.tile = tuple(int(v) for v in detector.meta.input_size)
        if tile_overlap is None:
            tile_overlap = DEFAULT_TILE_OVERLAP
        if not 0 <= tile_overlap < min(self.tile) // 2:
            raise ConfigError(f"tile overlap must be 0..{min(self.tile) // 2 - 1} px for {self.tile[1]}x"
                              f"{self.tile[0]} tiles, got {tile_overlap}")
        self.tile_overlap = tile_overlap
        if gate is not None:
            from steelscan.two_stage import check_threshold, defect_column

            defect_column(gate.meta)  # a gate without a defect/clean class is refused now, not on the first frame
            self.gate_threshold = check_threshold(gate_threshold)
        if classifier is not None and {"clean", "defect"} & {str(c).lower() for c in classifier.class_names}:
            raise ModelFileError(f"the defect classifier must name defect classes, got {list(classifier.class_names)}"
                                 ": a defect/no-defect model is a gate (--gate)")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The coil's classes: the classifier's when it names the defects, else the detector's."""
        return self.classifier.class_names if self.classifier is not None else self.detector.class_names

    def tiles(self, frame_shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        return tile_grid(frame_shape, self.tile, self.tile_overlap)

    def frames_per_call(self, frame_shape: tuple[int, int]) -> int:
        return frames_per_call(len(self.tiles(frame_shape)), self.detector.batch_size)

    def pieces(self, items: Sequence[FrameItem]) -> list[FrameResult]:
        """Frames of one call share the gate's, the detector's and the classifier's batches; ms is each frame's
        share of the call."""
        t0 = time.perf_counter()
        crops, rects, owner = [], [], []  # every tile of every frame, its rect and its frame's item index
        for n, (_, img, _) in enumerate(items):
            for rect in self.tiles(img.shape[:2]):
                x0, y0, x1, y1 = rect
                crops.append(img[y0:y1, x0:x1])
                rects.append(rect)
                owner.append(n)
        owner_arr = np.asarray(owner, np.int64)
        passed = np.ones(len(crops), bool)
        if self.gate is not None:
            from steelscan.two_stage import gate_probabilities

            passed = gate_probabilities(self.gate, crops) >= self.gate_threshold
        idx = np.flatnonzero(passed)
        found = self.detector.predict([crops[i] for i in idx]) if len(idx) else []
        per_frame: list[list[tuple[int, dict]]] = [[] for _ in items]
        for i, d in zip(idx, found):
            per_frame[owner[i]].append((int(i), d))
        frame_pieces = [pieces_from_boxes(k, *self._frame_boxes(per_frame[n], rects, img.shape[:2]), owned,
                                          self.detector.class_names)
                        for n, (k, img, owned) in enumerate(items)]
        if self.classifier is not None:
            frame_pieces = self._classify([img for _, img, _ in items], frame_pieces)
        ms = round(1000 * (time.perf_counter() - t0) / max(len(items), 1), 2)
        tiles = np.bincount(owner_arr, minlength=len(items))
        decoded = np.bincount(owner_arr[idx], minlength=len(items))
        return [(p, {"ms": ms, "tiles": int(t), "tiles_decoded": int(dd)})
                for p, t, dd in zip(frame_pieces, tiles, decoded)]

    @staticmethod
    def _frame_boxes(dets: list[tuple[int, dict]], rects: list, shape: tuple[int, int]):
        """One frame's detections from its tiles (tile index, detections) -> (boxes, scores, labels) in frame px,
        merged across tiles."""
        if not dets:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        boxes = np.concatenate([d["boxes"] + np.asarray(rects[i][:2] * 2, np.float32) for i, d in dets])
        tile = np.concatenate([np.full(len(d["boxes"]), i) for i, d in dets])
        cut = np.array([cut_by_tile(b, rects[t], shape) for b, t in zip(boxes, tile)], bool)
        return merge_tile_boxes(boxes, np.concatenate([d["scores"] for _, d in dets]).astype(np.float32),
                                np.concatenate([d["labels"] for _, d in dets]).astype(np.int64), cut, tile)

    def _classify(self, images: list[np.ndarray], frame_pieces: list[list[Piece]]) -> list[list[Piece]]:
        """Every piece of the call named by the classifier in one batch, each from the window the detector saw it
        in: the tile holding its centre most centrally (the scale and context both models were trained on); a
        piece larger than a tile from a square crop around it, shifted inside the frame."""
        crops = []
        for img, pieces in zip(images, frame_pieces):
            h, w = img.shape[:2]
            rects = self.tiles((h, w))
            for p in pieces:
                x1, y1, x2, y2 = p.bbox
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                if x2 - x1 <= self.tile[1] and y2 - y1 <= self.tile[0]:
                    x0, y0, xe, ye = max(rects, key=lambda r: min(cx - r[0], r[2] - cx, cy - r[1], r[3] - cy))
                else:
                    side = min(max(x2 - x1, y2 - y1), h, w)
                    x0 = int(np.clip(cx - side / 2, 0, w - side))
                    y0 = int(np.clip(cy - side / 2, 0, h - side))
                    xe, ye = x0 + side, y0 + side
                crops.append(img[y0:ye, x0:xe])
        if not crops:
            return frame_pieces
        probs = iter(self.classifier.predict(crops))
        names = self.classifier.class_names
        return [[replace(p, class_name=names[int(np.argmax(pr))], detector_class=p.class_name,
                         classifier_confidence=round(float(np.max(pr)), 4))
                 for p, pr in zip(pieces, probs)] for pieces in frame_pieces]

    def describe(self) -> dict:
        d = {"task": "detection", "model": self.meta.model, "source": self.detector.source,
             "class_names": list(self.class_names), "tile": list(self.tile), "tile_overlap": self.tile_overlap,
             "score_threshold": self.detector.score_threshold}
        if self.gate is not None:
            d["gate"] = {"model": self.gate.meta.model, "source": self.gate.source, "threshold": self.gate_threshold}
        if self.classifier is not None:
            d["classifier"] = {"model": self.classifier.meta.model, "source": self.classifier.source,
                               "class_names": list(self.classifier.class_names)}
        return d


# -- loading -----------------------------------------------------------------------------------------------


def model_meta(model: str) -> ModelMeta:
    """The metadata of a model (ONNX artifact, run folder, .pt or built-in name), read without building it."""
    from steelscan.deploy.artifact import read_artifact_meta
    from steelscan.engine.runs import read_checkpoint, resolve_model

    path = resolve_model(model)
    return read_artifact_meta(path) if path.suffix.lower() == ".onnx" else read_checkpoint(path, mmap=True)[1]


def load_chain(model: str, *, frame_shape: tuple[int, int], out: str | None = None, classifier: str | None = None,
               gate: str | None = None, gate_threshold: float | None = None, tile_gate: bool = True,
               batch: int = 8, tile_overlap: int | None = None, threads: int = 2,
               runtime: str = "onnx") -> FrameChain:
    """The station's chain for a model of any task (ONNX artifact, run folder, .pt or built-in name).

    A segmenter runs as an ONNX artifact (a checkpoint is exported into `out` once, with the whole frame as its
    tile where it fits) and `tile_gate` switches its own presence gate. A detector, its optional `gate`
    classifier (defect/no-defect) and its optional defect `classifier` run as ONNX artifacts too (exported into
    `out` once; a model with deformable convolutions on PyTorch). `runtime`: a segmenter's
    artifact on "onnx" (ONNX Runtime), "openvino" or "openvino-bf16" (the optional OpenVINO back end; bf16 pays
    on CPUs with AMX / AVX512-bf16)."""
    from pathlib import Path

    from steelscan.deploy.export import artifact_for_frames
    from steelscan.deploy.predictors import load_predictor
    from steelscan.deploy.predictors.factory import load_on_runtime

    task = model_meta(model).task
    if task == "segmentation":
        if classifier or gate:
            raise ConfigError("--classifier and --gate go with a detector; a segmenter names and gates its own "
                              "pieces (--no-gate turns its gate off)")
        artifact = artifact_for_frames(model, Path(out or "."), frame_shape)
        return SegmenterChain(load_on_runtime(str(artifact), runtime, task="segmentation", threads=threads,
                                              gate=tile_gate, batch_size=batch))
    if task != "detection":
        raise ModelFileError(f"{model} is a {task} model; the station runs a segmenter or a detector (a classifier "
                             "goes with --classifier or --gate)")
    from steelscan.two_stage import DEFAULT_GATE_THRESHOLD

    def onnx(spec: str, task: str, **options):
        # ONNX Runtime runs exported models ~2-3x faster than eager PyTorch (coil-demo on 1600x256 frames: 194 vs
        # 563 ms/frame on 2 cores); deformable convolutions have no ONNX operator and stay on PyTorch
        onnx_ok = not str(spec).endswith(".onnx") and not model_meta(spec).model_kwargs.get("dcn")
        path = artifact_for_frames(spec, Path(out or ".")) if onnx_ok else spec
        predictor = load_predictor(path, task=task, threads=threads, **options)
        predictor.source = str(spec)
        return predictor

    detector = onnx(model, "detection", batch_size=batch)
    gate_p = onnx(gate, "classification") if gate else None
    cls_p = onnx(classifier, "classification") if classifier else None
    return DetectorChain(detector, gate=gate_p, classifier=cls_p, tile_overlap=tile_overlap,
                         gate_threshold=DEFAULT_GATE_THRESHOLD if gate_threshold is None else gate_threshold)


def provenance(chain: FrameChain, rules) -> tuple[dict, list[str]]:
    """(what produced a coil's results, warnings) for its report: the models, the rules, this steelscan; a
    model whose metadata shows it no better than predicting no defect is a warning (a plant could otherwise
    pass bad coils: "0 defects, grade A")."""
    from steelscan import __version__

    d = chain.describe()
    info = {"model": d["model"], "model_source": d.get("source"), "rules": rules.label,
            "rules_file": rules.source, "steelscan_version": __version__}
    for role in ("classifier", "gate"):
        if role in d:
            info[role] = d[role]["source"] or d[role]["model"]
    warning = chain.meta.baseline_warning()
    return info, [warning] if warning else []
