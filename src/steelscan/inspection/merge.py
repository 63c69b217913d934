"""From model outputs to defects on the strip: pieces per frame, then one defect per physical defect.

A segmenter's full-frame masks (stitched back from tiles, so a defect across a tile border is one component
already) give one `Piece` per 8-connected component in the frame's owned rows. A detector's boxes are
clipped to the owned rows. Pieces of one class whose coil boxes overlap or come within `gap_px` are merged
(union-find), which joins a defect cut by a frame border or by the owned-row split; so are fragments in line
along the rolling direction across small gaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from steelscan.postprocess import MIN_COMPONENT_FLOOR
from steelscan.inspection.geometry import StripGeometry
from steelscan.inspection.records import Defect, Piece


# The station drops components smaller than this before recording them: pixels just over the threshold at a
# defect's rim survive the per-class total-area rule (the frame's real defect carries the total), and each
# would count as a defect of its own (23 of 37 "defects" on the demo coil were 1-8 px specks).
MIN_PIECE_PX = MIN_COMPONENT_FLOOR  # the same floor `segment` and `evaluate` apply
# Pieces of one class in line along the rolling direction with at most this gap are one defect: a faint
# scratch comes out of a segmenter as a row of fragments (one scratch of the demo coil came out as 4 defects).
FRAGMENT_GAP_MM = 20.0
ALIGN_SHARE = 0.5  # in line: overlapping across by this share of the narrower piece


def pieces_from_masks(frame: int, masks: np.ndarray, probs: np.ndarray | None, owned: tuple[int, int],
                      class_names: Sequence[str], min_area_px: int = 1) -> list[Piece]:
    """masks uint8 [C, H, W] (+ probabilities [C, H, W] for the confidence) -> pieces in rows `owned`."""
    y0, y1 = owned
    out = []
    for k, name in enumerate(class_names):
        band = np.ascontiguousarray(masks[k, y0:y1], dtype=np.uint8)
        if not band.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(band, connectivity=8)
        if probs is not None:  # mean probability per component in one pass
            sums = np.bincount(labels.ravel(), weights=probs[k, y0:y1].ravel().astype(np.float64), minlength=n)
        for c in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[c])
            if area < min_area_px:
                continue
            conf = float(sums[c] / area) if probs is not None else 1.0
            out.append(Piece(frame, name, round(conf, 4), (x, y + y0, x + w, y + y0 + h), area))
    return out


def pieces_from_boxes(frame: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      owned: tuple[int, int], class_names: Sequence[str]) -> list[Piece]:
    """Detector boxes (xyxy px) clipped to the owned rows; a box's area is its clipped box area."""
    y0, y1 = owned
    out = []
    for (x1, by1, x2, by2), s, lab in zip(np.asarray(boxes).reshape(-1, 4), scores, labels):
        a, b = max(int(round(by1)), y0), min(int(round(by2)), y1)
        xa, xb = int(round(x1)), int(round(x2))
        if b <= a or xb <= xa:
            continue
        out.append(Piece(frame, class_names[int(lab)], round(float(s), 4), (xa, a, xb, b), (xb - xa) * (b - a)))
    return out


def union_find_groups(n: int, pairs) -> list[list[int]]:
    """Connected groups of 0..n-1 joined by `pairs`, each in ascending order, groups by their first member."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def merge_pieces(pieces: Sequence[Piece], geometry: StripGeometry, frame_width: int, frame_height: int,
                 gap_px: int = 2, along_gap_mm: float = FRAGMENT_GAP_MM, within_frame: bool = True) -> list[Defect]:
    """Merge pieces into defects with strip coordinates; ids run from the head of the coil.

    Pieces of one class merge when their coil boxes overlap or come within `gap_px` (a defect cut by a frame
    or tile border), or when both are longer along the strip than across and lie one after the other, overlapping
    across by at least half the narrower, with at most `along_gap_mm` between them (fragments of one scratch).
    `within_frame` False: only pieces of different frames merge (a detector's boxes in one frame are final)."""
    boxes = [geometry.to_coil(p.frame, p.bbox, frame_height) for p in pieces]
    along_gap = max(gap_px, int(round(along_gap_mm / geometry.mm_per_px_along)))
    order = sorted(range(len(pieces)), key=lambda i: boxes[i][1])
    active: list[int] = []  # sweep along the coil: only boxes still within reach can touch the next one
    pairs = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        active = [j for j in active if boxes[j][3] + along_gap >= y1]
        for j in active:
            if pieces[j].class_name != pieces[i].class_name or (not within_frame and pieces[j].frame == pieces[i].frame):
                continue
            a1, b1, a2, b2 = boxes[j]
            across = min(x2, a2) - max(x1, a1)
            touching = across >= -gap_px and y1 <= b2 + gap_px
            # fragments of a line-like defect: both longer along than across, in line
            in_line = (across >= ALIGN_SHARE * min(x2 - x1, a2 - a1) and y2 - y1 >= x2 - x1 and b2 - b1 >= a2 - a1)
            if touching or in_line:
                pairs.append((i, j))
        active.append(i)
    groups = union_find_groups(len(pieces), pairs)
    step = geometry.step(frame_height)
    defects = []
    for members in groups:
        b = np.array([boxes[i] for i in members])
        box = [int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())]
        area = sum(pieces[i].area_px for i in members)
        conf = sum(pieces[i].confidence * pieces[i].area_px for i in members) / max(area, 1)
        frames = sorted({pieces[i].frame for i in members})
        first = frames[0]
        fy = first * step
        in_first = [box[0], max(box[1] - fy, 0), box[2], min(box[3] - fy, frame_height)]
        main = pieces[max(members, key=lambda i: pieces[i].area_px)]  # the classifier's verdict on the largest
        defects.append(Defect(0, main.class_name, round(conf, 4), **geometry.strip_coords(box, frame_width),
                              area_mm2=round(area * geometry.mm2_per_px, 3), frame=first, bbox=in_first,
                              coil_bbox_px=box, area_px=area, frames=frames, detector_class=main.detector_class,
                              classifier_confidence=main.classifier_confidence))
    defects.sort(key=lambda d: (d.coil_bbox_px[1], d.coil_bbox_px[0]))
    for i, d in enumerate(defects):
        d.id = i
    return defects
