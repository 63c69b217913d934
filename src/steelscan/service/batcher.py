"""One inference thread that batches the frames waiting for it.

Requests hand frames in with `submit` and wait on a `concurrent.futures.Future`; the thread takes every
frame already queued (up to `max_frames`), runs them through `work` together, and resolves each future.
One thread, because ONNX Runtime already uses every core for one call: two calls at once only thrash.
Batching helps when frames arrive together (several clients), and costs nothing when they don't: the
thread never waits to fill a batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)
_STOP = object()


class Batcher:
    def __init__(self, work: Callable[[Sequence[Any]], Sequence[Any]], max_frames: int = 4, name: str = "inference"):
        self.work, self.max_frames = work, max(1, int(max_frames))
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        fut: Future = Future()
        self._q.put((item, fut))
        return fut

    def pending(self) -> int:
        return self._q.qsize()

    def close(self) -> None:
        self._q.put(_STOP)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_frames:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._q.put(_STOP)
                    break
                batch.append(nxt)
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self.work([item for item, _ in live])
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear of the failure
                log.exception("inference batch of %d failed", len(live))
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            for (_, fut), res in zip(live, results):
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
