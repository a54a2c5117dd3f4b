"""Check that a knowledge leaf's documents exist: repo reachable, commit present, patterns
matching readable Markdown. Needs git access to the document repository, so it is opt-in."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

from . import diagnostics as d
from .diff import GitError, git
from .globs import compile_glob
from .rules import pattern_problem
from .sources import (FetchLimit, Source, SourceError, commit_problem, fetch_bounded, is_full_sha,
                      is_short_sha, resolve_ref, resolve_source)
from .validate import LeafResult

MAX_NAME_CHARS = 4096  # PATH_MAX: no real document's path is longer

# A fixed identity and date make the helper's commit SHA a pure function of the documents.
_DETERMINISTIC_ENV = {
    "GIT_AUTHOR_NAME": "Sprout", "GIT_AUTHOR_EMAIL": "sprout@localhost",
    "GIT_COMMITTER_NAME": "Sprout", "GIT_COMMITTER_EMAIL": "sprout@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000",
}


def cache_dir() -> Path:
    return Path(os.environ.get("SPROUT_CACHE", Path.home() / ".cache" / "sprout"))


def resolve_repo(repo: str, taxonomy_root: Path) -> Source:
    """The leaf's document source, checked (see ``sources``); raises ``SourceError``."""
    return resolve_source(repo, taxonomy_root)


def materialize(folder: Path, dest: Path | None = None) -> Path:
    """Make (or reuse) a bare git repository holding ``folder``'s files in one commit whose SHA
    depends only on the files' names and contents. Symbolic links are kept as links (git stores
    the link text), never followed: a link to /etc/passwd carries no byte of that file."""
    folder = folder.resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(n for n in dirnames if n != ".git")
        files += [Path(dirpath) / n for n in filenames]
    files.sort()
    digest = hashlib.sha256()
    for p in files:
        data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        digest.update(str(p.relative_to(folder)).encode() + b"\0" + data + b"\0")
    dest = dest or cache_dir() / "docrepos" / f"{folder.name}-{digest.hexdigest()[:16]}.git"
    if (dest / "HEAD").is_file() and git(dest, "rev-parse", "--verify", "-q", "main", check=False):
        _used(dest, "docrepos")
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
        # the folder's .gitattributes must not run a filter driver (git-lfs, or one a node's git
        # config defines) as `git add` reads the pull request's files
        (tmp / "info").mkdir(exist_ok=True)
        (tmp / "info" / "attributes").write_text("* -filter -ident -working-tree-encoding\n")
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
    _used(dest, "docrepos")
    return dest


def _used(entry: Path, kind: str) -> None:
    """Mark a cache entry used and cap its folder, least recently used first (``cachecap``)."""
    from ..cachecap import cap, prune, touch
    touch(entry)
    if entry.parent.name == kind:  # Sprout's own cache folders only, never a caller's dest
        prune(entry.parent, cap(kind), keep={entry})


def fetch_commit(source: Source, commit: str) -> tuple[Path, str]:
    """(a local bare repository holding ``commit``, its full SHA), for a source that
    ``resolve_repo`` checked. Remote mirrors are cached per URL; only full SHAs resolved here are
    ever fetched. Raises ``SourceError``."""
    problem = commit_problem(commit)
    if problem:
        raise SourceError(problem)
    if source.history:  # the taxonomy repository's own objects (a checkout Sprout made or was given)
        full = _full_sha(source.folder, commit)
        if full is None:
            raise SourceError(f"commit {commit} is not in the taxonomy repository's history")
        return source.folder, full
    if source.folder is not None:
        mirror = source.folder if _is_bare(source.folder) else materialize(source.folder)
        full = _full_sha(mirror, commit)
        if full is None:
            raise SourceError(f"commit {commit} is not in the documents folder")
        return mirror, full
    url, scheme = source.url, source.scheme
    mirror = cache_dir() / "mirrors" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"
    if not (mirror / "HEAD").is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        git(mirror, "init", "-q", "--bare")
    hexa = is_full_sha(commit) or is_short_sha(commit)
    # A branch or tag name is resolved on the remote first: only its full SHA is fetched.
    target = commit if is_full_sha(commit) else None if hexa else resolve_ref(url, commit, scheme)
    if not hexa and target is None:
        raise SourceError(f"{commit!r} is not a commit, branch or tag of {url}")
    _used(mirror, "mirrors")
    full = _full_sha(mirror, target or commit)
    if full:
        return mirror, full
    if target:
        try:
            fetch_bounded(mirror, ["--depth", "1", "--end-of-options", url, target], scheme)
        except FetchLimit:
            raise
        except SourceError:
            pass  # the server refuses fetching by SHA: fall back to its branches and tags
    if not (target and _has(mirror, target)):
        fetch_bounded(mirror, ["--end-of-options", url, "+refs/heads/*:refs/heads/*",
                               "+refs/tags/*:refs/tags/*"], scheme)
    full = _full_sha(mirror, target or commit)
    if full is None:
        raise SourceError(f"commit {commit} is not in {url}")
    _used(mirror, "mirrors")  # once more: the fetch may have grown it past the cap
    return mirror, full


def _is_bare(folder: Path) -> bool:
    # Only Sprout's own materialised repositories: a bare-looking folder inside a pull request
    # (HEAD, config, hooks) is treated as plain files, never opened as a repository.
    try:
        return folder.resolve().is_relative_to((cache_dir() / "docrepos").resolve()) and (folder / "HEAD").is_file()
    except OSError:
        return False


def _full_sha(mirror: Path, commit: str) -> str | None:
    import subprocess
    proc = subprocess.run(["git", "-C", str(mirror), "rev-parse", "-q", "--verify", "--end-of-options",
                           f"{commit}^{{commit}}"], capture_output=True)
    out = proc.stdout.decode().strip()
    return out if proc.returncode == 0 and is_full_sha(out) else None


def _has(mirror: Path, commit: str) -> bool:
    return _full_sha(mirror, commit) is not None


def list_blobs(mirror: Path, sha: str) -> list[str]:
    """Paths of the regular files (not links, not submodules) in commit ``sha``."""
    out = []
    for entry in git(mirror, "ls-tree", "-r", "-z", "--end-of-options", sha).decode("utf-8", "surrogateescape").split("\0"):
        meta, _, name = entry.partition("\t")
        if name and meta.split(" ")[:2] in (["100644", "blob"], ["100755", "blob"]):
            out.append(name)
    return out


def match_patterns(names: list[str], patterns: list[str]) -> dict[str, list[str]]:
    """Glob semantics of InstructLab: '*' stays within a folder, '**' crosses folders. Matched by
    ``globs`` in linear time (a backtracking regex took 24 s on one name); a name longer than
    ``MAX_NAME_CHARS`` is never a document."""
    out = {}
    for pat in patterns:
        g = compile_glob(pat.lstrip("/"))  # '/docs/*.md' means the repository root
        out[pat] = [n for n in names if len(n) <= MAX_NAME_CHARS and g.match(n)]
    return out


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

    if commit_problem(commit):
        return  # an error of its own (document-commit-unsafe); never handed to git
    try:
        mirror, sha = fetch_commit(resolve_repo(repo, taxonomy_root), commit)
        names = list_blobs(mirror, sha)
    except (GitError, SourceError) as e:
        yield fail(f"cannot read documents from {repo} at {commit}: {e}",
                   "Check that the repository is reachable and that the commit was pushed.")
        return
    from ..budgets import Budgets
    budgets = Budgets.from_env()
    limit, seen = budgets.document_file_bytes, set()
    if len(patterns) > budgets.patterns:
        yield fail(f"the leaf has {len(patterns)} document patterns, over the budget of {budgets.patterns}",
                   "Merge patterns with '**', or ask the Sprout operator to raise SPROUT_MAX_PATTERNS.")
        return
    for pat, hits in match_patterns(names, patterns).items():
        md = [h for h in hits if h.lower().endswith(".md")]
        if not md:
            yield fail(f"pattern {pat!r} matches no Markdown file at {commit[:12]}"
                       + (f" (it matches {len(hits)} other files)" if hits else ""),
                       "Sprout reads Markdown (.md) documents; check the pattern's folders.")
            continue
        for name in md:
            if name in seen:  # read once, however many patterns match it
                continue
            seen.add(name)
            size = git(mirror, "cat-file", "-s", f"{sha}:{name}", check=False).decode().strip()
            if not size.isdigit() or int(size) > limit:  # checked before the blob is read
                yield fail(f"document {name} is {size} bytes, over the budget of {limit:,} per file",
                           "Split it, or ask the Sprout operator to raise SPROUT_MAX_DOCUMENT_FILE_BYTES.")
                continue
            blob = git(mirror, "cat-file", "blob", f"{sha}:{name}", check=False)
            try:
                blob.decode("utf-8")
            except UnicodeDecodeError:
                yield fail(f"document {name} is not UTF-8 text")


if __name__ == "__main__":  # print the commit SHA a documents folder materialises to
    import sys

    for arg in sys.argv[1:] or ["taxonomy/documents"]:
        repo = materialize(Path(arg))
        print(git(repo, "rev-parse", "main").decode().strip(), arg)
