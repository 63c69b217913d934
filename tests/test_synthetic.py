"""Synthetic data: exact on-disk formats, masks/boxes equal to what was drawn, determinism, class mix, coil."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES
from steelscan.data.rle import rle_decode
from steelscan.data.synthetic import (
    CoilSpec,
    image_rng,
    make_neu_image,
    make_severstal_image,
    neu_counts,
    neu_image,
    severstal_ids,
    severstal_image,
    write_coil,
    write_neu_cls,
    write_neu_det,
    write_severstal,
)
from steelscan.data.synthetic.coil import coil_plan
from steelscan.data.synthetic.defects import SEVERSTAL_DRAWERS, draw_roll_mark
from steelscan.data.synthetic.strips import SEVERSTAL_CLASS_SETS, class_sets_for, draw_class_set
from steelscan.data.synthetic.texture import finish
from steelscan.core.errors import SteelscanError
from tests.conftest import shared_data

SMALL_COIL = {"frame_width": 384, "frame_height": 192, "frame_overlap": 16, "strip_width_mm": 450.0,
              "roll_diameter_m": 0.08, "defects_per_metre": 3.0}


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- Severstal --------------------------------------------------------------------------------------------


def test_severstal_format_and_rle_roundtrip(tmp_path):
    n, seed = 10, 3
    summary = write_severstal(tmp_path, n, seed, workers=1)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    assert lines[0] == "ImageId,ClassId,EncodedPixels"
    rows = list(csv.reader(lines[1:]))
    assert rows == sorted(rows, key=lambda r: (r[0], int(r[1])))
    ids = severstal_ids(seed, n)
    files = sorted(p.name for p in (tmp_path / "train_images").iterdir())
    assert files == sorted(f"{i}.jpg" for i in ids)
    assert all(re.fullmatch(r"[0-9a-f]{9}\.jpg", f) for f in files)
    by_image: dict[str, dict[int, str]] = {}
    for image_id, cls, rle in rows:
        assert 1 <= int(cls) <= 4 and rle
        by_image.setdefault(image_id, {})[int(cls)] = rle
    for index, image_id in enumerate(ids):
        image, masks = severstal_image(seed, index)
        stored = cv2.imread(str(tmp_path / "train_images" / f"{image_id}.jpg"), cv2.IMREAD_GRAYSCALE)
        assert stored.shape == (256, 1600) and stored.dtype == np.uint8
        assert np.abs(stored.astype(int) - image).mean() < 6  # JPEG of the very image we drew
        assert cv2.imread(str(tmp_path / "train_images" / f"{image_id}.jpg"), cv2.IMREAD_UNCHANGED).shape[2] == 3
        present = by_image.get(f"{image_id}.jpg", {})
        for k in range(4):
            if k + 1 in present:
                np.testing.assert_array_equal(rle_decode(present[k + 1]), masks[k])
            else:
                assert not masks[k].any()
    assert summary.defect_free == n - len(by_image)
    assert sum(summary.per_class.values()) == len(rows)


def test_severstal_reader_reads_it(tmp_path):
    severstal = pytest.importorskip("steelscan.data.severstal")
    write_severstal(tmp_path, 4, 1, workers=1)
    ds = severstal.SeverstalDataset.from_root(tmp_path)
    assert len(ds) == 4
    item = ds[0]
    assert item["image"].shape == (256, 1600) and item["mask"].shape == (4, 256, 1600)


def test_severstal_class_mix_follows_the_real_set():
    n = 4000
    sets = [draw_class_set(image_rng(11, "severstal", i), SEVERSTAL_CLASS_SETS) for i in range(n)]
    total = sum(SEVERSTAL_CLASS_SETS.values())
    free = sum(1 for s in sets if not s) / n
    assert abs(free - 5902 / total) < 0.03
    for cls, real in zip((1, 2, 3, 4), (897, 247, 5150, 801)):
        share = sum(1 for s in sets if cls in s) / n
        assert abs(share - real / total) < max(0.01, 0.15 * real / total), (cls, share)
    assert 0.02 < sum(1 for s in sets if len(s) > 1) / n < 0.06
    minority = [draw_class_set(image_rng(11, "severstal", i), class_sets_for([2])) for i in range(300)]
    assert all(2 in s for s in minority)


@pytest.mark.parametrize("classes", [(1,), (2,), (3,), (4,), (1, 3), ()])
def test_severstal_masks_hold_exactly_the_drawn_classes(classes):
    image, masks = make_severstal_image(np.random.default_rng(5), classes)
    assert image.shape == (256, 1600) and image.dtype == np.uint8
    assert masks.shape == (4, 256, 1600) and masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    assert [bool(masks[k].any()) for k in range(4)] == [k + 1 in classes for k in range(4)]
    if len(classes) > 1:  # classes never share pixels
        assert masks.sum(0).max() == 1


@pytest.mark.parametrize("drawer", [*SEVERSTAL_DRAWERS.values(), draw_roll_mark])
def test_drawers_change_pixels_only_inside_their_mask(drawer):
    for seed in range(3):
        patch = np.full((120, 90), 120.0, np.float32)
        mask = drawer(patch, np.random.default_rng(seed))
        changed = patch != 120.0
        assert mask.shape == patch.shape and mask.any()
        assert not (changed & (mask == 0)).any(), "a drawer changed pixels outside its mask"
        assert changed[mask == 1].mean() > 0.3, "the mask is mostly undrawn"
        # The mask comes from the generator alone: same seed, other pixels, same mask.
        other = np.random.default_rng(99).uniform(50, 200, (120, 90)).astype(np.float32)
        np.testing.assert_array_equal(drawer(other, np.random.default_rng(seed)), mask)


def test_severstal_regions_are_not_rectangles():
    _, masks = make_severstal_image(np.random.default_rng(2), (4,))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(masks[3])
    fill = stats[1:, cv2.CC_STAT_AREA] / (stats[1:, cv2.CC_STAT_WIDTH] * stats[1:, cv2.CC_STAT_HEIGHT])
    assert (fill < 0.9).all()


# -- NEU --------------------------------------------------------------------------------------------------


def test_neu_cls_format(tmp_path):
    write_neu_cls(tmp_path, 12, seed=4, workers=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{p}_{k}.bmp" for p in NEU_CLS_PREFIXES for k in (1, 2))
    for prefix, name in zip(NEU_CLS_PREFIXES, NEU_CLASSES):
        path = tmp_path / f"{prefix}_2.bmp"
        data = path.read_bytes()
        assert data[:2] == b"BM" and int.from_bytes(data[28:30], "little") == 8  # 8-bit, like NEU's BMPs
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert stored.shape == (200, 200) and stored.dtype == np.uint8
        np.testing.assert_array_equal(stored, neu_image(4, name, 2)[0])  # BMP is lossless


def test_neu_cls_reader_reads_it(tmp_path):
    neu = pytest.importorskip("steelscan.data.neu")
    write_neu_cls(tmp_path, 6, seed=0, workers=1)
    items = neu.list_neu_cls(tmp_path)
    assert sorted(it.label for it in items) == list(range(6))


def test_neu_counts_balanced_weighted_chosen_and_exact():
    assert neu_counts(1000) == {c: (167 if i < 4 else 166) for i, c in enumerate(NEU_CLASSES)}
    weighted = neu_counts(600, class_weights={c: (0.2 if c == "patches" else 1.0) for c in NEU_CLASSES})
    assert weighted["patches"] == round(600 * 0.2 / 5.2) and sum(weighted.values()) == 600
    assert neu_counts(7, classes=["Sc"]) == {"scratches": 7}
    assert neu_counts(0, class_counts={"In": 5, "crazing": 2}) == {"crazing": 2, "inclusion": 5}
    with pytest.raises(SteelscanError, match="unknown NEU class"):
        neu_counts(5, classes=["rust"])


def test_neu_minority_class_extra_samples(tmp_path):
    write_neu_cls(tmp_path / "extra", 5, seed=4, classes=["In"], first_number=241, workers=1)
    assert sorted(p.name for p in (tmp_path / "extra").iterdir()) == [f"In_{k}.bmp" for k in range(241, 246)]
    write_neu_cls(tmp_path / "base", 0, seed=4, class_counts={"In": 2}, workers=1)
    # A photograph is keyed by (class, number): In_2 is the same image whatever else was generated.
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "base" / "In_2.bmp"), 0), neu_image(4, "inclusion", 2)[0])


def test_neu_det_format_matches_the_real_files(tmp_path):
    write_neu_det(tmp_path, 12, seed=6, workers=1)
    assert sorted(p.name for p in (tmp_path / "IMAGES").iterdir()) == sorted(
        f"{c}_{k}.jpg" for c in NEU_CLASSES for k in (1, 2))
    for c, prefix in zip(NEU_CLASSES, NEU_CLS_PREFIXES):
        stem = f"{c}_1"
        image = cv2.imread(str(tmp_path / "IMAGES" / f"{stem}.jpg"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (200, 200, 3)  # grey stored as 3 channels, as NEU-DET does
        root = ET.parse(tmp_path / "ANNOTATIONS" / f"{stem}.xml").getroot()
        assert root.findtext("folder") == prefix.lower() and root.findtext("filename") == f"{stem}.jpg"
        assert root.findtext("source/database") == "NEU-DET" and root.findtext("segmented") == "0"
        assert [root.findtext(f"size/{t}") for t in ("width", "height", "depth")] == ["200", "200", "1"]
        _, boxes, labels = neu_image(6, c, 1)
        objects = root.findall("object")
        assert len(objects) == len(boxes) >= 1 and NEU_CLASSES.index(c) in labels
        for obj, box, label in zip(objects, boxes, labels):
            assert obj.findtext("name") == NEU_CLASSES[label]
            assert [obj.findtext(t) for t in ("pose", "truncated", "difficult")] == ["Unspecified", "0", "0"]
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin < xmax <= 200 and 1 <= ymin < ymax <= 200
            assert (xmin - 1, ymin - 1, xmax, ymax) == tuple(int(v) for v in box)


def test_neu_det_tag_layout_equals_a_real_annotation(tmp_path):
    real = ET.parse(shared_data("neu-det") / "ANNOTATIONS" / "crazing_1.xml").getroot()
    write_neu_det(tmp_path, 0, seed=0, class_counts={"crazing": 1}, workers=1)
    ours = ET.parse(tmp_path / "ANNOTATIONS" / "crazing_1.xml").getroot()

    def layout(node):
        return [n.tag for n in node.iter() if n.tag != "object"][:14], [[c.tag for c in o.iter()] for o in
                                                                           node.findall("object")][:1]
    assert layout(ours) == layout(real)


def test_neu_det_reader_reads_it_and_cls_det_are_one_photograph(tmp_path):
    neu = pytest.importorskip("steelscan.data.neu")
    write_neu_det(tmp_path / "det", 6, seed=2, workers=1)
    write_neu_cls(tmp_path / "cls", 6, seed=2, workers=1)
    items = neu.list_neu_det(tmp_path / "det")
    assert len(items) == 6
    for it in items:
        image, boxes, labels = neu_image(2, it.class_name, it.number)
        np.testing.assert_array_equal(it.boxes, boxes)
        np.testing.assert_array_equal(it.labels, labels)
        bmp = cv2.imread(str(tmp_path / "cls" / f"{NEU_CLS_PREFIXES[it.label]}_{it.number}.bmp"), 0)
        assert np.abs(neu.load_neu_det_image(it).astype(int) - bmp).mean() < 6  # the same, up to JPEG loss


def test_neu_boxes_follow_the_real_tendencies():
    real_boxes_per_image = {"crazing": 2.3, "inclusion": 2.95, "patches": 2.89, "pitted_surface": 1.6,
                            "rolled-in_scale": 2.05, "scratches": 2.04}
    for c in NEU_CLASSES:
        sizes, counts = [], []
        for k in range(40):
            image, boxes, labels = make_neu_image(c, image_rng(8, "neu", NEU_CLASSES.index(c), k))
            assert image.shape == (200, 200) and image.dtype == np.uint8
            assert boxes.dtype == np.float32 and labels.dtype == np.int64
            assert ((boxes[:, :2] >= 0) & (boxes[:, 2:] <= 200)).all() and (boxes[:, 2:] - boxes[:, :2] >= 2).all()
            own = boxes[labels == NEU_CLASSES.index(c)]
            counts.append(len(own))
            sizes += (own[:, 2:] - own[:, :2]).tolist()
        assert abs(np.mean(counts) - real_boxes_per_image[c]) < 0.8, (c, np.mean(counts))
        w, h = np.median(np.array(sizes), 0)
        if c == "inclusion":
            assert h > 1.5 * w  # stretched along the rolling direction
        if c == "pitted_surface":
            assert h > 120
        if c == "crazing":
            assert w > 80


# -- coil -------------------------------------------------------------------------------------------------


def test_coil_format_truth_and_periodic_defect(tmp_path):
    spec = CoilSpec(seed=5, n_frames=10, **SMALL_COIL)
    write_coil(tmp_path, 10, 5, workers=1, **SMALL_COIL)
    man = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    for key in ("coil_id", "mm_per_px_across", "mm_per_px_along", "strip_width_mm", "frame_overlap_px",
                "surface_side"):
        assert key in man
    assert man["frame_overlap_px"] == 16 and man["n_frames"] == 10
    frames = [cv2.imread(str(tmp_path / "frames" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED) for k in range(10)]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{k:06d}.png" for k in range(10)]
    assert all(f.shape == (192, 384) and f.dtype == np.uint8 for f in frames)
    for a, b in zip(frames, frames[1:]):  # consecutive frames share their overlap rows exactly
        np.testing.assert_array_equal(a[-16:], b[:16])
    left, right = man["strip_edges_px"]
    assert frames[0][:, : left - 3].mean() < 20 and frames[0][:, left + 3 : right - 3].mean() > 40
    truth = json.loads((tmp_path / "defects_truth.json").read_text())
    texture = coil_plan(spec)[0]
    inside_any = [np.zeros((192, 384), bool) for _ in frames]
    for d in truth["defects"]:
        x0, y0, x1, y1 = d["coil_bbox_px"]
        assert left <= x0 < x1 <= right
        assert d["along_m"] == pytest.approx((y0 + y1) / 2 * man["mm_per_px_along"] / 1000)
        assert d["across_mm"] == pytest.approx(((x0 + x1) / 2 - left) * man["mm_per_px_across"])
        assert d["frame"] == d["frames"][0]["frame"] and d["bbox"] == d["frames"][0]["bbox"]
        for f in d["frames"]:
            bx0, by0, bx1, by1 = f["bbox"]
            assert 0 <= bx0 < bx1 <= 384 and 0 <= by0 < by1 <= 192
            assert by0 + f["frame"] * spec.step >= y0 and by1 + f["frame"] * spec.step <= y1
            inside_any[f["frame"]][by0:by1, bx0:bx1] = True
    for k, frame in enumerate(frames):  # every pixel that differs from the clean strip is a true defect
        clean = finish(texture.render(k * spec.step, k * spec.step + 192))
        assert not ((frame != clean) & ~inside_any[k]).any()
    assert any(len(d["frames"]) == 2 for d in truth["defects"]), "no defect straddles two frames"
    (group,) = truth["periodic"]
    marks = [d for d in truth["defects"] if d["periodic_group"] == group["group"]]
    assert len(marks) == group["count"] >= 3
    assert group["pitch_m"] == pytest.approx(np.pi * 0.08)
    starts = np.array([d["coil_bbox_px"][1] for d in marks])
    assert np.abs(np.diff(starts) - group["pitch_px"]).max() <= 1.0
    assert len({d["across_mm"] for d in marks}) == 1 and len({d["area_px"] for d in marks}) == 1


# -- determinism and bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["severstal", "neu-cls", "neu-det", "coil"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, kind):
    def write(out, seed, workers):
        if kind == "severstal":
            write_severstal(out, 8, seed, workers=workers)
        elif kind == "neu-cls":
            write_neu_cls(out, 8, seed, workers=workers)
        elif kind == "neu-det":
            write_neu_det(out, 8, seed, workers=workers)
        else:
            write_coil(out, 8, seed, workers=workers, **SMALL_COIL)
    write(tmp_path / "a", 7, 1)
    write(tmp_path / "b", 7, 2)  # a process pool must not change a byte
    write(tmp_path / "c", 8, 1)
    a, b, c = (hashes(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() != c.keys() or all(a[k] != c[k] for k in a if k.endswith((".jpg", ".bmp", ".png")))


def test_image_does_not_depend_on_set_size(tmp_path):
    write_severstal(tmp_path / "small", 2, 9, workers=1)
    write_severstal(tmp_path / "large", 5, 9, workers=1)
    small, large = hashes(tmp_path / "small"), hashes(tmp_path / "large")
    assert all(large[k] == v for k, v in small.items() if k.startswith("train_images"))


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(SteelscanError, match="positive"):
        write_severstal(tmp_path / "x", 0, 0)
    with pytest.raises(SteelscanError, match="seed"):
        write_neu_cls(tmp_path / "x", 5, -1)
    with pytest.raises(SteelscanError, match="classes"):
        write_severstal(tmp_path / "x", 5, 0, classes=[5])
    with pytest.raises(SteelscanError, match="strip"):
        write_coil(tmp_path / "x", 3, 0, frame_width=256)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    with pytest.raises(SteelscanError, match="is a file"):
        write_neu_det(a_file, 3, 0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(SteelscanError, match="not empty"):
        write_neu_cls(busy, 6, 0)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    write_neu_cls(busy, 6, 0, overwrite=True, workers=1)
    write_neu_cls(busy, 6, 0, classes=["Cr"], overwrite=True, workers=1)  # stale outputs go, others stay
    assert sorted(p.name for p in busy.iterdir()) == [f"Cr_{k}.bmp" for k in range(1, 7)] + ["notes.txt"]
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path, capsys):
    from steelscan.cli import main

    assert main(["synth", "neu-cls", str(tmp_path / "ok"), "--n", "6", "--seed", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "neu-cls: 6 images" in out and "crazing: 1" in out
    assert len(list((tmp_path / "ok").iterdir())) == 6
    assert main(["synth", "severstal", str(tmp_path / "bad"), "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steelscan: error:") and "Traceback" not in err
    assert main(["synth", "neu-cls", str(tmp_path / "ok"), "--n", "6"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_coil_is_also_a_kaggle_training_folder(tmp_path):
    """train.csv + train_images/ of a coil decode to masks that cover exactly the truth's defects."""
    import json

    from steelscan.data.severstal import SeverstalDataset
    from steelscan.data.synthetic import write_coil

    write_coil(tmp_path / "c", n_frames=12, seed=3, workers=1, frame_width=256, frame_height=128, frame_overlap=8,
               strip_width_mm=300)
    ds = SeverstalDataset.from_root(tmp_path / "c", shape=(128, 256))
    truth = json.loads((tmp_path / "c" / "defects_truth.json").read_text())
    assert len(ds) == 12 and truth["defects"]
    boxes = np.zeros((12, 4, 128, 256), bool)  # the union of truth boxes per frame and class
    for d in truth["defects"]:
        for f in d["frames"]:
            x0, y0, x1, y1 = f["bbox"]
            assert ds[f["frame"]]["mask"][d["class"] - 1, y0:y1, x0:x1].any()
            boxes[f["frame"], d["class"] - 1, y0:y1, x0:x1] = True
    masks = np.stack([ds[k]["mask"] for k in range(12)]).astype(bool)
    assert masks.any() and not (masks & ~boxes).any()  # no mask pixel outside the truth's boxes
