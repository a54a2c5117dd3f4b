"""A leaf's answered requests, appended as they arrive: a killed run resumes inside the leaf and
asks the teacher only what it had not answered yet. Deleted once the leaf is cached."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from .pool import Completion, Cost


def request_key(messages, n: int, params_key: str, index: int) -> str:
    """The request's identity: its messages, sample count, parameters and place in the leaf."""
    blob = json.dumps([messages, n, params_key, index], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Journal:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def load(self) -> dict[str, Completion]:
        """Answers recorded by an earlier, interrupted attempt; a torn last line is ignored."""
        out: dict[str, Completion] = {}
        if self.path is None or not self.path.exists():
            return out
        for line in self.path.read_text("utf-8").splitlines():
            try:
                row = json.loads(line)
                out[row["key"]] = Completion(row["texts"], row["finish"], Cost.of(row.get("cost")))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def append(self, key: str, done: Completion) -> None:
        if self.path is None:
            return
        line = json.dumps({"key": key, "texts": done.texts, "finish": done.finish, "cost": done.cost.as_dict()},
                          ensure_ascii=False)
        with self._lock:
            if self.path is None:  # closed meanwhile: the leaf is done and its journal about to go
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")  # one write per line: a kill tears at most the last one

    def close(self) -> None:
        """No more lines: a judge reply arriving on the pool's thread after the leaf is done is not
        written into a journal that is about to be deleted."""
        with self._lock:
            self.path = None

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
