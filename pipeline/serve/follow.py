"""`sprout model serve --follow`: serve the newest accepted model of the registry and move to the
next one when a run is accepted; a rejected run is never loaded."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .deployment import Deployment, Slot


def read_registry(source: str) -> list[dict]:
    """The model registry (models.json, oldest first) of a runs root, a models.json file, or an
    object store (``s3://bucket/prefix``, ``gs://…``: SPROUT_STORAGE, read through pipeline.storage).

    The one place serving reads the registry."""
    if "://" in source:
        from ..storage import Storage
        raw = Storage(source).read_bytes("models.json")
        data = json.loads(raw) if raw else []
    else:
        path = Path(source)
        path = path if path.suffix == ".json" else path / "models.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{source}: not a model registry (a JSON list)")
    return [e for e in data if isinstance(e, dict)]


def model_path(entry: dict, source: str) -> Path | None:
    """An entry's model folder, or None when it is gone. Runs record the path they were given,
    which may be relative to the folder they ran in: tried as is, then beside the runs root. In
    an object store the entry names its model there: downloaded once to a node-local cache."""
    ref = str(entry.get("path") or "")
    if not ref:
        return None
    if "://" in source:
        from ..storage import Storage, StorageError, cached_copy
        store = Storage(source)
        rel = store.locate(ref)
        if rel is None or not store.exists(f"{rel}/config.json"):
            return None
        try:
            return cached_copy(store, rel)
        except StorageError:
            return None
    raw = Path(ref)
    root = Path(source) if Path(source).suffix != ".json" else Path(source).parent
    for p in (raw, root.parent / raw, root / raw):
        if (p / "config.json").is_file():
            return p
    return None


def newest_accepted(entries: list[dict], source: str, after: str | None = None) -> tuple[dict, Path] | None:
    """The newest entry with verdict 'accepted' whose model folder exists; with ``after`` (the
    served entry's id, when still in the registry) only entries registered after it."""
    ids = [e.get("id") for e in entries]
    start = ids.index(after) + 1 if after in ids else 0
    for e in reversed(entries[start:]):
        if e.get("verdict") != "accepted":
            continue
        p = model_path(e, source)
        if p is not None:
            return e, p
    return None


def describe(entry: dict, path: Path) -> dict:
    return {"id": str(entry.get("id")), "path": str(path), "taxonomy_sha": entry.get("taxonomy_sha"),
            "run": entry.get("run"), "created": entry.get("created"), "verdict": entry.get("verdict")}


class Follower:
    """Polls the registry every ``interval`` seconds and switches ``slot`` to a newly accepted
    model once it has loaded (loading happens beside the serving model, never instead of it)."""

    def __init__(self, source: str, slot: Slot, load: Callable[[Path, dict], Deployment],
                 interval: float = 2.0, log=lambda m: print(m, file=sys.stderr)):
        self.source, self.slot, self.load, self.interval, self.log = source, slot, load, interval, log
        self.failed: dict[str, str] = {}
        """Entries whose model did not load (id -> error): not retried, the server keeps the one it has."""
        self.last_check: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One look at the registry; True when the served model changed."""
        try:
            entries = read_registry(self.source)
        except (OSError, ValueError) as e:  # a registry being replaced by hand, a storage hiccup
            self.last_error = f"cannot read the registry: {e}"
            return False
        self.last_check, self.last_error = time.time(), None
        current = self.slot.current
        served = current.id if current is not None else None
        found = newest_accepted([e for e in entries if str(e.get("id")) not in self.failed], self.source,
                                after=served)
        if found is None or str(found[0].get("id")) == served:
            return False
        entry, path = found
        info = describe(entry, path)
        self.log(f"loading accepted model {info['id']} (taxonomy {str(info['taxonomy_sha'] or '?')[:12]}) from {path}")
        try:
            new = self.load(path, info)
        except Exception as e:  # a broken folder must not take the serving model down
            self.failed[info["id"]] = f"{type(e).__name__}: {e}"
            self.log(f"cannot load {info['id']}: {self.failed[info['id']]}; still serving {served or 'nothing'}")
            return False
        self.slot.switch(new)
        self.log(f"now serving {info['id']}" + (f" (was {served})" if served else ""))
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sprout-serve-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
