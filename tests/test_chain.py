"""The station's detector chain: tiles, boxes merged across tile and frame borders, the gate, the classifier.

A stub detector (boxes of bright pixels in each tile) and stub classifiers make the expected pieces exact."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from steelscan.core.errors import ConfigError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors import ClassifierPredictor, DetectorPredictor
from steelscan.inspection.chain import DetectorChain, merge_tile_boxes, tile_grid, tile_starts
from steelscan.inspection.geometry import StripGeometry
from steelscan.inspection.merge import merge_pieces
from steelscan.inspection.records import Piece

TILE = 64


class BrightBoxes:
    """An 'ONNX' back end of a detector: one box per 8-connected blob of pixels > 200 in the tile."""

    kind = "onnx"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls += 1
        img = (x[0] > 200 / 255).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(img, connectivity=8)
        boxes = np.array([[s[0], s[1], s[0] + s[2], s[1] + s[3]] for s in stats[1:]], np.float32).reshape(-1, 4)
        return [boxes, np.ones(len(boxes), np.int64), np.full(len(boxes), 0.9, np.float32)]


class Stub:
    """A classifier back end answering fixed logits (a gate: column 1 = defect)."""

    kind = "onnx"

    def __init__(self, logits) -> None:
        self.logits = np.asarray(logits, np.float32)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.repeat(self.logits[None], len(x), axis=0)]


def detector() -> DetectorPredictor:
    meta = ModelMeta(task="detection", model="stub", class_names=("bright",), input_size=(TILE, TILE), label_offset=1,
                     score_threshold=0.5)
    return DetectorPredictor(meta, BrightBoxes())


def classifier(names, logits) -> ClassifierPredictor:
    meta = ModelMeta(task="classification", model="stub-cls", class_names=tuple(names), input_size=(32, 32))
    return ClassifierPredictor(meta, Stub(logits))


def frame(h=TILE, w=3 * TILE) -> np.ndarray:
    return np.full((h, w), 60, np.uint8)


def test_tiles_cover_the_frame_with_the_overlap_and_end_at_its_border():
    assert tile_starts(200, 200, 30) == [0]
    assert tile_starts(150, 200, 30) == [0]
    starts = tile_starts(1600, 200, 30)
    assert starts[0] == 0 and starts[-1] == 1400
    assert all(200 - (b - a) >= 30 for a, b in zip(starts, starts[1:]))
    assert tile_starts(1600, 200, 0) == list(range(0, 1600, 200))  # aligned when the frame is a whole number of tiles
    grid = tile_grid((256, 1600), (200, 200), 30)
    assert {r[1] for r in grid} == {0, 56} and max(r[2] for r in grid) == 1600 and max(r[3] for r in grid) == 256


def test_a_box_across_a_tile_border_is_one_piece():
    img = frame()
    img[20:30, 40:150] = 255  # crosses the borders of the tiles at 0-64, 64-128, 128-192 (overlap 0)
    chain = DetectorChain(detector(), tile_overlap=0)
    ((pieces, info),) = chain.pieces([(0, img, (0, TILE))])
    assert info["tiles"] == 3 and info["tiles_decoded"] == 3
    assert [p.bbox for p in pieces] == [(40, 20, 150, 30)]
    assert pieces[0].class_name == "bright" and pieces[0].detector_class is None


def test_overlapping_tiles_see_one_defect_twice_and_it_stays_one():
    img = frame()
    img[10:20, 50:60] = 255  # inside the overlap of two tiles
    img[40:50, 100:180] = 255  # cut by one tile, whole in the next
    chain = DetectorChain(detector(), tile_overlap=24)
    assert len(chain.tiles(img.shape)) > 3
    ((pieces, _),) = chain.pieces([(0, img, (0, TILE))])
    assert sorted(p.bbox for p in pieces) == [(50, 10, 60, 20), (100, 40, 180, 50)]


def test_separate_defects_near_a_tile_border_stay_apart():
    img = frame()
    img[5:15, 50:64] = 255  # touches the border at x = 64 ...
    img[40:60, 64:70] = 255  # ... and so does this one, but lower: not the continuation of the first
    chain = DetectorChain(detector(), tile_overlap=0)
    ((pieces, _),) = chain.pieces([(0, img, (0, TILE))])
    assert sorted(p.bbox for p in pieces) == [(50, 5, 64, 15), (64, 40, 70, 60)]


def test_merge_tile_boxes_rules():
    boxes = np.array([[0, 0, 64, 10], [60, 0, 100, 10], [0, 30, 10, 40]], np.float32)
    b, s, lab = merge_tile_boxes(boxes, np.array([0.5, 0.9, 0.7], np.float32), np.zeros(3, np.int64),
                                 np.array([True, True, False]), np.array([0, 1, 0]))
    assert b.tolist() == [[0, 0, 100, 10], [0, 30, 10, 40]] and s.tolist() == pytest.approx([0.9, 0.7])
    other = merge_tile_boxes(boxes[:2], np.ones(2, np.float32), np.array([0, 1]), np.array([True, True]),
                             np.array([0, 1]))
    assert len(other[0]) == 2  # two classes never merge
    nested = np.array([[0, 0, 50, 50], [10, 10, 30, 30]], np.float32)  # the detector's own two boxes in one tile
    assert len(merge_tile_boxes(nested, np.ones(2, np.float32), np.zeros(2, np.int64), np.array([False, False]),
                                np.array([3, 3]))[0]) == 2
    assert len(merge_tile_boxes(nested, np.ones(2, np.float32), np.zeros(2, np.int64), np.array([False, False]),
                                np.array([3, 4]))[0]) == 1  # seen by two tiles: one defect


def test_a_box_across_a_frame_border_is_one_defect():
    frames = [frame(), frame()]
    frames[0][50:64, 30:40] = 255  # the defect leaves frame 0 at its bottom edge ...
    frames[1][0:12, 30:40] = 255  # ... and goes on at the top of frame 1
    geo = StripGeometry(mm_per_px_across=1.0, mm_per_px_along=1.0, strip_width_mm=192)
    chain = DetectorChain(detector(), tile_overlap=0)
    results = chain.pieces([(k, f, geo.owned_rows(k, TILE, 2)) for k, f in enumerate(frames)])
    pieces = [p for ps, _ in results for p in ps]
    assert len(pieces) == 2
    (d,) = merge_pieces(pieces, geo, 3 * TILE, TILE, within_frame=chain.merges_within_frame)
    assert d.coil_bbox_px == [30, 50, 40, 76] and d.frames == [0, 1] and d.length_mm == 26
    same_frame = [Piece(0, "bright", 0.9, (0, 0, 20, 20), 400), Piece(0, "bright", 0.8, (10, 10, 30, 30), 400)]
    assert len(merge_pieces(same_frame, geo, 3 * TILE, TILE, within_frame=False)) == 2  # a detector's own boxes
    assert len(merge_pieces(same_frame, geo, 3 * TILE, TILE, within_frame=True)) == 1


def test_fragments_in_line_along_the_strip_are_one_defect_but_neighbours_across_are_not():
    geo = StripGeometry(mm_per_px_across=1.0, mm_per_px_along=1.0, strip_width_mm=400)
    line = [Piece(0, "scratch", 0.9, (100, y, 110, y + 40), 400) for y in (0, 50, 100)]  # 10 px gaps along
    beside = [Piece(0, "scratch", 0.9, (200, 0, 210, 40), 400)]  # same rows, 90 px across
    defects = merge_pieces(line + beside, geo, 400, 256)
    assert sorted(d.coil_bbox_px for d in defects) == [[100, 0, 110, 140], [200, 0, 210, 40]]
    far = [Piece(0, "scratch", 0.9, (100, y, 110, y + 40), 400) for y in (0, 100)]  # 60 mm apart: two
    assert len(merge_pieces(far, geo, 400, 256)) == 2
    blobs = [Piece(0, "patch", 0.9, (100, y, 160, y + 20), 1200) for y in (0, 30)]  # wider than long: two
    assert len(merge_pieces(blobs, geo, 400, 256)) == 2


def test_the_classifier_renames_defects_and_both_verdicts_are_kept():
    img = frame()
    img[20:30, 40:150] = 255
    names = ("pits", "scratch")
    chain = DetectorChain(detector(), classifier=classifier(names, [0.0, 3.0]), tile_overlap=0)
    assert chain.class_names == names
    ((pieces, _),) = chain.pieces([(0, img, (0, TILE))])
    (p,) = pieces
    assert p.class_name == "scratch" and p.detector_class == "bright" and p.confidence == pytest.approx(0.9)
    assert p.classifier_confidence == pytest.approx(float(np.exp(3) / (1 + np.exp(3))), abs=1e-3)
    geo = StripGeometry(mm_per_px_across=1.0, mm_per_px_along=1.0, strip_width_mm=192)
    (d,) = merge_pieces(pieces, geo, 3 * TILE, TILE)
    row = d.as_dict()
    assert row["class"] == "scratch" and row["detector_class"] == "bright" and "classifier_confidence" in row


def test_the_gate_skips_clean_tiles():
    img = frame()
    img[20:30, 40:50] = 255
    det = detector()
    closed = DetectorChain(det, gate=classifier(("clean", "defect"), [3.0, 0.0]), tile_overlap=0)
    ((pieces, info),) = closed.pieces([(0, img, (0, TILE))])
    assert pieces == [] and info["tiles_decoded"] == 0 and det.backend.calls == 0
    opened = DetectorChain(det, gate=classifier(("clean", "defect"), [0.0, 3.0]), tile_overlap=0)
    ((pieces, info),) = opened.pieces([(0, img, (0, TILE))])
    assert len(pieces) == 1 and info["tiles_decoded"] == 3


def test_bad_chains_are_refused():
    with pytest.raises(ConfigError, match="tile overlap"):
        DetectorChain(detector(), tile_overlap=40)
    with pytest.raises(ModelFileError, match="gate"):
        DetectorChain(detector(), classifier=classifier(("clean", "defect"), [0.0, 1.0]))
    with pytest.raises(Exception, match="defect' or 'clean'"):
        DetectorChain(detector(), gate=classifier(("a", "b"), [0.0, 1.0]))


@pytest.mark.parametrize("shape", [(200, 1600), (1000, 2048), (130, 270)])
def test_frames_of_any_size_go_through_both_chains(shape, tmp_path):
    from steelscan.deploy.predictors import load_predictor
    from steelscan.inspection.chain import SegmenterChain
    from tests.service_helpers import tiny_artifact

    img = np.full(shape, 60, np.uint8)
    img[shape[0] // 2 : shape[0] // 2 + 10, 5:shape[1] - 5] = 255  # across every tile border
    ((pieces, info),) = DetectorChain(detector()).pieces([(0, img, (0, shape[0]))])
    assert [p.bbox for p in pieces] == [(5, shape[0] // 2, shape[1] - 5, shape[0] // 2 + 10)]
    seg = SegmenterChain(load_predictor(tiny_artifact(tmp_path), threads=1))
    ((pieces, info),) = seg.pieces([(0, img, (0, shape[0]))])
    assert info["tiles"] >= 1 and all(0 <= p.bbox[0] < p.bbox[2] <= shape[1] and p.bbox[3] <= shape[0] for p in pieces)


def test_a_segmenter_station_runs_on_openvino_like_on_onnx_runtime(tmp_path):
    from steelscan.inspection.chain import load_chain
    from tests.service_helpers import tiny_artifact

    art = str(tiny_artifact(tmp_path))
    with pytest.raises(ConfigError, match="runtime"):
        load_chain(art, frame_shape=(128, 256), runtime="tensorrt")
    pytest.importorskip("openvino", reason="the optional package openvino is not installed")
    img = np.random.default_rng(0).integers(0, 255, (128, 256), dtype=np.uint8)
    item = [(0, img, (0, 128))]
    onnx = load_chain(art, frame_shape=(128, 256), threads=1).pieces(item)[0][0]
    ov = load_chain(art, frame_shape=(128, 256), threads=1, runtime="openvino").pieces(item)[0][0]
    assert [p.bbox for p in ov] == [p.bbox for p in onnx]


def test_two_checkpoints_of_one_name_get_their_own_artifacts(tmp_path):
    from steelscan.deploy.export import artifact_for_frames
    from tests.detector_helpers import tiny_detector

    a, b = tiny_detector(tmp_path / "run_a", "model.pt"), tiny_detector(tmp_path / "run_b", "model.pt")
    out = tmp_path / "out"
    assert artifact_for_frames(str(a), out) != artifact_for_frames(str(b), out)
    assert artifact_for_frames(str(a), out) == artifact_for_frames(str(a), out)  # exported once
