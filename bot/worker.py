"""The worker: claims stored deliveries under a lease, runs their handlers, retries what is
transient with backoff, and parks a delivery as failed after N attempts."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from .context import Context
from .github import GitHubError, Transient
from .router import Event, Router
from .store import Delivery

log = logging.getLogger(__name__)
MAX_BACKOFF = 600.0


@dataclass
class HandlerTimes:
    """A small latency histogram for /metrics."""

    buckets: tuple = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
    counts: list = field(default_factory=lambda: [0] * 11)
    total: float = 0.0
    n: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, seconds: float) -> None:
        with self.lock:
            self.total += seconds
            self.n += 1
            for i, b in enumerate(self.buckets):
                if seconds <= b:
                    self.counts[i] += 1
                    return
            self.counts[-1] += 1


def backoff(attempt: int) -> float:
    return min(MAX_BACKOFF, 2.0 ** attempt) * (0.75 + random.random() / 2)


def secondary_backoff(attempt: int) -> float:
    """GitHub's secondary rate limits without Retry-After: at least a minute, doubling."""
    return min(3600.0, 60.0 * 2.0 ** max(0, attempt - 1))


def retry_delay(transient: Transient, attempt: int) -> float:
    delay = max(transient.retry_after or 0.0, backoff(attempt))
    if transient.secondary and transient.retry_after is None:
        delay = max(delay, secondary_backoff(attempt))
    return delay


class Worker:
    def __init__(self, ctx: Context, router: Router, name: str | None = None, poll: float = 0.2):
        self.ctx = ctx
        self.router = router
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.poll = poll
        self.times = HandlerTimes()
        self.retries = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self._current: str | None = None  # the delivery being handled, for the heartbeat

    def run_once(self) -> bool:
        delivery = self.ctx.store.claim(self.name, self.ctx.settings.lease_seconds,
                                        self.ctx.settings.max_attempts)
        if delivery is None:
            return False
        self.process(delivery)
        return True

    def process(self, d: Delivery) -> None:
        store = self.ctx.store
        try:
            payload = d.payload
        except ValueError as e:
            store.finish(d.id, "failed", error=f"stored body is not JSON: {e}", worker=self.name)
            return
        event = Event(d.event, d.action, payload, d.id)
        handlers = self.router.handlers(d.event, d.action)
        if not handlers:
            store.finish(d.id, "ignored", worker=self.name)
            return
        # One heartbeat thread per worker renews the lease of whatever it is handling.
        self._ensure_heartbeat()
        self._current = d.id
        try:
            self._run(d, event, handlers)
        finally:
            self._current = None

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(target=self._renew_loop, daemon=True, name="sprout-lease")
            self._heartbeat.start()

    def _renew_loop(self) -> None:
        lease = self.ctx.settings.lease_seconds
        while not self._stop.wait(lease / 3):
            current = self._current
            if current is None:
                continue
            try:
                if not self.ctx.store.renew(current, self.name, lease) and self._current == current:
                    log.warning("delivery %s: lease lost to another worker", current)
            except Exception:
                log.exception("renewing the lease of %s", current)

    def _run(self, d: Delivery, event: Event, handlers) -> None:
        store, settings = self.ctx.store, self.ctx.settings
        start = time.perf_counter()
        errors: list[str] = []
        transient: Transient | None = None
        for handler in handlers:
            try:
                handler(event, self.ctx)
            except Transient as e:
                transient = e
                break  # handlers are idempotent: the whole delivery is retried
            except GitHubError as e:
                errors.append(f"{handler.__module__}.{handler.__name__}: {e}")
            except Exception as e:  # isolate one handler's bug from the others
                log.exception("handler %s failed on delivery %s", handler.__name__, d.id)
                errors.append(f"{handler.__module__}.{handler.__name__}: {type(e).__name__}: {e}")
        elapsed = time.perf_counter() - start
        self.times.observe(elapsed)
        if transient is not None:
            if d.attempts >= settings.max_attempts:
                store.finish(d.id, "failed", elapsed * 1000, f"gave up after {d.attempts} attempts: {transient}",
                             worker=self.name)
                log.error("delivery %s parked as failed: %s", d.id, transient)
            else:
                delay = retry_delay(transient, d.attempts)
                self.retries += 1
                store.reschedule(d.id, delay, str(transient), worker=self.name)
                log.warning("delivery %s attempt %d: %s; retrying in %.1fs", d.id, d.attempts, transient, delay)
            return
        if not store.finish(d.id, "failed" if errors else "done", elapsed * 1000, "; ".join(errors) or None,
                            worker=self.name):
            log.warning("delivery %s: finished after another worker took it over; its outcome stands", d.id)

    # -- background thread -----------------------------------------------------------------
    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self._loop, name="sprout-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the store itself failed: keep the loop alive
                log.exception("worker loop error")
                busy = False
            if not busy:
                self._stop.wait(self.poll)
