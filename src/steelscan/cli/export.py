"""`steelscan export RUN [--format onnx|openvino] [--out PATH] [--tile HxW] [--gate-threshold T]`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from steelscan.core.errors import ConfigError


def parse_tile(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.strip().isdigit() or not w.strip().isdigit():
        raise ConfigError(f"--tile expects HxW in pixels, e.g. 256x512, got {text!r}")
    return int(h), int(w)


def command(
    model: str = typer.Argument(..., help="Run folder, checkpoint or built-in name (e.g. severstal)"),
    fmt: str = typer.Option("onnx", "--format", help="onnx, or openvino (needs the optional openvino package)"),
    out: Path = typer.Option(None, "--out", help="Artifact path (default: MODEL.onnx, or MODEL.xml for openvino, in the current folder)"),
    tile: str = typer.Option(None, "--tile", help="Segmenters: tile HxW the frames are cut to (default: the "
                             "training crop)"),
    gate_threshold: float = typer.Option(0.3, "--gate-threshold", min=0.0, max=1.0,
                                         help="Segmenters: decode a tile when a class's presence >= this"),
) -> None:
    """Export one ONNX artifact carrying its preprocessing, class names and tuned post-processing (its ModelMeta).

    Classifiers, detectors (not those with dcn) and segmenters (cut into tiles, gate and decoder).

    Inference (`steelscan inspect`, the service) reads only the artifact, never a training config.
    """
    from steelscan.deploy.export import check_format, export_artifact

    check_format(fmt)  # an unknown format, or openvino without its package, fails before anything is written
    tile_hw = parse_tile(tile) if tile else None
    out = out or Path(f"{Path(model).name.removesuffix('.pt')}{'.xml' if fmt == 'openvino' else '.onnx'}")
    path = export_artifact(model, out, fmt, tile_hw, gate_threshold)
    Console().print(f"artifact: {path}")
