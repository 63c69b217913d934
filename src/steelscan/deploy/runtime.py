"""The ONNX Runtime side of a segmenter artifact: cut at load into a gate and a decoder.

`SegmenterRuntime` is the back end of `SegmenterPredictor` for artifacts; it sees normalised tiles only (the
predictor cuts, normalises, stitches and post-processes). With `gate=True` the encoder and presence head run on
every tile, the decoder only on tiles whose highest presence probability reaches the artifact's
`tile_gate_threshold`; skipped tiles get zero probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steelscan.core.errors import ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.artifact import ort_session


class SegmenterRuntime:
    kind = "onnx"

    def __init__(self, proto: Any, meta: ModelMeta, threads: int = 2) -> None:
        import onnx.utils

        art = meta.artifact
        if art is None or art.tile is None or not art.feature_outputs:
            raise ModelFileError("a segmenter artifact needs its tile and feature outputs (artifact.tile, "
                                 "artifact.feature_outputs): re-export it with `steelscan export`")
        self.meta = meta
        self.tile: tuple[int, int] = tuple(art.tile)
        self.gate_threshold = float(art.tile_gate_threshold if art.tile_gate_threshold is not None else 0.0)
        self.feature_outputs = list(art.feature_outputs)
        self.full = ort_session(proto.SerializeToString(), threads)
        extractor = onnx.utils.Extractor(proto)
        gate = extractor.extract_model(["image"], ["presence", *self.feature_outputs])
        self.gate = ort_session(gate.SerializeToString(), threads)
        self.decoder = ort_session(extractor.extract_model(self.feature_outputs, ["masks"]).SerializeToString(), threads)
        self.decoder_inputs = [i.name for i in self.decoder.get_inputs()]

    def predict(self, x: np.ndarray, gate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised tiles float32 [N, C, h, w] -> (probabilities float32 [N, K, h, w], presence [N, K],
        decoded bool [N])."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not gate:
            masks, presence = self.full.run(["masks", "presence"], {"image": x})
            return masks, presence, np.ones(len(x), bool)
        out = self.gate.run(None, {"image": x})
        presence, feats = out[0], dict(zip(self.feature_outputs, out[1:]))
        keep = presence.max(1) >= self.gate_threshold
        masks = np.zeros((len(x), self.meta.num_classes, *x.shape[2:]), np.float32)
        if keep.any():
            masks[keep] = self.decoder.run(None, {n: feats[n][keep] for n in self.decoder_inputs})[0]
        return masks, presence, keep
