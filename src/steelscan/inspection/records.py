"""The inspection station's records: a piece of a defect seen in one frame, and a merged defect on the strip.

Coordinates. Frames are numbered from the coil head; frame k covers coil rows [k * step, k * step + H),
step = H - overlap. Pixel boxes are xyxy, 0-based, x2/y2 exclusive. A `Piece` lies in its frame's *owned*
rows (the overlap band is split in the middle, see `steelscan.inspection.geometry`), so no pixel is counted
twice; pieces of one defect in adjacent frames or tiles touch and are merged into one `Defect`.

Strip coordinates of a `Defect`: `along_m` is the centre's distance from the coil head in metres;
`across_mm` the centre's distance in mm from the strip's left edge as the top-surface camera sees it (the
bottom surface's image is mirrored, so both surfaces measure from the same physical edge).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


EXTRA_FIELDS = ("detector_class", "classifier_confidence")


@dataclass(frozen=True)
class Piece:
    frame: int
    class_name: str
    confidence: float  # mean defect probability over its pixels (segmenter) or the box score (detector)
    bbox: tuple[int, int, int, int]  # frame px
    area_px: int
    # set when a defect classifier named the piece (class_name is then its class, confidence the detector's)
    detector_class: str | None = None
    classifier_confidence: float | None = None

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["bbox"] = list(self.bbox)
        return d

    def extra(self) -> dict | None:
        """What the classifier added, as stored beside the piece (None: nothing)."""
        d = {k: getattr(self, k) for k in EXTRA_FIELDS if getattr(self, k) is not None}
        return d or None


@dataclass
class Defect:
    id: int
    class_name: str
    confidence: float
    along_m: float
    across_mm: float
    length_mm: float
    width_mm: float
    area_mm2: float
    frame: int  # the first frame it appears in
    bbox: list[int]  # its box in that frame, px
    coil_bbox_px: list[int]  # its box in coil px (x across, y along from the head)
    area_px: int
    frames: list[int] = field(default_factory=list)
    detector_class: str | None = None  # the detector's class when a classifier named the defect
    classifier_confidence: float | None = None

    def as_dict(self) -> dict:
        """The JSON form `steelscan inspect` writes and `steelscan grade` reads ("class", not "class_name");
        the classifier's keys only when it named the defect."""
        d = {k: v for k, v in asdict(self).items() if v is not None or k not in EXTRA_FIELDS}
        d["class"] = d.pop("class_name")
        return d
