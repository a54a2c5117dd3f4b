"""What the server serves right now: a loaded model with its scheduler, swapped atomically when the
registry accepts a new one. A request holds the deployment it started on until it has finished,
so a switch never fails or reroutes a request in flight; the old model is let go after its last."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .batching import Scheduler
from .engine import Engine


@dataclass
class Deployment:
    engine: Engine
    scheduler: Scheduler
    info: dict
    """What is served: ``id`` (the registry entry, or the folder name), ``path``, and from the
    registry ``taxonomy_sha``, ``run``, ``created``."""
    loaded_at: float = field(default_factory=time.time)
    users: int = 0
    retired: bool = False

    @property
    def id(self) -> str:
        return str(self.info.get("id"))


def load(path: str | Path, info: dict | None = None, max_batch: int = 16, wait_ms: float = 5.0) -> Deployment:
    engine = Engine(path)
    return Deployment(engine, Scheduler(engine, max_batch=max_batch, wait_ms=wait_ms),
                      {"id": Path(path).name, "path": str(path), **(info or {})})


class Slot:
    """The current deployment; ``acquire``/``release`` around every request."""

    def __init__(self, current: Deployment | None = None):
        self._lock = threading.Lock()
        self._current = current
        self.switches = 0

    @property
    def current(self) -> Deployment | None:
        return self._current

    def acquire(self) -> Deployment | None:
        with self._lock:
            d = self._current
            if d is not None:
                d.users += 1
            return d

    def release(self, d: Deployment) -> None:
        with self._lock:
            d.users -= 1
            done = d.retired and d.users == 0
        if done:
            d.scheduler.close()

    def switch(self, new: Deployment) -> Deployment | None:
        """Serve ``new`` from the next request on; the old one finishes its requests, then closes."""
        with self._lock:
            old, self._current = self._current, new
            if old is not None:
                old.retired = True
                self.switches += 1
            done = old is not None and old.users == 0
        if done:
            old.scheduler.close()
        return old
