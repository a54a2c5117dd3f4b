"""Caches that pull requests fill are capped, and cleaned least-recently-used first.

Document mirrors, materialised document folders, generated-sample caches and run folders each
grow with every pull request. Each use marks an entry (its mtime); after adding one, the folder is
pruned oldest-first until it fits its cap. Entries in use are never removed: the one just used,
and whatever the caller keeps (run folders holding a registered model).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

GB = 1024 ** 3
CAPS = {  # folder kind -> (setting, default bytes)
    "mirrors": ("SPROUT_CACHE_MAX_MIRRORS_BYTES", 10 * GB),
    "docrepos": ("SPROUT_CACHE_MAX_DOCREPOS_BYTES", 2 * GB),
    "sdg": ("SPROUT_CACHE_MAX_SDG_BYTES", 5 * GB),
    "runs": ("SPROUT_RUNS_MAX_BYTES", 200 * GB),
}
EMBEDDINGS_SETTING, EMBEDDINGS_DEFAULT = "SPROUT_CACHE_MAX_EMBEDDINGS", 1_000_000  # vectors (~1.5 KB each)


def cap(kind: str) -> int:
    setting, default = CAPS[kind]
    return int(os.environ.get(setting) or default)


def touch(path: Path) -> None:
    """Mark an entry as just used."""
    try:
        os.utime(path, follow_symlinks=False)
    except OSError:
        pass


def size_of(path: Path) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def prune(folder: Path, max_bytes: int, keep: set[Path] = frozenset(), group=None,
          only=None) -> list[Path]:
    """Remove the least recently used entries of ``folder`` until it holds at most ``max_bytes``.
    ``group(name)`` maps a file name to its entry (files of one cache key go together); ``only``
    says which entries may be removed at all. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    keep = {Path(k).resolve() for k in keep}
    entries: dict[str, list[Path]] = {}
    for child in folder.iterdir():
        if child.name.startswith(".") or ".tmp" in child.name:
            continue  # being written by someone
        entries.setdefault(group(child.name) if group else child.name, []).append(child)
    sized = []
    total = 0
    for name, paths in entries.items():
        size = sum(size_of(p) for p in paths)
        total += size
        if only is not None and not all(only(p) for p in paths):
            continue
        if any(p.resolve() in keep for p in paths):
            continue
        used = max((os.lstat(p).st_mtime for p in paths if os.path.lexists(p)), default=0.0)
        sized.append((used, name, size, paths))
    removed = []
    for used, name, size, paths in sorted(sized):
        if total <= max_bytes:
            break
        for p in paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        total -= size
    return removed


def prune_runs(runs_root: Path, current: Path) -> list[Path]:
    """Cap the run folders (``SPROUT_RUNS_MAX_BYTES``), oldest first. Only run folders (those with
    a manifest.json) are candidates, never the current one, and never one holding a model in the
    registry (models.json): a deployed or candidate model outlives any cap."""
    import json
    runs_root = Path(runs_root)
    keep = {Path(current)}
    try:
        for entry in json.loads((runs_root / "models.json").read_text()):
            for key in ("run", "path", "parent"):
                if entry.get(key):
                    p = Path(entry[key])
                    keep |= {p, *p.parents}
    except (OSError, ValueError, AttributeError, TypeError):
        if (runs_root / "models.json").exists():
            return []  # an unreadable registry: remove nothing rather than a model in use
    return prune(runs_root, cap("runs"), keep=keep, only=lambda p: p.is_dir() and (p / "manifest.json").is_file())


def prune_embeddings(db, max_rows: int | None = None) -> int:
    """Drop the least recently used vectors past the cap (``SPROUT_CACHE_MAX_EMBEDDINGS``) from an
    open embeddings database (table ``vectors`` with a ``used`` column); returns how many."""
    max_rows = max_rows or int(os.environ.get(EMBEDDINGS_SETTING) or EMBEDDINGS_DEFAULT)
    count = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    if count <= max_rows:
        return 0
    drop = count - max_rows
    db.execute("DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY used LIMIT ?)", (drop,))
    return drop
