"""The data files that ship inside the package, in one place: read through importlib.resources, so
they are found in an installed wheel (site-packages, a zip, a Ray node) and never looked up
beside a source checkout. ``pyproject.toml``'s package-data globs and the wheel check in
``.ci/run`` (tests/test_package_data.py) hold the same list."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

# name -> path inside the ``pipeline`` package
DATA = {
    "schemas": "taxonomy/schemas",  # v1..v3/{version,knowledge,compositional_skills}.json
    "prompts": "sdg/prompts",  # v1/<task>.txt, versioned teacher prompts
    "judge_prompt": "eval/judge_prompt.txt",
    "probe": "eval/fact_probe.jsonl",  # the forgetting probe (general facts, ranked endings)
    "replay": "data/general_replay.jsonl",  # the general replay buffer mixed into training
}


def resource(name: str) -> Traversable:
    """A shipped file or folder (``read_text``, ``read_bytes``, ``joinpath``, ``iterdir``)."""
    node = files("pipeline")
    for part in DATA[name].split("/"):
        node = node / part
    return node


_held = contextlib.ExitStack()
atexit.register(_held.close)


@functools.lru_cache(maxsize=None)
def local_path(name: str) -> Path:
    """A real file-system path to a shipped file, for code that records or passes paths (the
    recipe's replay sources). The installed file itself when the package is a folder; extracted
    once per process when it is imported from a zip."""
    return Path(_held.enter_context(as_file(resource(name))))


@functools.lru_cache(maxsize=None)
def source_digest(package: str, only: tuple[str, ...] = ()) -> str:
    """A short hash of a package's own ``.py`` files (or just ``only``), read through
    importlib.resources so a wheel hashes what it runs: caches that hold a module's output key
    on it, so an edit to that module recomputes."""
    h = hashlib.sha256()
    for f in sorted(files(package).iterdir(), key=lambda f: f.name):
        if f.name.endswith(".py") and (not only or f.name in only):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]
