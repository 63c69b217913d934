"""The OpenVINO side of an artifact: a segmenter's gate/decoder cut as in `SegmenterRuntime`, or a classifier
(`OpenVinoBackend`), compiled by OpenVINO for the CPU instead of run by ONNX Runtime.

Optional: needs the `openvino` extra (`pip install steelscan[openvino]`); nothing imports this module unless
an `.xml` artifact (or `backend="openvino"`) is asked for. It reads either an OpenVINO IR (`steelscan export
--format openvino`: the meta sits in the model's rt_info under steelscan/meta) or an `.onnx` artifact
(OpenVINO reads ONNX itself), so one exported file can be timed on both runtimes.

The predictor does the cutting, normalising, stitching and post-processing, as for ONNX Runtime; this class
sees normalised tiles only and returns exactly what `SegmenterRuntime.predict` returns.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from steelscan.core.errors import ConfigError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.artifact import META_KEY, meta_of

RT_INFO_KEY = ["steelscan", "meta"]  # where export_artifact writes the meta in an IR
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("f32", "bf16", "f16")


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def read_openvino_artifact(path: str | Path) -> tuple[Any, ModelMeta]:
    """(ov.Model, ModelMeta) of an IR `.xml` or an `.onnx` artifact, with the same meta checks as ONNX ones."""
    import openvino as ov

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model artifact not found: expected an .xml (or .onnx) file from `steelscan export`, "
                             f"got {path}")
    if path.suffix.lower() == ".onnx":  # the ONNX meta is in metadata_props, which OpenVINO does not keep
        from steelscan.deploy.artifact import read_artifact

        _, meta = read_artifact(path)
        return ov.Core().read_model(str(path)), meta
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as exc:  # a missing .bin, a truncated or foreign .xml
        raise ModelFileError(f"{path} is not an OpenVINO model: {(str(exc).splitlines() or [''])[0][:200]}") from None
    if not model.has_rt_info(RT_INFO_KEY):
        raise ModelFileError(f"{path} is not a steelscan artifact: its rt_info has no {'/'.join(RT_INFO_KEY)} "
                             "(export it with `steelscan export RUN --format openvino`)")
    text = model.get_rt_info(RT_INFO_KEY).astype(str)
    # meta_of reads an ONNX proto's metadata_props; the same entry shape keeps one set of checks and migrations
    proto_like = SimpleNamespace(metadata_props=[SimpleNamespace(key=META_KEY, value=text)])
    return model, meta_of(proto_like, str(path))


def _result(model: Any, name: str) -> Any:
    for res in model.get_results():
        if name in res.input_value(0).get_names() or name in res.output(0).get_names():
            return res
    raise ModelFileError(f"the OpenVINO model has no output {name!r}: re-export it with `steelscan export`")


def split_gate_decoder(model: Any, feature_outputs: list[str]) -> tuple[Any, Any]:
    """(gate: image -> presence + features, decoder: features -> masks) of the full segmenter graph.

    The gate shares the model's nodes. The decoder is cut from a clone: every consumer of a feature tensor
    (decoder and deeper encoder stages alike) is rewired to a new Parameter of that name, so `masks` then
    depends on those Parameters and constants only.
    """
    import openvino as ov

    gate = ov.Model([_result(model, "presence"), *[_result(model, n) for n in feature_outputs]],
                    model.get_parameters(), "gate")
    clone = model.clone()
    params = []
    for name in feature_outputs:
        src = _result(clone, name).input_value(0)
        param = ov.opset13.parameter(src.get_partial_shape(), src.get_element_type(), name=name)
        param.output(0).set_names({name})
        for target in list(src.get_target_inputs()):
            target.replace_source_output(param.output(0))
        params.append(param)
    try:
        decoder = ov.Model([_result(clone, "masks")], params, "decoder")
    except RuntimeError as exc:  # the decoder still reaches the image (a shape taken from it): no cut possible
        raise ModelFileError(f"cannot cut the decoder out of the OpenVINO model: {str(exc).splitlines()[0][:200]}")
    return gate, decoder


def compile_config(threads: int, hint: str = "LATENCY", streams: int | None = None, precision: str = "f32") -> dict:
    """The CPU plugin's config; bad values are ConfigErrors."""
    if hint.upper() not in HINTS:
        raise ConfigError(f"OpenVINO hint: expected one of {', '.join(HINTS)}, got {hint!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"OpenVINO precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_NUM_THREADS": int(threads),
                              "INFERENCE_PRECISION_HINT": precision}
    if streams is not None:
        config["NUM_STREAMS"] = int(streams)
    return config


class OpenVinoBackend:
    """A one-input artifact (a classifier) compiled by OpenVINO: float32 arrays in, its outputs out, like
    `OnnxBackend`. Options as `OpenVinoSegmenterRuntime`'s (f32 unless bf16 is asked for)."""

    kind = "openvino"

    def __init__(self, model: Any, threads: int = 2, **options: Any) -> None:
        import openvino as ov

        self.request = ov.Core().compile_model(model, "CPU", compile_config(threads, **options)).create_infer_request()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [out[port].copy() for port in self.request.model_outputs]  # views of reused buffers: copy


class OpenVinoSegmenterRuntime:
    """A segmenter artifact compiled by OpenVINO (CPU): `predict` as `SegmenterRuntime.predict`.

    threads: INFERENCE_NUM_THREADS; hint: PERFORMANCE_HINT (LATENCY: one stream, each call as fast as it can;
    THROUGHPUT: parallel streams, which pay only with requests in flight at once, not with our one
    synchronous call); streams: NUM_STREAMS (None: the hint's choice); precision: INFERENCE_PRECISION_HINT,
    f32 by default: the CPU plugin's own default is bf16 on CPUs with AMX/AVX512-bf16 (this machine's Xeon),
    which moved the tiny test segmenter's probabilities by 1e-2 against ONNX Runtime (f32: 2e-6); bf16 is
    opt-in, with its Dice checked (benchmarks/throughput.py --variants openvino-frame-bf16).
    """

    kind = "openvino"

    def __init__(self, model: Any, meta: ModelMeta, threads: int = 2, hint: str = "LATENCY",
                 streams: int | None = None, precision: str = "f32") -> None:
        import openvino as ov

        art = meta.artifact
        if art is None or art.tile is None or not art.feature_outputs:
            raise ModelFileError("a segmenter artifact needs its tile and feature outputs (artifact.tile, "
                                 "artifact.feature_outputs): re-export it with `steelscan export`")
        config = compile_config(threads, hint, streams, precision)
        self.meta = meta
        self.tile: tuple[int, int] = tuple(art.tile)
        self.gate_threshold = float(art.tile_gate_threshold if art.tile_gate_threshold is not None else 0.0)
        self.feature_outputs = list(art.feature_outputs)
        self.config = config
        core = ov.Core()
        gate, decoder = split_gate_decoder(model, self.feature_outputs)
        self.full = core.compile_model(model, "CPU", config).create_infer_request()
        self.gate = core.compile_model(gate, "CPU", config).create_infer_request()
        self.decoder = core.compile_model(decoder, "CPU", config).create_infer_request()
        self._full_out = [_port(self.full, n) for n in ("masks", "presence")]
        self._gate_out = [_port(self.gate, n) for n in ("presence", *self.feature_outputs)]

    def predict(self, x: np.ndarray, gate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised tiles float32 [N, C, h, w] -> (probabilities float32 [N, K, h, w], presence [N, K],
        decoded bool [N])."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not gate:
            out = self.full.infer({0: x})
            # infer() returns views of the request's buffers, overwritten by the next call: copy
            return out[self._full_out[0]].copy(), out[self._full_out[1]].copy(), np.ones(len(x), bool)
        out = self.gate.infer({0: x})
        presence = out[self._gate_out[0]].copy()
        keep = presence.max(1) >= self.gate_threshold
        masks = np.zeros((len(x), self.meta.num_classes, *x.shape[2:]), np.float32)
        if keep.any():
            feats = {n: np.ascontiguousarray(out[p][keep]) for n, p in zip(self.feature_outputs, self._gate_out[1:])}
            masks[keep] = self.decoder.infer(feats)[0]
        return masks, presence, keep


def _port(request: Any, name: str) -> Any:
    for port in request.model_outputs:
        if name in port.get_names():
            return port
    raise ModelFileError(f"the compiled OpenVINO model has no output {name!r}")
