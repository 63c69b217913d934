"""Segmenter export: ONNX Runtime against PyTorch on fresh random inputs, the gate/decoder cut, the artifact
checks, and tiling round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.core.errors import SteelscanError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.artifact import read_artifact
from steelscan.deploy.export import export_segmenter
from steelscan.deploy.predictors import load_predictor
from steelscan.deploy.tiles import cut_tiles, stitch
from steelscan.models.segmenter import build_segmenter, segmenter_normalise
from steelscan.postprocess import PostProcess

TILE = (64, 128)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_segmenter("unet_efficientnet_lite0").eval()
    mean, std = segmenter_normalise("unet_efficientnet_lite0")
    meta = ModelMeta(task="segmentation", model="unet_efficientnet_lite0", model_kwargs={"in_chans": 1},
                     class_names=("1", "2", "3", "4"), input_size=(256, 512), mean=mean, std=std,
                     postprocess=PostProcess().as_dict())
    path = export_segmenter(model, meta, tmp_path_factory.mktemp("seg") / "seg.onnx", TILE, gate_threshold=0.5)
    return model, path


def test_onnx_matches_pytorch_on_fresh_random_tiles(exported):
    model, path = exported
    seed = int(np.random.SeedSequence().entropy % 2**32)  # fresh data each run; the seed is in the message
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (3, *TILE), dtype=np.uint8)
    predictor = load_predictor(path, threads=1)
    rt, x = predictor.backend, predictor.pre_process(list(tiles))
    probs, presence, decoded = rt.predict(x, gate=False)
    with torch.no_grad():
        m, p = model(torch.from_numpy(x))
    assert decoded.all()
    assert np.abs(probs - m.sigmoid().numpy()).max() < 1e-4, f"seed {seed}"
    assert np.abs(presence - p.sigmoid().numpy()).max() < 1e-4, f"seed {seed}"
    gated, gp, keep = rt.predict(x, gate=True)
    assert np.allclose(gp, presence, atol=1e-5)
    assert np.array_equal(keep, presence.max(1) >= 0.5)
    assert np.allclose(gated[keep], probs[keep], atol=1e-5) and not gated[~keep].any()


def test_artifact_carries_its_preprocessing_and_refuses_strangers(exported, tmp_path):
    _, path = exported
    _, meta = read_artifact(path, "segmentation")
    assert meta.artifact.tile == TILE and meta.class_names == ("1", "2", "3", "4") and meta.postprocess
    assert meta.artifact.tile_gate_threshold == 0.5 and meta.artifact.feature_outputs[0] == "feat1"
    with pytest.raises(SteelscanError, match="expected a detection artifact"):
        read_artifact(path, "detection")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(SteelscanError, match="is not an ONNX model"):
        read_artifact(tmp_path / "junk.onnx", "segmentation")
    with pytest.raises(SteelscanError, match="artifact not found"):
        read_artifact(tmp_path / "none.onnx", "segmentation")
    import onnx

    import json

    from steelscan.deploy.artifact import META_KEY

    def with_meta(raw: dict, name: str):
        proto = onnx.load(str(path))
        for p in proto.metadata_props:
            if p.key == META_KEY:
                p.value = json.dumps(raw)
        onnx.save(proto, str(tmp_path / name))
        return tmp_path / name

    new = meta.to_dict()
    for version in (0, 3):
        bad = with_meta({**new, "artifact": {**new["artifact"], "version": version}}, f"v{version}.onnx")
        with pytest.raises(SteelscanError, match=f"artifact version {version}; this steelscan reads versions 1..2"):
            read_artifact(bad, "segmentation")
    # version 1: the untyped dict of the first exports, migrated on read
    v1 = {"task": "segmentation", "model": "unet_efficientnet_lite0", "model_kwargs": {"in_chans": 1},
          "class_names": ["1", "2", "3", "4"], "mean": meta.mean, "std": meta.std, "postprocess": meta.postprocess,
          "format": "steelscan-onnx", "artifact_version": 1, "tile": list(TILE), "in_chans": 1,
          "tile_gate_threshold": 0.5, "feature_outputs": list(meta.artifact.feature_outputs)}
    _, old = read_artifact(with_meta(v1, "v1.onnx"), "segmentation")
    assert old.artifact.tile == TILE and old.artifact.feature_outputs == meta.artifact.feature_outputs
    assert old.class_names == meta.class_names and old.postprocess == meta.postprocess
    with pytest.raises(SteelscanError, match="artifact version 0"):
        read_artifact(with_meta({**v1, "artifact_version": 0}, "v0.onnx"), "segmentation")


def test_export_refuses_bad_tiles(exported):
    model, path = exported
    with pytest.raises(SteelscanError, match="multiples of 32"):
        export_segmenter(model, read_artifact(path)[1], path.parent / "x.onnx", (50, 128))


@pytest.mark.parametrize("shape", [(256, 1600), (200, 300), (64, 128)])
def test_tiles_round_trip(shape):
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    tiles, grid = cut_tiles(frame, TILE)
    assert tiles.shape[1:] == TILE and len(tiles) == grid.rows * grid.cols
    back = stitch(tiles[:, None].astype(np.float32), grid)
    assert back.shape == (1, *shape) and np.array_equal(back[0], frame)


def test_whole_frame_tile_only_where_the_model_takes_the_frame():
    from steelscan.deploy.tiles import whole_frame_tile

    assert whole_frame_tile((256, 1600)) == (256, 1600)  # Severstal frames: 8 x 50 strides of 32
    assert whole_frame_tile((250, 1600)) is None and whole_frame_tile((256, 1601)) is None
    assert whole_frame_tile((4096, 4096)) is None  # too large for one tile: the training crop is used
