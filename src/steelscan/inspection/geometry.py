"""Strip geometry: frame pixels -> coil pixels -> strip coordinates (metres along, mm across).

Frames come in order from the coil head; frame k covers coil rows [k * step, k * step + H) with
step = H - overlap. The overlap band is split in the middle: frame k *owns* rows
[overlap // 2, H - (overlap - overlap // 2)) of itself (the first frame from row 0, the last to row H), so
every coil row belongs to exactly one frame and no defect pixel is counted twice.

Across the strip: `strip_edges_px` = [left, right) are the strip's columns in the frame (None: the strip
fills the frame). The top surface measures from the left edge; the bottom camera sees the strip mirrored,
so its across position is measured from the right image edge: both then name the same physical edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from steelscan.core.errors import SteelscanError

SIDES = ("top", "bottom")


@dataclass(frozen=True)
class StripGeometry:
    mm_per_px_across: float
    mm_per_px_along: float
    strip_width_mm: float
    frame_overlap_px: int = 0
    surface_side: Literal["top", "bottom"] = "top"
    strip_edges_px: tuple[int, int] | None = None

    def validate(self, frame_width: int, frame_height: int) -> None:
        """Refuse negative or absurd geometry with what was expected and what arrived."""
        for key in ("mm_per_px_across", "mm_per_px_along"):
            v = getattr(self, key)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0.005 <= v <= 50):
                raise SteelscanError(f"{key} must be 0.005..50 mm per pixel, got {v!r}")
        w = self.strip_width_mm
        if isinstance(w, bool) or not (isinstance(w, (int, float)) and 10 <= w <= 5000):
            raise SteelscanError(f"strip_width_mm must be 10..5000 mm, got {self.strip_width_mm!r}")
        o = self.frame_overlap_px
        if isinstance(o, bool) or not (isinstance(o, int) and 0 <= o < frame_height // 2):
            raise SteelscanError(f"frame_overlap_px must be an integer 0..{frame_height // 2 - 1} for "
                                 f"{frame_height} px frames, got {self.frame_overlap_px!r}")
        if self.surface_side not in SIDES:
            raise SteelscanError(f"surface_side must be top or bottom, got {self.surface_side!r}")
        if self.strip_edges_px is not None:
            left, right = self.strip_edges_px
            if not 0 <= left < right <= frame_width:
                raise SteelscanError(f"strip_edges_px must be [left, right) within 0..{frame_width}, "
                                     f"got {list(self.strip_edges_px)}")

    def step(self, frame_height: int) -> int:
        return frame_height - self.frame_overlap_px

    def owned_rows(self, k: int, frame_height: int, n_frames: int | None = None) -> tuple[int, int]:
        """The rows [y0, y1) of frame k that belong to it alone (n_frames None: k is not known to be last)."""
        o = self.frame_overlap_px
        y0 = 0 if k == 0 else o // 2
        y1 = frame_height if n_frames is not None and k == n_frames - 1 else frame_height - (o - o // 2)
        return y0, y1

    def to_coil(self, frame: int, bbox, frame_height: int) -> list[int]:
        """A frame box (xyxy px) -> the same box in coil px (y from the head)."""
        y = frame * self.step(frame_height)
        x1, y1, x2, y2 = (int(v) for v in bbox)
        return [x1, y1 + y, x2, y2 + y]

    def strip_coords(self, coil_box, frame_width: int) -> dict[str, float]:
        """along_m / across_mm of the box centre, length_mm / width_mm of its extent."""
        x1, y1, x2, y2 = coil_box
        left, right = self.strip_edges_px or (0, frame_width)
        cx = (x1 + x2) / 2
        across_px = cx - left if self.surface_side == "top" else right - cx
        return {"along_m": round((y1 + y2) / 2 * self.mm_per_px_along / 1000.0, 6),
                "across_mm": round(across_px * self.mm_per_px_across, 3),
                "length_mm": round((y2 - y1) * self.mm_per_px_along, 3),
                "width_mm": round((x2 - x1) * self.mm_per_px_across, 3)}

    @property
    def mm2_per_px(self) -> float:
        return self.mm_per_px_across * self.mm_per_px_along

    def as_dict(self) -> dict[str, Any]:
        return {"mm_per_px_across": self.mm_per_px_across, "mm_per_px_along": self.mm_per_px_along,
                "strip_width_mm": self.strip_width_mm, "frame_overlap_px": self.frame_overlap_px,
                "surface_side": self.surface_side,
                "strip_edges_px": list(self.strip_edges_px) if self.strip_edges_px else None}


def geometry_from_manifest(manifest: dict, overrides: dict | None = None) -> StripGeometry:
    """Geometry from a coil manifest (as `steelscan synth coil` writes it), command-line values winning."""
    values = {k: manifest.get(k) for k in ("mm_per_px_across", "mm_per_px_along", "strip_width_mm")}
    values["frame_overlap_px"] = manifest.get("frame_overlap_px", 0)
    values["surface_side"] = manifest.get("surface_side", "top")
    edges = manifest.get("strip_edges_px")
    values["strip_edges_px"] = tuple(edges) if edges is not None else None
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    missing = [k for k, v in values.items() if v is None and k != "strip_edges_px"]
    if missing:
        raise SteelscanError(f"strip geometry lacks {', '.join(missing)}: give them in the manifest or as options")
    if isinstance(values["strip_edges_px"], list):
        values["strip_edges_px"] = tuple(values["strip_edges_px"])
    if values["strip_edges_px"] is not None and (len(values["strip_edges_px"]) != 2
                                                 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in values["strip_edges_px"])):
        raise SteelscanError(f"strip_edges_px must be two integers [left, right), got {edges!r}")
    return StripGeometry(**values)
