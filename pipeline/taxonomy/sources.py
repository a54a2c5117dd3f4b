"""Where a knowledge leaf's documents may come from, and git run safely on values from a leaf.

A leaf is written by anyone who opens a pull request, so its ``document.repo`` and
``document.commit`` are attacker-controlled. They are data, never arguments: a repository is
either an ``https://`` URL on an allow-listed host or a folder inside the taxonomy checkout; a
commit that git could read as an option is refused; every git call puts such values after
``--end-of-options``; git may speak only the protocols we chose, follows no redirects, and is
stopped when it takes too long or fetches too much.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..cachecap import size_of

DEFAULT_HOSTS = ("github.com",)
HOSTS_ENV = "SPROUT_DOCUMENT_HOSTS"
FETCH_TIMEOUT = 300.0  # seconds; SPROUT_DOCUMENT_FETCH_TIMEOUT
FETCH_MAX_BYTES = 500 * 1024 * 1024  # growth of the mirror in one fetch; SPROUT_DOCUMENT_FETCH_MAX_BYTES
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{4,63}$")
# A ref name we would pass to ls-remote: git's own rules, a little stricter.
_REF = re.compile(r"^(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9_][A-Za-z0-9_./+-]{0,254}$")


class SourceError(Exception):
    """A document source is not allowed, or git could not read it safely."""


class FetchLimit(SourceError):
    """A fetch was stopped: it took too long or brought too much."""


def commit_problem(commit: object) -> str | None:
    """Why a ``document.commit`` value must never reach git, or None. Other non-SHA values
    (short SHAs, ``HEAD``, branch names) are only discouraged: real leaves use them."""
    if not isinstance(commit, str):
        return None  # the schema reports it
    if commit.startswith("-"):
        return (f"commit {commit!r} starts with '-', so git would read it as an option; "
                "a commit is a SHA")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in commit):
        return f"commit {commit!r} holds whitespace or control characters; a commit is a SHA"
    return None


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        default = {"https": 443, "http": 80}.get(scheme)
        return (self.scheme == scheme and self.host == host
                and (self.port or default) == (port or default))


def allowed_origins(env: dict | None = None) -> list[Origin]:
    """github.com, plus each ``SPROUT_DOCUMENT_HOSTS`` entry (comma separated): a host name
    (https) or an origin ``scheme://host[:port]`` (for a mirror or a test server)."""
    env = os.environ if env is None else env
    out = [Origin("https", h, None) for h in DEFAULT_HOSTS]
    for entry in (env.get(HOSTS_ENV) or "").split(","):
        entry = entry.strip().lower().rstrip("/")
        if not entry:
            continue
        if "://" not in entry:
            entry = "https://" + entry
        parts = urlsplit(entry)
        if parts.scheme in ("https", "http") and parts.hostname and not parts.path and not parts.username:
            out.append(Origin(parts.scheme, parts.hostname, parts.port))
    return out


@dataclass(frozen=True)
class Source:
    """A document repository we may read: a remote URL, or a folder inside the taxonomy."""

    url: str | None = None
    folder: Path | None = None
    history: bool = False
    """``folder`` is the taxonomy's own git repository: commits are read from its objects."""

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme if self.url else "file"


def resolve_source(repo: str, taxonomy_root: Path, env: dict | None = None) -> Source:
    """Check ``document.repo`` against the rules above; raise ``SourceError`` saying why not."""
    if not isinstance(repo, str) or not repo.strip():
        raise SourceError("document.repo is empty")
    if repo != repo.strip() or any(ord(c) < 32 or ord(c) == 127 for c in repo):
        raise SourceError(f"document.repo {repo!r} holds whitespace or control characters")
    if repo.startswith("-"):
        raise SourceError(f"document.repo {repo!r} starts with '-'")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo):
        parts = urlsplit(repo)
        try:
            port = parts.port
        except ValueError:
            raise SourceError(f"document.repo {repo!r} has an invalid port") from None
        host = (parts.hostname or "").lower()
        if parts.username or parts.password:
            raise SourceError(f"document.repo {repo!r} carries credentials; documents come from "
                              "public repositories")
        if parts.query or parts.fragment:
            raise SourceError(f"document.repo {repo!r} has a query or fragment")
        if not any(o.allows(parts.scheme.lower(), host, port) for o in allowed_origins(env)):
            hosts = ", ".join(f"{o.scheme}://{o.host}" + (f":{o.port}" if o.port else "")
                              for o in allowed_origins(env))
            raise SourceError(f"document.repo {repo!r} is not on an allowed host ({hosts}); "
                              f"a Sprout operator can add hosts with {HOSTS_ENV}")
        return Source(url=repo)
    if _scp_like(repo) or re.match(r"^[A-Za-z]:[\\/]", repo):
        raise SourceError(f"document.repo {repo!r}: only https:// URLs or folders inside the "
                          "taxonomy are allowed")
    if repo.startswith(("/", "\\", "~")):
        raise SourceError(f"document.repo {repo!r} is an absolute path; a folder must be "
                          "relative to the taxonomy root")
    if ".." in re.split(r"[\\/]", repo):
        raise SourceError(f"document.repo {repo!r} climbs out of the taxonomy with '..'")
    root = Path(taxonomy_root).resolve()
    try:
        folder = (root / repo).resolve()  # follows symlinks: a link out of the checkout is caught here
        if not folder.is_relative_to(root):
            raise SourceError(f"document.repo {repo[:80]!r} leads outside the taxonomy checkout")
        if not folder.is_dir():
            raise SourceError(f"document.repo {repo[:80]!r} is not a folder of the taxonomy")
    except OSError as e:  # a name too long, a loop of links: a finding, never a crash
        raise SourceError(f"document.repo {repo[:80]!r} cannot be read: {e.strerror}") from None
    own = own_repository(root)
    if own is not None and (folder == own or (repo.rstrip("/") == "." and folder == root)):
        return Source(folder=own, history=True)
    return Source(folder=folder)


def own_repository(taxonomy_root: Path) -> Path | None:
    """The top of the git checkout holding the taxonomy, or None. Only a real ``.git`` folder
    counts (git never checks out a path named .git, so a pull request cannot plant one; a ``.git``
    file pointing elsewhere is ignored)."""
    root = Path(taxonomy_root).resolve()
    for candidate in (root, *root.parents):
        dot_git = candidate / ".git"
        if dot_git.is_symlink() or dot_git.is_file():
            return None
        if dot_git.is_dir():
            return candidate
    return None


def _scp_like(repo: str) -> bool:
    """``re.match(r"^[^/\\\\]+@[^:]+:", repo)`` (git's user@host:path form) in linear time: that
    regex retries every '@' and rescans to the end for a ':' ("a@a@a@...": quadratic)."""
    stop = min((i for i in (repo.find("/"), repo.find("\\")) if i >= 0), default=len(repo))
    colon, at = -1, repo.find("@", 1)
    while 0 < at < stop:
        if colon < at + 1:
            colon = repo.find(":", at + 1)
            if colon < 0:
                return False
        if colon > at + 1:
            return True
        at = repo.find("@", at + 1)
    return False


def git_env(protocols: str = "https") -> dict:
    """The environment for git on untrusted sources: no prompts, no user or system config
    (which could name helpers), only the protocols given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=protocols, GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false",
               GIT_PROTOCOL_FROM_USER="0")
    return env


SAFE_CONFIG = ("-c", "http.followRedirects=false", "-c", "protocol.allow=never",
               "-c", "protocol.https.allow=always", "-c", "http.lowSpeedLimit=1000",
               "-c", "http.lowSpeedTime=60", "-c", "core.hooksPath=/dev/null",
               "-c", "credential.helper=", "-c", "transfer.fsckObjects=true")


def fetch_bounded(mirror: Path, args: list[str], scheme: str, timeout: float | None = None,
                  max_bytes: int | None = None) -> None:
    """``git fetch`` into ``mirror``, stopped past ``timeout`` seconds or once the mirror has grown
    by ``max_bytes`` (defaults: the settings above, read now, not at import)."""
    if timeout is None:
        timeout = float(os.environ.get("SPROUT_DOCUMENT_FETCH_TIMEOUT") or FETCH_TIMEOUT)
    if max_bytes is None:
        max_bytes = int(os.environ.get("SPROUT_DOCUMENT_FETCH_MAX_BYTES") or FETCH_MAX_BYTES)
    config = list(SAFE_CONFIG)
    if scheme == "http":  # only ever for an origin an operator listed explicitly
        config += ["-c", "protocol.http.allow=always"]
    cmd = ["git", "-C", str(mirror), *config, "fetch", "-q", "--no-tags", "--no-recurse-submodules",
           *args]
    why, code, err = run_watched(cmd, git_env("https:http" if scheme == "http" else "https"), mirror,
                                 timeout, max_bytes, poll=0.1)
    if why:
        _drop_partial(mirror)
        raise FetchLimit(f"fetching the documents {why}; stopped")
    if code != 0:
        raise SourceError(f"git fetch failed: {err or code}")


def run_watched(cmd: list[str], env: dict, watch: Path, timeout: float, max_bytes: int,
                poll: float = 0.2, limits: tuple[str, str] = ("", "")) -> tuple[str | None, int, str]:
    """Run ``cmd``, killed past ``timeout`` seconds or once ``watch`` has grown by ``max_bytes``
    (checked every ``poll`` s, and once more after a quick finish). Returns (why it was stopped or
    None, exit code, last stderr line); ``limits`` names the two settings in the reason."""
    start, before = time.monotonic(), size_of(watch)
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          start_new_session=True) as proc:
        while True:
            running = proc.poll() is None
            why = None
            if time.monotonic() - start > timeout:
                why = f"took longer than {timeout:.0f}s{limits[0]}"
            elif size_of(watch) - before > max_bytes:
                why = f"is larger than {max_bytes / 1024 ** 2:.0f} MB{limits[1]}"
            if why:
                if running:
                    proc.kill()
                    proc.wait()
                return why, -1, ""
            if not running:
                break
            time.sleep(poll)
        err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()  # type: ignore[union-attr]
        return None, proc.returncode, err[-1] if err else ""




def _drop_partial(mirror: Path) -> None:
    for tmp in (mirror / "objects" / "pack").glob("tmp_*"):
        tmp.unlink(missing_ok=True)
    incoming = mirror / "objects" / "incoming"
    if incoming.exists():
        shutil.rmtree(incoming, ignore_errors=True)


def resolve_ref(url: str, ref: str, scheme: str) -> str | None:
    """The full SHA a ref name (``HEAD``, a branch, a tag) points to on the remote, or None."""
    if not _REF.match(ref):
        return None
    config = list(SAFE_CONFIG) + (["-c", "protocol.http.allow=always"] if scheme == "http" else [])
    try:
        proc = subprocess.run(["git", *config, "ls-remote", "--end-of-options", url, ref],
                              capture_output=True, timeout=60,
                              env=git_env("https:http" if scheme == "http" else "https"))
    except subprocess.TimeoutExpired:
        raise SourceError("asking the repository for its refs timed out") from None
    if proc.returncode != 0:
        return None
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        sha, _, name = line.partition("\t")
        if name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}") \
                and _FULL_SHA.match(sha):
            return sha
    return None


def is_full_sha(value: str) -> bool:
    return bool(_FULL_SHA.match(value))


def is_short_sha(value: str) -> bool:
    return bool(_SHORT_SHA.match(value))
