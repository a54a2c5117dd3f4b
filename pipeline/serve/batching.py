"""Batching: requests that arrive within a few milliseconds of each other start as one padded
batch, and requests that arrive while it generates join it at the next step (continuous
batching), instead of one after another under a lock. One thread owns the model; request
handlers only queue rows and read their progress."""

from __future__ import annotations

import queue
import threading
import time

from .engine import Engine, Row

_STOP = object()


class Scheduler:
    def __init__(self, engine: Engine, max_batch: int = 16, wait_ms: float = 5.0, continuous: bool = True):
        self.engine = engine
        self.continuous = continuous
        """Requests that arrive while a batch generates join it at the next step (else they wait
        for the next batch)."""
        self.max_batch = max(1, max_batch)
        """Rows generated together at most (a request's ``n`` rows are never split)."""
        self.wait = wait_ms / 1000
        """How long the first request of a batch waits for others to join it."""
        self.batches = 0
        self.rows = 0
        self._queue: queue.Queue = queue.Queue()
        self._held = None  # a request that did not fit the last batch: first in the next
        self._thread = threading.Thread(target=self._loop, name=f"sprout-serve-{engine.path.name}", daemon=True)
        self._thread.start()

    def submit(self, rows: list[Row]) -> None:
        """Queue one request's rows (generated in the same batch)."""
        self._queue.put(rows)

    def close(self) -> None:
        """Finish what is queued, then stop the thread (and let the model go)."""
        self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _collect(self) -> tuple[list[list[Row]], bool]:
        """The next batch's requests, and whether the queue was closed."""
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        if first is _STOP:
            return [], True
        batch, size = [first], len(first)
        deadline = time.monotonic() + self.wait
        while size < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP or size + len(item) > self.max_batch:
                self._held = item
                break
            batch.append(item)
            size += len(item)
        return batch, False

    def _admit(self, live: int, rows: list[Row]) -> list[Row]:
        """Requests queued while a batch generates, joined to it (never blocking, never past
        ``max_batch``; ``rows`` grows so that a failure reaches them too)."""
        out: list[Row] = []
        while True:
            item = self._held
            if item is None:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._held = None
            if item is _STOP or live + len(out) + len(item) > self.max_batch:
                self._held = item
                break
            out += item
        rows += out
        return out

    def _loop(self) -> None:
        while True:
            requests, closed = self._collect()
            if closed:
                break
            rows = [r for req in requests for r in req]
            try:
                self.engine.generate(rows, admit=lambda live: self._admit(live, rows) if self.continuous else [])
            except Exception as e:  # the model failed (out of memory, say): every row says so
                for r in rows:
                    if r.finish_reason is None:
                        r.error, r.finish_reason = f"{type(e).__name__}: {e}", "error"
                        if r.notify is not None:
                            try:
                                r.notify(r)
                            except Exception:  # noqa: BLE001  the thread must outlive one bad request
                                pass
            self.batches += 1
            self.rows += len(rows)
        self.engine = None  # the model is freed with the last reference
