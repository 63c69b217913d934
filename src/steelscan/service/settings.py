"""What `steelscan serve` is started with; everything the app reads comes from here, not from globals."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from steelscan.core.errors import SteelscanError

TOKEN_ENV = "STEELSCAN_TOKEN"
# Used for coils opened without geometry and no --manifest: Severstal-sized frames, 1 mm per pixel.
DEFAULT_GEOMETRY = {"mm_per_px_across": 1.0, "mm_per_px_along": 1.0, "strip_width_mm": 1600.0,
                    "frame_overlap_px": 0, "surface_side": "top", "strip_edges_px": None,
                    "frame_width": 1600, "frame_height": 256}


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 16 * 2**20  # checked from the image header, before decoding; also a coil's frame size
    request_timeout_s: float = 60.0
    header_timeout_s: float = 10.0  # a connection whose request headers are not complete by then is closed
    max_frame_gap: int = 1000  # a frame at most this far past the coil's highest committed frame


@dataclass(frozen=True)
class Settings:
    artifact: Path | str  # the station's model (segmenter or detector): ONNX artifact, run folder, .pt, built-in
    db: str
    data_dir: Path
    rules: Path | None = None
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    geometry: dict = field(default_factory=lambda: dict(DEFAULT_GEOMETRY))
    classifier: str = "neu-cls"  # built-in name, run folder or checkpoint for POST /v1/classify
    detector: str = "neu-det"  # the same for POST /v1/detect
    threads: int = 2
    max_batch_frames: int = 4
    gate: bool = True  # a segmenter's own tile gate
    station_classifier: str | None = None  # names a detector's defects from their crops
    gate_model: str | None = None  # a detector's defect/no-defect gate
    tile_overlap: int | None = None  # least overlap of detector tiles (default 0)
    # The bound address: requests must name it (or localhost on loopback, or an allowed host) in Host, against
    # DNS rebinding. None: an app built in-process without a bind (tests), no Host check. A wildcard bind
    # (0.0.0.0, ::) takes any Host unless allowed_hosts lists the names.
    host: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    metrics_public: bool = False  # /metrics without the token (when there is one)


WILDCARDS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_names(host: str | None, allowed: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The names a Host header may carry (lower case, no port), or None for any."""
    extra = {h.lower().strip("[]") for h in allowed}
    if host is None or (host.strip("[]") in WILDCARDS and not extra):
        return None
    # loopback names are always fine: a rebinding attack needs a name the attacker's DNS answers
    return frozenset(({host.lower().strip("[]")} | extra | set(LOOPBACK_NAMES)) - set(WILDCARDS))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and names that resolve only to them ('localhost')."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def read_token(token_file: Path | None) -> str | None:
    """The token from --token-file, else $STEELSCAN_TOKEN, else None; an empty or short one is refused."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise SteelscanError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        source = str(token_file)
    else:
        token, source = os.environ.get(TOKEN_ENV, "").strip(), f"${TOKEN_ENV}"
        if not token:
            return None
    if len(token) < 16:
        raise SteelscanError(f"the token from {source} has {len(token)} characters; expected at least 16")
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: a station's records are not for the whole network."""
    if token is None and not is_loopback(host):
        raise SteelscanError(f"refusing to serve on {host} without a token: give --token-file FILE or set "
                             f"{TOKEN_ENV} (loopback addresses such as 127.0.0.1 need none)")
