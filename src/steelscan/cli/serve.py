"""`steelscan serve [--host H] [--port P] [--model ARTIFACT] [--db URL] [--token-file F]`.

Requests must name the bound address in Host (and localhost / 127.0.0.1 / ::1; --allowed-host adds names); a
wildcard bind (0.0.0.0, needs a token) takes any Host unless --allowed-host names some. For a public bind, put a
reverse proxy (TLS, rate limits, connection limits) in front: the header timeout and body limits here are a floor."""

from __future__ import annotations

from pathlib import Path

import typer

from steelscan.cli._common import setup_logging


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; other than loopback needs a token"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    model: str = typer.Option("severstal", "--model", "-m",
                              help="The station's segmenter or detector: ONNX artifact, run folder, .pt or built-in "
                                   "name (a segmenter checkpoint is exported once)"),
    db: str = typer.Option(None, "--db", help="Records store: sqlite:///PATH, a file path or postgresql://... "
                           "(default: DATA_DIR/records.db)"),
    data_dir: Path = typer.Option(Path("out/service"), "--data-dir", help="Frames, reports and the default store"),
    token_file: Path = typer.Option(None, "--token-file", help="Bearer token for /v1 (else $STEELSCAN_TOKEN)"),
    manifest: Path = typer.Option(None, "--manifest", help="Default geometry of new coils (a coil manifest YAML)"),
    rules: Path = typer.Option(None, "--rules", help="Grading rules YAML (default: the shipped rules for the "
                               "model's classes)"),
    classifier: str = typer.Option(None, "--classifier", help="The model of POST /v1/classify (default neu-cls); "
                                   "with a detector --model, also the station's defect classifier naming its finds"),
    gate_model: str = typer.Option(None, "--gate", help="Defect/no-defect classifier skipping clean tiles before "
                                   "a detector"),
    tile_overlap: int = typer.Option(None, "--tile-overlap", help="Least overlap of detector tiles in px (default 0: "
                                     "tiles spread evenly over the frame)"),
    detector: str = typer.Option("neu-det", "--detector", help="Model for POST /v1/detect"),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001),
    max_pixels: int = typer.Option(16 * 2**20, "--max-pixels", min=1, help="Largest image, width x height"),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds before a request is abandoned (408)"),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1,
                                         help="Seconds a connection has to send its request headers"),
    max_frame_gap: int = typer.Option(1000, "--max-frame-gap", min=1,
                                      help="How far past a coil's highest committed frame a new frame may be"),
    allowed_host: list[str] = typer.Option(None, "--allowed-host", help="Another name clients reach this server "
                                           "by (the Host header); repeat for more"),
    metrics_public: bool = typer.Option(False, "--metrics-public", help="Serve /metrics without the token"),
    batch_frames: int = typer.Option(4, "--batch-frames", min=1, help="Most frames per inference call"),
    threads: int = typer.Option(2, "--threads", min=1, help="Inference threads"),
) -> None:
    """Serve the inspection station: a web API (/docs, /openapi.json) and a live dashboard at /.

    Frames posted to /v1/frames are inspected, recorded and graded like `steelscan inspect` does.
    """
    import uvicorn

    from steelscan.config import read_yaml_mapping
    from steelscan.grading import load_rules
    from steelscan.inspection.chain import model_meta
    from steelscan.service.app import create_app
    from steelscan.service.limits import header_timeout_protocol
    from steelscan.service.settings import DEFAULT_GEOMETRY, Limits, Settings, check_exposure, read_token

    setup_logging()
    token = read_token(token_file)
    check_exposure(host, token)  # before any model loads: a refusal should be instant
    if rules is not None:
        load_rules(rules)  # a bad rules file fails here, before the models load
    geometry = dict(DEFAULT_GEOMETRY)
    if manifest is not None:
        m = read_yaml_mapping(manifest, "manifest")
        geometry.update({k: m[k] for k in geometry if k in m})
        geometry.update({k: m[f"{k}_px"] for k in ("frame_width", "frame_height") if f"{k}_px" in m})
    data_dir.mkdir(parents=True, exist_ok=True)
    detector_station = model_meta(model).task == "detection"
    settings = Settings(
        artifact=model, db=db or str(data_dir / "records.db"), data_dir=data_dir,
        rules=rules, token=token, geometry=geometry, classifier=classifier or "neu-cls", detector=detector,
        threads=threads, max_batch_frames=batch_frames, station_classifier=classifier if detector_station else None,
        gate_model=gate_model,
        tile_overlap=tile_overlap, host=host, allowed_hosts=tuple(allowed_host or ()), metrics_public=metrics_public,
        limits=Limits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, request_timeout_s=timeout,
                      header_timeout_s=header_timeout, max_frame_gap=max_frame_gap),
    )
    app = create_app(settings)
    for w in app.state.station.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"steelscan serve: http://{host}:{port}/ (dashboard), /docs (API); records {settings.db}; "
               f"auth {'on' if token else 'off (loopback)'}")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                http=header_timeout_protocol(header_timeout))
