"""Prometheus metrics of one app (its own registry, so several apps in one process, as in tests, stay apart).

Label values are bounded: methods outside HTTP's own are "other", paths no route matched are "unmatched" (made-up
methods and paths once grew /metrics to 30 MB, and rendering it blocked every request)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics", "method_label"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("steelscan_requests", "HTTP requests by route and status", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("steelscan_request_seconds", "HTTP request latency by route", ["method", "route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("steelscan_errors", "Refused or failed requests by status", ["status"], registry=r)
        self.frames = Counter("steelscan_frames", "Frames inspected and committed", registry=r)
        self.frames_duplicate = Counter("steelscan_frames_duplicate", "Frames posted again (already stored)",
                                        registry=r)
        self.pieces = Counter("steelscan_defect_pieces", "Defect pieces found in committed frames", ["class_name"],
                              registry=r)
        self.inference = Histogram("steelscan_inference_seconds", "Model time per frame (its batch's share)",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("steelscan_batch_frames", "Frames per inference batch", buckets=(1, 2, 3, 4, 6, 8, 16),
                               registry=r)
        self.queue = Gauge("steelscan_inference_queue", "Frames waiting for inference", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
