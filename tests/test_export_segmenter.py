"""Segmenter export: ONNX Runtime against PyTorch on fresh random inputs, the gate/decoder cut, the artifact
checks, and tiling round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.core.errors import SteelscanError
from steelscan.export import export_segmenter
from steelscan.inspection.tiles import cut_tiles, stitch
from steelscan.models.segmenter import build_segmenter, segmenter_normalise
from steelscan.postprocess import PostProcess
from steelscan.runtime import SegmenterRuntime, read_artifact

TILE = (64, 128)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_segmenter("unet_efficientnet_lite0").eval()
    mean, std = segmenter_normalise("unet_efficientnet_lite0")
    meta = {"task": "segmentation", "model": "unet_efficientnet_lite0", "model_kwargs": {"in_chans": 1},
            "class_names": ["1", "2", "3", "4"], "mean": mean, "std": std, "postprocess": PostProcess().as_dict()}
    path = export_segmenter(model, meta, tmp_path_factory.mktemp("seg") / "seg.onnx", TILE, gate_threshold=0.5)
    return model, path


def test_onnx_matches_pytorch_on_fresh_random_tiles(exported):
    model, path = exported
    seed = int(np.random.SeedSequence().entropy % 2**32)  # fresh data each run; the seed is in the message
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (3, *TILE), dtype=np.uint8)
    rt = SegmenterRuntime(path, threads=1)
    probs, presence, decoded = rt.predict(tiles, gate=False)
    with torch.no_grad():
        m, p = model(torch.from_numpy(rt.normalise(tiles)))
    assert decoded.all()
    assert np.abs(probs - m.sigmoid().numpy()).max() < 1e-4, f"seed {seed}"
    assert np.abs(presence - p.sigmoid().numpy()).max() < 1e-4, f"seed {seed}"
    gated, gp, keep = rt.predict(tiles, gate=True)
    assert np.allclose(gp, presence, atol=1e-5)
    assert np.array_equal(keep, presence.max(1) >= 0.5)
    assert np.allclose(gated[keep], probs[keep], atol=1e-5) and not gated[~keep].any()


def test_artifact_carries_its_preprocessing_and_refuses_strangers(exported, tmp_path):
    _, path = exported
    _, meta = read_artifact(path, "segmentation")
    assert meta["tile"] == list(TILE) and meta["class_names"] == ["1", "2", "3", "4"] and "postprocess" in meta
    with pytest.raises(SteelscanError, match="expected a detection artifact"):
        read_artifact(path, "detection")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(SteelscanError, match="is not an ONNX model"):
        read_artifact(tmp_path / "junk.onnx", "segmentation")
    with pytest.raises(SteelscanError, match="artifact not found"):
        read_artifact(tmp_path / "none.onnx", "segmentation")
    import onnx

    from steelscan.export import _attach_meta

    proto = onnx.load(str(path))
    onnx.save(proto, str(tmp_path / "old.onnx"))
    _attach_meta(tmp_path / "old.onnx", {**meta, "artifact_version": 0})
    with pytest.raises(SteelscanError, match="artifact version 0"):
        read_artifact(tmp_path / "old.onnx", "segmentation")


def test_export_refuses_bad_tiles(exported):
    model, path = exported
    with pytest.raises(SteelscanError, match="multiples of 32"):
        export_segmenter(model, {"model_kwargs": {}}, path.parent / "x.onnx", (50, 128))


@pytest.mark.parametrize("shape", [(256, 1600), (200, 300), (64, 128)])
def test_tiles_round_trip(shape):
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    tiles, grid = cut_tiles(frame, TILE)
    assert tiles.shape[1:] == TILE and len(tiles) == grid.rows * grid.cols
    back = stitch(tiles[:, None].astype(np.float32), grid)
    assert back.shape == (1, *shape) and np.array_equal(back[0], frame)


def test_whole_frame_tile_only_where_the_model_takes_the_frame():
    from steelscan.inspection.tiles import whole_frame_tile

    assert whole_frame_tile((256, 1600)) == (256, 1600)  # Severstal frames: 8 x 50 strides of 32
    assert whole_frame_tile((250, 1600)) is None and whole_frame_tile((256, 1601)) is None
    assert whole_frame_tile((4096, 4096)) is None  # too large for one tile: the training crop is used
