"""Which leaves changed between two git refs, and reading files at a ref."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LEAF_FILES = ("qna.yaml", "qna.yml")
SIDE_FILES = ("attribution.txt",)


class GitError(Exception):
    """A git command failed; the message says which and why."""


@dataclass(frozen=True)
class Change:
    path: str
    """Repository-relative path of the leaf file."""
    status: str
    """added, modified, deleted or renamed."""
    old_path: str | None = None


def git(repo: Path, *args: str, check: bool = True, input: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, input=input,
                              timeout=300)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} timed out") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {' '.join(args)}: {err[-1] if err else 'failed'}")
    return proc.stdout


def repo_root(path: Path) -> Path:
    return Path(git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel")
                .decode().strip())


def _leaf_of(path: str) -> str | None:
    p = PurePosixPath(path)
    if p.name in LEAF_FILES:
        return path
    if p.name in SIDE_FILES:
        return str(p.parent / "qna.yaml")
    return None


def changed_leaves(repo: Path, base: str, head: str | None = None, under: str = "") -> list[Change]:
    """Leaves added, modified, deleted or renamed from ``base`` to ``head`` (the working tree,
    untracked files included, when ``head`` is None). A changed attribution.txt changes its leaf."""
    args = ["diff", "--name-status", "-z", "-M", "--no-ext-diff", base]
    if head:
        args.append(head)
    args += ["--", under or "."]
    raw = git(repo, *args).decode("utf-8", "surrogateescape").split("\0")
    changes: dict[str, Change] = {}
    i = 0
    while i < len(raw) - 1:
        code = raw[i]
        if not code:
            break
        if code[0] in "RC":
            old, new = raw[i + 1], raw[i + 2]
            i += 3
            leaf = _leaf_of(new)
            if leaf:
                changes[leaf] = Change(leaf, "renamed" if leaf == new else "modified",
                                       old if leaf == new else None)
            continue
        path = raw[i + 1]
        i += 2
        leaf = _leaf_of(path)
        if not leaf:
            continue
        status = {"A": "added", "D": "deleted"}.get(code[0], "modified")
        if leaf != path:  # a side file changed: the leaf itself is modified, if it still exists
            if leaf not in changes:
                changes[leaf] = Change(leaf, "modified")
            continue
        changes[leaf] = Change(leaf, status)
    if head is None:
        untracked = git(repo, "ls-files", "--others", "--exclude-standard", "-z", "--",
                        under or ".").decode("utf-8", "surrogateescape").split("\0")
        for path in filter(None, untracked):
            leaf = _leaf_of(path)
            if leaf and leaf not in changes:
                changes[leaf] = Change(leaf, "added" if leaf == path else "modified")
    return sorted(changes.values(), key=lambda c: c.path)


def read_at(repo: Path, ref: str, path: str, max_bytes: int) -> bytes | None:
    """A file's content at ``ref``, or None when it does not exist there."""
    spec = f"{ref}:{path}"
    kind = git(repo, "cat-file", "-t", spec, check=False).strip()
    if kind != b"blob":
        return None
    size = int(git(repo, "cat-file", "-s", spec).strip() or 0)
    if size <= max_bytes:
        return git(repo, "cat-file", "blob", spec)
    # Too big: read just past the limit so that the validator reports the size, unloaded.
    with subprocess.Popen(["git", "-C", str(repo), "cat-file", "blob", spec],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        head = proc.stdout.read(max_bytes + 1)  # type: ignore[union-attr]
        proc.kill()
    return head
