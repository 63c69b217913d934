"""Strip coordinates on constructed frames, and merging pieces across tiles and frames."""

from __future__ import annotations

import numpy as np
import pytest

from steelscan.core.errors import SteelscanError
from steelscan.inspection.geometry import StripGeometry, geometry_from_manifest
from steelscan.inspection.merge import merge_pieces, pieces_from_boxes, pieces_from_masks
from steelscan.inspection.records import Piece

GEO = StripGeometry(mm_per_px_across=0.5, mm_per_px_along=2.0, strip_width_mm=700, frame_overlap_px=16,
                    strip_edges_px=(100, 1500))


def test_strip_coordinates_on_a_constructed_frame():
    h, w = 256, 1600
    masks = np.zeros((4, h, w), np.uint8)
    masks[2, 40:60, 300:340] = 1  # class 3, 20 rows x 40 columns in frame 5
    probs = masks.astype(np.float32) * 0.8
    (piece,) = pieces_from_masks(5, masks, probs, GEO.owned_rows(5, h), ["1", "2", "3", "4"])
    assert piece.bbox == (300, 40, 340, 60) and piece.area_px == 800 and piece.confidence == pytest.approx(0.8)
    (d,) = merge_pieces([piece], GEO, w, h)
    step = h - 16
    assert d.coil_bbox_px == [300, 5 * step + 40, 340, 5 * step + 60]
    assert d.along_m == pytest.approx((5 * step + 50) * 2.0 / 1000)  # centre row x 2 mm
    assert d.across_mm == pytest.approx((320 - 100) * 0.5)  # from the left strip edge
    assert (d.length_mm, d.width_mm, d.area_mm2) == (40.0, 20.0, 800.0)  # 20 px x 2 mm, 40 px x 0.5 mm, x 1 mm²
    assert d.frame == 5 and d.bbox == [300, 40, 340, 60] and d.class_name == "3"
    bottom = StripGeometry(0.5, 2.0, 700, 16, "bottom", (100, 1500))
    (db,) = merge_pieces([piece], bottom, w, h)
    assert db.across_mm == pytest.approx((1500 - 320) * 0.5)  # mirrored: measured from the same physical edge


def test_owned_rows_split_the_overlap_once():
    h, n = 256, 4
    rows = []
    for k in range(n):
        y0, y1 = GEO.owned_rows(k, h, n)
        rows += [k * GEO.step(h) + y for y in range(y0, y1)]
    assert rows == list(range((n - 1) * GEO.step(h) + h))  # every coil row exactly once


def test_a_defect_across_a_frame_border_is_one_defect_with_its_area_counted_once():
    h, w, o = 256, 1600, 16
    step = h - o
    coil = np.zeros((4, 3 * step + o, w), np.uint8)
    coil[0, step - 60 : step + 100, 500:520] = 1  # crosses the border between frames 0 and 1
    coil[0, step - 60 : step + 100, 900:910] = 1  # same class, far across: a different defect
    pieces = []
    for k in range(3):
        frame = coil[:, k * step : k * step + h]
        pieces += pieces_from_masks(k, frame, None, GEO.owned_rows(k, h, 3), ["1", "2", "3", "4"])
    assert len(pieces) == 4  # each defect is cut in two by the owned-row split
    defects = merge_pieces(pieces, GEO, w, h)
    assert len(defects) == 2
    a = defects[0] if defects[0].coil_bbox_px[0] == 500 else defects[1]
    assert a.coil_bbox_px == [500, step - 60, 520, step + 100] and a.area_px == 160 * 20 and a.frames == [0, 1]
    assert a.bbox == [500, step - 60, 520, h] and a.frame == 0


def test_a_defect_across_tiles_is_one_component_after_stitching():
    h, w = 256, 1600
    masks = np.zeros((4, h, w), np.uint8)
    masks[1, 100:120, 380:430] = 1  # crosses the tile border at x = 400 (tiles 256x400)
    pieces = pieces_from_masks(0, masks, None, (0, h), ["1", "2", "3", "4"])
    assert len(pieces) == 1 and pieces[0].bbox == (380, 100, 430, 120)


def test_merge_respects_class_and_gap():
    p = [Piece(0, "1", 0.9, (10, 10, 20, 20), 100), Piece(0, "1", 0.5, (21, 10, 30, 20), 90),
         Piece(0, "2", 0.9, (10, 10, 20, 20), 100), Piece(0, "1", 0.9, (40, 10, 50, 20), 100)]
    d = merge_pieces(p, GEO, 1600, 256, gap_px=2)
    by_class = sorted((x.class_name, x.coil_bbox_px[0], x.coil_bbox_px[2]) for x in d)
    assert by_class == [("1", 10, 30), ("1", 40, 50), ("2", 10, 20)]
    merged = next(x for x in d if x.class_name == "1" and x.coil_bbox_px[2] == 30)
    assert merged.confidence == pytest.approx((0.9 * 100 + 0.5 * 90) / 190, abs=1e-4)
    assert [x.id for x in d] == list(range(3))


def test_detector_boxes_are_clipped_to_owned_rows():
    pieces = pieces_from_boxes(1, np.array([[10, 0, 30, 40], [5, 250, 9, 256]]), np.array([0.9, 0.8]),
                               np.array([0, 1]), GEO.owned_rows(1, 256), ["a", "b"])
    assert [p.bbox for p in pieces] == [(10, 8, 30, 40)]  # the second lies in the overlap frame 2 owns


@pytest.mark.parametrize("change,message", [
    ({"mm_per_px_across": -1}, "mm_per_px_across must be"),
    ({"mm_per_px_along": 1e6}, "mm_per_px_along must be"),
    ({"strip_width_mm": 0}, "strip_width_mm must be"),
    ({"frame_overlap_px": 200}, "frame_overlap_px must be"),
    ({"surface_side": "left"}, "surface_side must be top or bottom"),
    ({"strip_edges_px": (1500, 100)}, "strip_edges_px must be"),
])
def test_absurd_geometry_is_refused(change, message):
    values = {**GEO.as_dict(), "strip_edges_px": GEO.strip_edges_px, **change}
    with pytest.raises(SteelscanError, match=message):
        StripGeometry(**values).validate(1600, 256)


def test_geometry_from_manifest_with_overrides():
    m = {"mm_per_px_across": 1.0, "mm_per_px_along": 1.0, "strip_width_mm": 1200, "frame_overlap_px": 8,
         "surface_side": "top", "strip_edges_px": [10, 1210]}
    g = geometry_from_manifest(m, {"surface_side": "bottom", "mm_per_px_along": None})
    assert g.surface_side == "bottom" and g.strip_edges_px == (10, 1210) and g.mm_per_px_along == 1.0
    with pytest.raises(SteelscanError, match="lacks strip_width_mm"):
        geometry_from_manifest({"mm_per_px_across": 1.0, "mm_per_px_along": 1.0})


@pytest.mark.parametrize("key", ["mm_per_px_across", "mm_per_px_along", "strip_width_mm", "frame_overlap_px"])
def test_booleans_in_a_manifest_are_not_numbers(key):
    from steelscan.core.errors import SteelscanError
    from steelscan.inspection.geometry import geometry_from_manifest

    manifest = {"mm_per_px_across": 1.0, "mm_per_px_along": 1.0, "strip_width_mm": 400, "frame_overlap_px": 0,
                key: True}
    with pytest.raises(SteelscanError, match=key):
        geometry_from_manifest(manifest).validate(400, 256)
