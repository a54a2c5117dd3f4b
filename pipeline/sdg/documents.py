"""Fetch a knowledge leaf's documents from its repository at its pinned commit."""

from __future__ import annotations

from pathlib import Path

from ..budgets import Budgets, BudgetError, check
from ..taxonomy.diff import GitError, git
from ..taxonomy.documents import fetch_commit, list_blobs, match_patterns, resolve_repo
from ..taxonomy.rules import pattern_problem
from ..taxonomy.sources import SourceError

MAX_DOCUMENT_BYTES = Budgets.document_file_bytes  # one file; SPROUT_MAX_DOCUMENT_FILE_BYTES


class DocumentError(Exception):
    """The documents of a leaf cannot be read."""


def blob_size(mirror: Path, sha: str, name: str) -> int:
    """``git cat-file -s``: a blob's size without reading it."""
    return int(git(mirror, "cat-file", "-s", f"{sha}:{name}").decode().strip())


def fetch(document: dict, taxonomy_root: Path, budgets: Budgets | None = None,
          leaf: str | None = None) -> list[tuple[str, str]]:
    """(file name, Markdown text) for every file the leaf's patterns match at its commit. Each
    file is read once however many patterns match it, and only after its size is checked; the
    pattern count and the total size are budgets too (``pipeline.budgets``)."""
    budgets = budgets or Budgets.from_env()
    repo, commit = document["repo"], document["commit"]
    raw_patterns = document.get("patterns", [])
    check(len(raw_patterns), "patterns", "the number of document patterns", budgets, leaf)
    patterns = [p for p in raw_patterns if not pattern_problem(p)]
    if not patterns:
        raise DocumentError("no usable document patterns")
    try:
        mirror, sha = fetch_commit(resolve_repo(repo, taxonomy_root), commit)
        names = list_blobs(mirror, sha)
    except (GitError, SourceError) as e:
        raise DocumentError(f"cannot read {repo} at {commit}: {e}") from None
    wanted = sorted({name for hits in match_patterns(names, patterns).values() for name in hits
                     if name.lower().endswith(".md")})
    sizes = {name: blob_size(mirror, sha, name) for name in wanted}
    for name, size in sizes.items():
        check(size, "document_file_bytes", f"the size of document {name} in bytes", budgets, leaf)
    check(sum(sizes.values()), "document_bytes", "the size of all documents in bytes", budgets, leaf)
    out = [(name, git(mirror, "cat-file", "blob", f"{sha}:{name}").decode("utf-8", "replace")) for name in wanted]
    if not out:
        raise DocumentError(f"patterns {patterns} match no Markdown file at {sha[:12]}")
    return out


__all__ = ["BudgetError", "DocumentError", "MAX_DOCUMENT_BYTES", "blob_size", "fetch"]
