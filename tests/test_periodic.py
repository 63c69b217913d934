"""Periodic defects (roll marks): pitch, members, robustness to random defects and missed turns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from steelscan.data.synthetic.coil import CoilSpec, coil_truth
from steelscan.core.errors import SteelscanError
from steelscan.inspection.periodic import PeriodicFinding, find_periodic
from steelscan.inspection.records import Defect

LENGTH_M = 100.0


def defect(i: int, cls: str, along_m: float, across_mm: float) -> Defect:
    return Defect(id=i, class_name=cls, confidence=0.9, along_m=along_m, across_mm=across_mm, length_mm=20.0,
                  width_mm=20.0, area_mm2=300.0, frame=0, bbox=[0, 0, 1, 1], coil_bbox_px=[0, 0, 1, 1], area_px=1)


class Coil:
    """Defects of a made-up coil; `lattices` are the true roll-mark lines (class, first m, pitch m, across)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.defects: list[Defect] = []
        self.lattices: list[tuple[str, float, float, float]] = []

    def add(self, cls: str, along_m: float, across_mm: float) -> int:
        self.defects.append(defect(len(self.defects), cls, along_m, across_mm))
        return len(self.defects) - 1

    def roll(self, cls: str, diameter_m: float, across_mm: float, first_m: float = 0.7, skip=(),
             jitter_mm: float = 2.0, length_m: float = LENGTH_M) -> list[int]:
        pitch = math.pi * diameter_m
        self.lattices.append((cls, first_m, pitch, across_mm))
        return [self.add(cls, first_m + n * pitch + self.rng.uniform(-jitter_mm, jitter_mm) / 1000.0,
                         across_mm + self.rng.uniform(-jitter_mm, jitter_mm))
                for n in range(int((length_m - first_m) / pitch) + 1) if n not in skip]

    def random(self, n: int, classes=("1", "2", "3", "4"), across=(10.0, 1390.0)) -> None:
        """n random defects; none within 10 mm along and 40 mm across of a true mark's turn (those would be
        indistinguishable from the mark, so the exact member sets below would be ill-defined)."""
        while n:
            cls = str(self.rng.choice(classes))
            along, x = self.rng.uniform(0, LENGTH_M), self.rng.uniform(*across)
            if any(c == cls and abs(x - ax) < 40 and abs((along - f + p / 2) % p - p / 2) < 0.010
                   for c, f, p, ax in self.lattices):
                continue
            self.add(cls, along, x)
            n -= 1


def test_roll_mark_among_random_defects_and_missed_turns():
    coil = Coil(0)
    marks = coil.roll("1", 0.6, 500.0, skip=(10, 25))
    coil.random(30, classes=("1",), across=(485.0, 515.0))  # same class, same track
    coil.random(40)
    found = find_periodic(coil.defects)
    assert len(found) == 1
    f = found[0]
    assert abs(f.pitch_m - math.pi * 0.6) < 0.005
    assert abs(f.roll_diameter_m - 0.6) < 0.002
    assert sorted(f.defect_ids) == marks
    assert (f.class_name, f.count, f.missing) == ("1", len(marks), 2)
    assert abs(f.across_mm - 500.0) < 3 and abs(f.first_along_m - 0.7) < 0.003 and 0 < f.residual_mm < 3


def test_two_rolls_in_two_tracks():
    coil = Coil(1)
    a = coil.roll("1", 0.6, 300.0)
    b = coil.roll("1", 0.8, 900.0, first_m=1.3, skip=(7,))
    coil.random(40)
    found = find_periodic(coil.defects)
    assert [sorted(f.defect_ids) for f in found] == [a, b]  # most members first
    assert abs(found[0].pitch_m - math.pi * 0.6) < 0.005 and abs(found[1].pitch_m - math.pi * 0.8) < 0.005
    assert found[1].missing == 1


def test_two_rolls_in_one_track():
    coil = Coil(2)
    a = coil.roll("2", 0.6, 700.0)
    b = coil.roll("2", 0.52, 702.0, first_m=1.1)
    found = find_periodic(coil.defects)
    assert sorted(sorted(f.defect_ids) for f in found) == sorted([a, b])
    assert sorted(round(f.roll_diameter_m, 2) for f in found) == [0.52, 0.6]


@pytest.mark.parametrize("seed", range(5))
def test_random_defects_give_no_finding(seed):
    coil = Coil(100 + seed)
    coil.random(60, classes=("1",), across=(480.0, 520.0))  # one dense track: pairs align by chance
    coil.random(60)
    assert find_periodic(coil.defects) == []
    assert find_periodic(coil.defects, min_count=3) == []


def test_residual_criterion_rejects_loose_alignment():
    pitch = math.pi * 0.6
    others = [defect(100 + k, "3", 2.0 + 9.0 * k, 100.0) for k in range(11)]  # the coil's length

    def group(offsets_mm):
        return [defect(k, "1", 20.0 + k * pitch + o / 1000.0, 500.0) for k, o in enumerate(offsets_mm)] + others

    assert len(find_periodic(group([1, -1, 1, -1, 1, -1]))) == 1
    # Every mark within 10 mm of the fitted line (residuals 4..8.8 mm), but an RMS of 6.7 mm: chance-like.
    assert find_periodic(group([7, -7, 7, -7, 7, -7])) == []


def test_members_share_the_across_position():
    coil = Coil(6)
    marks = coil.roll("1", 0.6, 500.0)
    for x in np.arange(300.0, 701.0, 10.0):  # chain one wide track, 300..700 mm
        coil.add("1", coil.rng.uniform(0, LENGTH_M), x)
    decoys = [coil.add("1", 0.7 + n * math.pi * 0.6, x) for n, x in ((3, 420.0), (9, 580.0), (20, 350.0))]
    (f,) = find_periodic(coil.defects)
    assert sorted(f.defect_ids) == marks and not set(decoys) & set(f.defect_ids)


def test_chance_criterion_rejects_few_aligned_in_a_dense_track():
    coil = Coil(7)
    marks = coil.roll("1", 0.6, 500.0, first_m=40.0, jitter_mm=1.0, length_m=46.0)
    assert len(marks) == 4
    sparse = find_periodic(coil.defects + [defect(900, "3", 0.1, 50.0), defect(901, "3", 99.9, 50.0)])
    assert [sorted(f.defect_ids) for f in sparse] == [marks]
    coil.random(150, classes=("1",), across=(485.0, 515.0))
    assert find_periodic(coil.defects) == []  # four aligned among 150 in one track is no evidence


def test_fewer_than_min_count_and_too_many_missing():
    coil = Coil(3)
    marks = coil.roll("4", 1.0, 600.0, first_m=30.0, length_m=37.0)
    coil.random(30, classes=("2", "3"))
    assert len(marks) == 3
    assert find_periodic(coil.defects) == []
    assert [f.defect_ids for f in find_periodic(coil.defects, min_count=3)] == [marks]
    gappy = Coil(4)
    marks = gappy.roll("4", 0.6, 600.0, first_m=30.0, length_m=42.0, skip=(1, 4, 5))  # turns 0, 2, 3, 6
    gappy.random(30, classes=("2", "3"))
    assert len(marks) == 4 and find_periodic(gappy.defects) == []
    (f,) = find_periodic(gappy.defects, max_missing_share=0.5)
    assert (f.defect_ids, f.missing) == (marks, 3)


def test_dict_input_and_as_dict():
    coil = Coil(5)
    coil.roll("1", 0.7, 250.0)
    coil.random(30)
    objects = find_periodic(coil.defects)
    assert len(objects) == 1
    assert find_periodic([d.as_dict() for d in coil.defects]) == objects
    minimal = [{"id": d.id, "class": int(d.class_name), "along_m": d.along_m, "across_mm": d.across_mm}
               for d in coil.defects]
    assert find_periodic(minimal) == objects
    d = objects[0].as_dict()
    assert json.loads(json.dumps(d)) == d and set(d) == set(PeriodicFinding.__dataclass_fields__)
    assert find_periodic([]) == []


@pytest.mark.parametrize("kwargs", [
    {"min_count": 2}, {"min_count": 4.0}, {"pitch_range_m": (6.0, 0.5)}, {"pitch_range_m": (0.0, 6.0)},
    {"pitch_range_m": (0.5, math.inf)}, {"pitch_range_m": (0.5,)}, {"pitch_range_m": "0.5-6"},
    {"across_tol_mm": -1.0}, {"along_tol_mm": -5.0}, {"along_tol_mm": math.nan}, {"max_missing_share": 1.0},
    {"max_missing_share": -0.1},
])
def test_bad_arguments(kwargs):
    with pytest.raises(SteelscanError) as err:
        find_periodic([], **kwargs)
    assert "\n" not in str(err.value) and "got" in str(err.value)


def test_bad_defects():
    with pytest.raises(SteelscanError, match="along_m"):
        find_periodic([{"id": 1, "class": "1", "across_mm": 3.0}])


def test_synthetic_coil_roll_mark():
    spec = CoilSpec(seed=3, n_frames=200, frame_width=1600, frame_height=256, frame_overlap=16,
                    mm_per_px_across=1.0, mm_per_px_along=1.0, strip_width_mm=1400)
    truth = coil_truth(spec)
    defects = [{"id": d["id"], "class": str(d["class"]), "along_m": d["along_m"], "across_mm": d["across_mm"]}
               for d in truth["defects"]]
    (group,) = truth["periodic"]
    found = find_periodic(defects)
    assert len(found) == 1
    f = found[0]
    assert f.class_name == str(group["class"]) and f.count == group["count"] >= 20
    assert sorted(f.defect_ids) == sorted(group["defect_ids"])
    assert abs(f.pitch_m - group["pitch_m"]) < 0.001 and abs(f.roll_diameter_m - spec.roll_diameter_m) < 0.001
    assert f.missing == 0 and abs(f.across_mm - group["across_mm"]) < 1.0
