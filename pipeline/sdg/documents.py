"""Fetch a knowledge leaf's documents from its repository at its pinned commit."""

from __future__ import annotations

from pathlib import Path

from ..taxonomy.diff import git
from ..taxonomy.documents import fetch_commit, match_patterns, resolve_repo
from ..taxonomy.rules import pattern_problem

MAX_DOCUMENT_BYTES = 5_000_000


class DocumentError(Exception):
    """The documents of a leaf cannot be read."""


def fetch(document: dict, taxonomy_root: Path) -> list[tuple[str, str]]:
    """(file name, Markdown text) for every file the leaf's patterns match at its commit."""
    repo, commit = document["repo"], document["commit"]
    patterns = [p for p in document.get("patterns", []) if not pattern_problem(p)]
    if not patterns:
        raise DocumentError("no usable document patterns")
    try:
        mirror = fetch_commit(resolve_repo(repo, taxonomy_root), commit)
        names = [n for n in git(mirror, "ls-tree", "-r", "--name-only", "-z", commit).decode().split("\0") if n]
    except Exception as e:
        raise DocumentError(f"cannot read {repo} at {commit}: {e}") from None
    out = []
    for pattern, hits in match_patterns(names, patterns).items():
        for name in hits:
            if not name.lower().endswith(".md"):
                continue
            blob = git(mirror, "cat-file", "blob", f"{commit}:{name}")[:MAX_DOCUMENT_BYTES]
            out.append((name, blob.decode("utf-8", "replace")))
    if not out:
        raise DocumentError(f"patterns {patterns} match no Markdown file at {commit[:12]}")
    return sorted(set(out))
