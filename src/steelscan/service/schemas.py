"""Request and response bodies of the service (pydantic). These are the OpenAPI schema at /openapi.json.

Units follow the inspection records: positions in metres along the coil from its head and mm across
from the strip's edge, boxes xyxy in frame pixels (x2/y2 exclusive), areas in mm².
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from steelscan.store import COIL_ID_RULE


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorBody(_Out):
    error: str = Field(description="What was expected and what arrived")
    status: int


class Health(_Out):
    status: Literal["ok"]
    model: str | None
    classes: list[str] = Field(default_factory=list, description="the station's defect class names, in the model's order")
    warnings: list[str] = Field(default_factory=list, description="e.g. a model no better than predicting no defect")
    queue: int = Field(description="frames waiting for inference")
    uptime_s: float
    auth: bool = Field(description="whether /v1 requires a bearer token")


# strict: JSON true is not the number 1 (a manifest's `mm_per_px_across: true` was once taken as 1.0)
EdgePx = Annotated[int, Field(strict=True, ge=0, le=16384)]


class CoilCreate(BaseModel):
    """A coil to inspect. Geometry left out takes the server's defaults (`steelscan serve --manifest`). The bounds
    are `StripGeometry.validate`'s; the frame's pixel count is also bounded by the service's --max-pixels (422),
    the overlap by half the frame height, the strip edges by the frame width."""

    model_config = ConfigDict(extra="forbid")
    coil_id: str = Field(pattern=COIL_ID_RULE, description="1-64 letters, digits, '.', '_' or '-'")
    mm_per_px_across: float | None = Field(None, strict=True, ge=0.005, le=50)
    mm_per_px_along: float | None = Field(None, strict=True, ge=0.005, le=50)
    strip_width_mm: float | None = Field(None, strict=True, ge=10, le=5000)
    frame_overlap_px: int | None = Field(None, strict=True, ge=0, le=8191,
                                         description="below half the frame height")
    surface_side: Literal["top", "bottom"] | None = None
    strip_edges_px: tuple[EdgePx, EdgePx] | None = Field(None, description="[left, right) within the frame width")
    # the manifest's key names; `frame_width` / `frame_height` (the first API's) are still read
    frame_width_px: int | None = Field(None, strict=True, ge=16, le=16384,
                                       validation_alias=AliasChoices("frame_width_px", "frame_width"))
    frame_height_px: int | None = Field(None, strict=True, ge=16, le=16384,
                                        validation_alias=AliasChoices("frame_height_px", "frame_height"))


class Grade(_Out):
    grade: str
    passed: bool
    score: float
    decided_by: list[str]
    per_class: dict[str, dict]
    product: str


class Periodic(_Out):
    class_name: str
    pitch_m: float
    roll_diameter_m: float
    count: int
    across_mm: float
    first_along_m: float
    defect_ids: list[int]
    residual_mm: float
    missing: int


class CoilBrief(_Out):
    coil_id: str
    created_at: str
    status: Literal["open", "closed"]
    n_frames: int = Field(description="frames committed")
    grade: Grade | None = None
    grade_final: bool = Field(description="false: the grade is provisional, from the frames so far")


class CoilList(_Out):
    coils: list[CoilBrief]
    limit: int
    offset: int


class CoilDetail(CoilBrief):
    info: dict
    coil: dict | None = Field(description="length, width and geometry as the inspection sees it (null before frame 0)")
    n_defects: int
    counts_by_class: dict[str, int]
    periodic: list[Periodic]
    missing_frames: list[int] = Field(description="gaps in 0..highest frame (first 100)")
    n_missing_frames: int


class Piece(_Out):
    frame: int
    class_name: str
    confidence: float
    bbox: list[int]
    area_px: int
    detector_class: str | None = Field(None, description="the detector's class, when a defect classifier named it")
    classifier_confidence: float | None = None


class FrameOut(_Out):
    coil_id: str
    frame: int
    committed: bool = Field(description="false: the frame was already stored (a retry); its stored pieces are returned")
    pieces: list[Piece]
    ms: float = Field(description="inference ms per frame in its batch")
    tiles: int
    tiles_decoded: int
    batch_frames: int


class Defect(_Out):
    """The JSON form of `steelscan.inspection.records.Defect` (`as_dict`: "class" for class_name); a test keeps
    the two in step."""

    id: int
    class_: str = Field(alias="class")
    confidence: float
    along_m: float
    across_mm: float
    length_mm: float
    width_mm: float
    area_mm2: float
    frame: int
    bbox: list[int]
    coil_bbox_px: list[int]
    area_px: int
    frames: list[int]
    detector_class: str | None = Field(None, description="the detector's class, when a defect classifier named it")
    classifier_confidence: float | None = None


class DefectPage(_Out):
    coil_id: str
    total: int = Field(description="defects matching the filters")
    limit: int
    offset: int
    defects: list[Defect]


class Classification(_Out):
    model: str
    class_: str = Field(alias="class")
    probability: float
    probabilities: dict[str, float]


class Box(_Out):
    class_: str = Field(alias="class")
    score: float
    box: list[float] = Field(description="x1 y1 x2 y2 in pixels of the uploaded image")


class Detections(_Out):
    model: str
    score_threshold: float
    detections: list[Box]
