"""Check that a knowledge leaf's documents exist: repo reachable, commit present, patterns
matching readable Markdown. Needs git access to the document repository, so it is opt-in."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from pathlib import Path
from typing import Iterator

from . import diagnostics as d
from .diff import GitError, git
from .rules import pattern_problem
from .validate import LeafResult

# A fixed identity and date make the helper's commit SHA a pure function of the documents.
_DETERMINISTIC_ENV = {
    "GIT_AUTHOR_NAME": "Sprout", "GIT_AUTHOR_EMAIL": "sprout@localhost",
    "GIT_COMMITTER_NAME": "Sprout", "GIT_COMMITTER_EMAIL": "sprout@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000",
}


def cache_dir() -> Path:
    return Path(os.environ.get("SPROUT_CACHE", Path.home() / ".cache" / "sprout"))


def resolve_repo(repo: str, taxonomy_root: Path) -> str:
    """A relative path is relative to the taxonomy root; a plain folder (not a git repository)
    becomes one, deterministically, so documents shipped in a taxonomy work offline."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", repo) or re.match(r"^[^/\\]+@[^:]+:", repo):
        return repo
    path = Path(repo).expanduser()
    if not path.is_absolute():
        path = (taxonomy_root / path).resolve()
    if path.is_dir() and not (path / ".git").exists() and not (path / "HEAD").is_file():
        return str(materialize(path))
    return str(path)


def materialize(folder: Path, dest: Path | None = None) -> Path:
    """Make (or reuse) a bare git repository holding ``folder``'s files in one commit whose SHA
    depends only on the files' names and contents."""
    folder = folder.resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    dest = dest or cache_dir() / "docrepos" / f"{folder.name}-{digest.hexdigest()[:16]}.git"
    if (dest / "HEAD").is_file() and git(dest, "rev-parse", "--verify", "-q", "main", check=False):
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    env_saved = {k: os.environ.get(k) for k in _DETERMINISTIC_ENV}
    os.environ.update(_DETERMINISTIC_ENV)
    try:
        git(tmp, "init", "-q", "--bare", "-b", "main")
        side = ("-c", "core.autocrlf=false", "-c", "core.filemode=false", "--git-dir", str(tmp),
                "--work-tree", str(folder))
        git(folder, *side, "add", "-A", "-f", "--", ".")
        git(folder, *side, "commit", "-q", "--no-gpg-sign", "--no-verify", "-m",
            f"Documents from {folder.name}")
    finally:
        for k, v in env_saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        tmp.rename(dest)
    except OSError:  # another process made it first
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_commit(repo: str, commit: str) -> Path:
    """A local bare mirror holding ``commit`` (cached per repository)."""
    key = hashlib.sha256(repo.encode()).hexdigest()[:16]
    mirror = cache_dir() / "mirrors" / f"{key}.git"
    if not (mirror / "HEAD").is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        git(mirror, "init", "-q", "--bare")
    if _has(mirror, commit):
        return mirror
    try:
        git(mirror, "fetch", "-q", "--depth", "1", repo, commit)
    except GitError:
        git(mirror, "fetch", "-q", repo, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
    if not _has(mirror, commit):
        raise GitError(f"commit {commit} is not in {repo}")
    return mirror


def _has(mirror: Path, commit: str) -> bool:
    import subprocess
    return subprocess.run(["git", "-C", str(mirror), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


def match_patterns(names: list[str], patterns: list[str]) -> dict[str, list[str]]:
    """Glob semantics of InstructLab: '*' stays within a folder, '**' crosses folders."""
    out = {}
    for pat in patterns:
        rx = _glob_regex(pat)
        out[pat] = [n for n in names if rx.match(n)]
    return out


def _glob_regex(pattern: str) -> re.Pattern:
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                parts.append(re.escape("["))
                i += 1
            else:
                parts.append(fnmatch.translate(pattern[i:j + 1])[4:-3])
                i = j + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(parts) + "$")


def check_documents(result: LeafResult, taxonomy_root: Path) -> Iterator[d.Diagnostic]:
    data = result.data
    if result.kind != "knowledge" or not isinstance(data, dict):
        return
    doc = data.get("document")
    if not isinstance(doc, dict):
        return
    repo, commit, patterns = doc.get("repo"), doc.get("commit"), doc.get("patterns")
    if not (isinstance(repo, str) and isinstance(commit, str) and isinstance(patterns, list)):
        return
    patterns = [p for p in patterns if isinstance(p, str) and not pattern_problem(p)]

    def fail(msg, hint=""):
        return d.make(d.DOCUMENT_CHECK, result.file, 1, 1, msg, hint, ".document")

    try:
        mirror = fetch_commit(resolve_repo(repo, taxonomy_root), commit)
        names = [n for n in git(mirror, "ls-tree", "-r", "--name-only", "-z", commit)
                 .decode("utf-8", "surrogateescape").split("\0") if n]
    except GitError as e:
        yield fail(f"cannot read documents from {repo} at {commit}: {e}",
                   "Check that the repository is reachable and that the commit was pushed.")
        return
    for pat, hits in match_patterns(names, patterns).items():
        md = [h for h in hits if h.lower().endswith(".md")]
        if not md:
            yield fail(f"pattern {pat!r} matches no Markdown file at {commit[:12]}"
                       + (f" (it matches {len(hits)} other files)" if hits else ""),
                       "Sprout reads Markdown (.md) documents; check the pattern's folders.")
            continue
        for name in md:
            blob = git(mirror, "cat-file", "blob", f"{commit}:{name}", check=False)
            try:
                blob.decode("utf-8")
            except UnicodeDecodeError:
                yield fail(f"document {name} is not UTF-8 text")


if __name__ == "__main__":  # print the commit SHA a documents folder materialises to
    import sys

    for arg in sys.argv[1:] or ["taxonomy/documents"]:
        repo = materialize(Path(arg))
        print(git(repo, "rev-parse", "main").decode().strip(), arg)
