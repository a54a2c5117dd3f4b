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
    # refs may come from a payload (a pull request's base): never read as options
    args = ["diff", "--name-status", "-z", "-M", "--no-ext-diff", "--end-of-options", base]
    if head:
        args.append(head)
    args += ["--", under or "."]
    raw = git(repo, *args).decode("utf-8", "surrogateescape").split("\0")
    entries = []  # (status letter, old path, new path)
    i = 0
    while i < len(raw) - 1 and raw[i]:
        code = raw[i][0]
        if code in "RC":
            entries.append((code, raw[i + 1], raw[i + 2]))
            i += 3
        else:
            entries.append((code, raw[i + 1], raw[i + 1]))
            i += 2
    changes: dict[str, Change] = {}
    for code, old, new in entries:
        if PurePosixPath(new).name in LEAF_FILES:
            if code == "R":
                changes[new] = Change(new, "renamed", old)
            else:
                changes[new] = Change(new, {"A": "added", "D": "deleted", "C": "added"}.get(code, "modified"))
        elif code == "R" and PurePosixPath(old).name in LEAF_FILES:
            changes[old] = Change(old, "deleted")  # renamed to a name that is no leaf
    exists = _exists_at(repo, head)
    for code, old, new in entries:  # a changed attribution.txt changes the leaf beside it
        for side in {old, new}:
            leaf = _leaf_of(side)
            if leaf and leaf != side and leaf not in changes and exists(leaf):
                changes[leaf] = Change(leaf, "modified")
    if head is None:
        untracked = git(repo, "ls-files", "--others", "--exclude-standard", "-z", "--",
                        under or ".").decode("utf-8", "surrogateescape").split("\0")
        for path in filter(None, untracked):
            leaf = _leaf_of(path)
            if leaf and leaf not in changes:
                changes[leaf] = Change(leaf, "added" if leaf == path else "modified")
    return sorted(changes.values(), key=lambda c: c.path)


def _exists_at(repo: Path, head: str | None):
    if head is None:
        return lambda path: (repo / path).is_file()
    return lambda path: subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{head}:{path}"],
                                       capture_output=True).returncode == 0


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
