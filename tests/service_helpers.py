"""Shared by the service tests: a tiny untrained segmenter artifact that still finds "defects", a synthetic
coil, and an app on a temporary store."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

FRAME_W, FRAME_H = 256, 128


def tiny_artifact(folder: Path) -> Path:
    import torch

    from steelscan.core.meta import ModelMeta
    from steelscan.deploy.export import export_segmenter
    from steelscan.models.segmenter import build_segmenter, segmenter_normalise
    from steelscan.postprocess import PostProcess

    torch.manual_seed(0)
    model = build_segmenter("unet_efficientnet_lite0").eval()
    mean, std = segmenter_normalise("unet_efficientnet_lite0")
    # thresholds near the untrained head's prior (P = 0.01): it then finds "defects", exercising every step
    pp = PostProcess(threshold=(0.0101,) * 4, min_area=(20,) * 4)
    meta = ModelMeta(task="segmentation", model="unet_efficientnet_lite0", model_kwargs={"in_chans": 1},
                     class_names=("1", "2", "3", "4"), input_size=(64, 128), mean=mean, std=std,
                     postprocess=pp.as_dict())
    return export_segmenter(model, meta, folder / "seg.onnx", (64, 128), gate_threshold=0.0)


def coil_frames(folder: Path, n: int = 6, seed: int = 4) -> list[Path]:
    from steelscan.data.synthetic import write_coil

    write_coil(folder, n_frames=n, seed=seed, workers=1, frame_width=FRAME_W, frame_height=FRAME_H, frame_overlap=8,
               strip_width_mm=300)
    return sorted((folder / "frames").glob("*.png"))


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of a uint8 or uint16 (16-bit PNG) array."""
    import cv2

    return cv2.imencode(".png", img)[1].tobytes()


COIL_BODY = {"mm_per_px_across": 1.5, "mm_per_px_along": 1.0, "strip_width_mm": 300.0, "frame_overlap_px": 8,
             "frame_width": FRAME_W, "frame_height": FRAME_H}


@contextmanager
def served(app, http=None):
    """The app on a real uvicorn server on a free loopback port, in a thread; yields its base URL.
    (TestClient waits for the whole ASGI call, so timings and the browser need a real server.)
    `http`: uvicorn's HTTP protocol class (default: uvicorn's own)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http or "auto"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > 30:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
