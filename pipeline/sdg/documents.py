"""Fetch a knowledge leaf's documents from its repository at its pinned commit."""

from __future__ import annotations

from pathlib import Path

from ..taxonomy.diff import GitError, git
from ..taxonomy.documents import fetch_commit, list_blobs, match_patterns, resolve_repo
from ..taxonomy.rules import pattern_problem
from ..taxonomy.sources import SourceError

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
        mirror, sha = fetch_commit(resolve_repo(repo, taxonomy_root), commit)
        names = list_blobs(mirror, sha)
    except (GitError, SourceError) as e:
        raise DocumentError(f"cannot read {repo} at {commit}: {e}") from None
    out = []
    for pattern, hits in match_patterns(names, patterns).items():
        for name in hits:
            if not name.lower().endswith(".md"):
                continue
            blob = git(mirror, "cat-file", "blob", f"{sha}:{name}")[:MAX_DOCUMENT_BYTES]
            out.append((name, blob.decode("utf-8", "replace")))
    if not out:
        raise DocumentError(f"patterns {patterns} match no Markdown file at {sha[:12]}")
    return sorted(set(out))
