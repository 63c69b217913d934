"""`steelscan export RUN [--format onnx|openvino] [--out PATH] [--tile HxW] [--gate-threshold T]`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def parse_tile(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.strip().isdigit() or not w.strip().isdigit():
        raise ValueError(f"--tile expects HxW in pixels, e.g. 256x512, got {text!r}")
    return int(h), int(w)


def export_artifact(model: str, out: Path, tile: tuple[int, int] | None = None, gate_threshold: float = 0.3) -> Path:
    """A checkpoint (run folder, .pt or built-in name) -> one ONNX artifact at `out`."""
    from steelscan.export import export_onnx, export_segmenter
    from steelscan.runs import load_checkpoint

    net, meta = load_checkpoint(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    task = meta.get("task")
    if task == "segmentation":
        return export_segmenter(net, meta, out, tile or tuple(meta.get("crop", (256, 512))), gate_threshold)
    if task == "classification":
        return export_onnx(net, meta, out)
    raise ValueError(f"export supports segmentation and classification models, got a {task} model from {model}")


def command(
    model: str = typer.Argument(..., help="Run folder, checkpoint or built-in name (e.g. severstal)"),
    fmt: str = typer.Option("onnx", "--format", help="onnx, or openvino (needs the optional openvino package)"),
    out: Path = typer.Option(None, "--out", help="Artifact path (default: MODEL.onnx in the current folder)"),
    tile: str = typer.Option(None, "--tile", help="Segmenters: tile HxW the frames are cut to (default: the "
                             "training crop)"),
    gate_threshold: float = typer.Option(0.3, "--gate-threshold", min=0.0, max=1.0,
                                         help="Segmenters: decode a tile when a class's presence >= this"),
) -> None:
    """Export one ONNX artifact carrying its preprocessing, class names and tuned post-processing.

    Inference (`steelscan inspect`, the service) reads only the artifact, never a training config.
    """
    if fmt not in ("onnx", "openvino"):
        raise ValueError(f"--format expects onnx or openvino, got {fmt!r}")
    out = out or Path(f"{Path(model).name.removesuffix('.pt')}.onnx")
    path = export_artifact(model, out, parse_tile(tile) if tile else None, gate_threshold)
    if fmt == "openvino":
        try:
            import openvino as ov
        except ImportError:
            raise ValueError("--format openvino needs the optional package openvino (pip install openvino); "
                             f"the ONNX artifact is at {path}") from None
        xml = path.with_suffix(".xml")
        ov.save_model(ov.convert_model(str(path)), str(xml))
        path = xml
    Console().print(f"artifact: {path}")
