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


@dataclass(frozen=True)
class Piece:
    frame: int
    class_name: str
    confidence: float  # mean defect probability over its pixels (segmenter) or the box score (detector)
    bbox: tuple[int, int, int, int]  # frame px
    area_px: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        return d


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

    def as_dict(self) -> dict:
        """The JSON form `steelscan inspect` writes and `steelscan grade` reads ("class", not "class_name")."""
        d = asdict(self)
        d["class"] = d.pop("class_name")
        return d
