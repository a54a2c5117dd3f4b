"""The GitHub calls the bot makes, through PyGithub, with errors sorted into retry-or-not."""

from __future__ import annotations

import base64
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import requests
from github import Auth, Github, GithubException, GithubIntegration, RateLimitExceededException

from pipeline import __version__

from .settings import Settings

USER_AGENT = f"sprout-bot/{__version__}"  # GitHub asks for a User-Agent naming the integration
MAX_COMMENT = 65_536  # GitHub refuses longer issue comments
ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per check-run request


class GitHubError(Exception):
    """A GitHub call failed for good (4xx other than rate limits)."""


class Transient(GitHubError):
    """A GitHub call failed in a way worth retrying later (5xx, rate limit, network)."""

    def __init__(self, message: str, retry_after: float | None = None, secondary: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        # GitHub's secondary limits: without Retry-After, wait at least a minute, more each time
        self.secondary = secondary


class PermissionMissing(GitHubError):
    """GitHub answered 403: the token or App lacks a permission; the message names it."""


@dataclass
class CallStats:
    calls: dict = field(default_factory=dict)  # (method-ish name, outcome) -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, outcome: str) -> None:
        with self.lock:
            self.calls[(name, outcome)] = self.calls.get((name, outcome), 0) + 1


def _retry_after(headers: dict | None) -> float | None:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if headers.get("retry-after"):
        try:
            return float(headers["retry-after"])
        except ValueError:
            return None
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
        except ValueError:
            return None
    return None


@contextmanager
def classified(name: str, stats: CallStats | None = None) -> Iterator[None]:
    """Turn PyGithub and network exceptions into ``Transient`` or ``GitHubError``."""
    try:
        yield
        if stats:
            stats.add(name, "ok")
    except RateLimitExceededException as e:
        if stats:
            stats.add(name, "rate_limited")
        headers = {k.lower(): v for k, v in (e.headers or {}).items()}
        primary = headers.get("x-ratelimit-remaining") == "0"  # else GitHub's secondary limits
        raise Transient(f"{name}: rate limited ({e.status}{'' if primary else ', secondary rate limit'})",
                        _retry_after(e.headers), secondary=not primary) from e
    except GithubException as e:
        message = e.data.get("message", "") if isinstance(e.data, dict) else str(e.data)
        secondary = e.status in (403, 429) and ("rate limit" in message.lower() or _retry_after(e.headers))
        if e.status >= 500 or e.status == 429 or secondary:
            if stats:
                stats.add(name, "transient")
            raise Transient(f"{name}: GitHub answered {e.status} {message}".strip(), _retry_after(e.headers),
                            secondary=bool(secondary) or e.status == 429) from e
        if stats:
            stats.add(name, "error")
        kind = PermissionMissing if e.status == 403 else GitHubError
        raise kind(f"{name}: GitHub answered {e.status} {message}".strip()) from e
    # ChunkedEncodingError: the connection was cut mid-response. Retrying is safe: every write
    # first looks for what an earlier attempt may already have made (check run, comment marker).
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        if stats:
            stats.add(name, "transient")
        raise Transient(f"{name}: {type(e).__name__}: {e}") from e


class GitHub:
    """Clients per installation (App mode) or one client (token mode)."""

    def __init__(self, settings: Settings, seconds_between_writes: float | None = -1):
        self.settings = settings
        if seconds_between_writes == -1:  # not given: the setting (0 means no pacing)
            seconds_between_writes = settings.write_interval or None
        self.stats = CallStats()
        self._kw = dict(base_url=settings.api_url, timeout=15, retry=None, user_agent=USER_AGENT,
                        seconds_between_requests=None, seconds_between_writes=seconds_between_writes)
        self._clients: dict[int | None, Github] = {}
        self._lock = threading.Lock()
        self._app_auth = Auth.AppAuth(settings.app_id, settings.private_key) if settings.app_mode else None
        self._login: str | None = None

    def login(self) -> str:
        """The bot's own GitHub login: the App's bot user ('slug[bot]') or the token's owner.
        Only comments written by it are ever edited."""
        if self._login is None:
            if self._app_auth:
                with classified("get_app", self.stats):
                    self._login = f"{self.integration().get_app().slug}[bot]"
            else:
                gh = Github(auth=Auth.Token(self.settings.github_token), **self._kw)
                with classified("get_user", self.stats):
                    self._login = gh.get_user().login
        return self._login

    def client(self, installation_id: int | None = None) -> "Client":
        key = installation_id if self._app_auth else None
        with self._lock:
            gh = self._clients.get(key)
            if gh is None:
                if self._app_auth:
                    if installation_id is None:
                        raise GitHubError("App mode needs the delivery's installation id")
                    # AppInstallationAuth refreshes the token 20 s before it expires.
                    auth = self._app_auth.get_installation_auth(installation_id)
                else:
                    auth = Auth.Token(self.settings.github_token)
                gh = self._clients[key] = Github(auth=auth, **self._kw)
        return Client(gh, self.stats, app_mode=self._app_auth is not None, login=self.login)

    def integration(self) -> GithubIntegration:
        if not self._app_auth:
            raise GitHubError("not in App mode")
        return GithubIntegration(auth=self._app_auth, base_url=self.settings.api_url, timeout=15,
                                 user_agent=USER_AGENT)


@dataclass
class StatusRun:
    """Token mode's stand-in for a check run: a commit status (only Apps may write check runs)."""

    repo: str
    name: str
    head_sha: str
    id: None = None


# check-run conclusion -> commit status state
STATUS_STATE = {"success": "success", "neutral": "success", "skipped": "success", "failure": "failure",
                "cancelled": "error", "timed_out": "error", "action_required": "failure", "stale": "error"}


class Client:
    def __init__(self, gh: Github, stats: CallStats, app_mode: bool = True, login=lambda: ""):
        self.gh = gh
        self.stats = stats
        self.app_mode = app_mode
        self._login = login
        self._repos: dict = {}

    @property
    def login(self) -> str:
        """The bot's own login, asked of GitHub once (``GitHub.login``)."""
        return self._login()

    def _repo(self, full_name: str):
        if full_name not in self._repos:
            with classified("get_repo", self.stats):
                self._repos[full_name] = self.gh.get_repo(full_name)
        return self._repos[full_name]

    def pull(self, repo: str, number: int):
        with classified("get_pull", self.stats):
            return self._repo(repo).get_pull(number)

    def changed_files(self, repo: str, number: int) -> list[tuple[str, str, str | None]]:
        """(filename, status, previous filename) of every file in the pull request, all pages."""
        with classified("pull_files", self.stats):
            pr = self._repo(repo).get_pull(number)
            return [(f.filename, f.status, f.previous_filename) for f in pr.get_files()]

    def read_file(self, repo: str, path: str, ref: str, max_bytes: int) -> bytes | None:
        """A file at ``ref``; None when absent. Over ``max_bytes`` returns ``max_bytes + 1``
        bytes so that the validator reports the size."""
        try:
            with classified("get_contents", self.stats):
                content = self._repo(repo).get_contents(path, ref=ref)
        except GitHubError as e:
            if "404" in str(e):
                return None
            raise
        if isinstance(content, list):
            return None  # a folder
        if content.size > max_bytes:
            return b" " * (max_bytes + 1)  # not fetched: the validator only needs to see the size
        return base64.b64decode(content.content) if content.content else b""

    def find_check_run(self, repo: str, name: str, head_sha: str):
        if not self.app_mode:
            return None
        with classified("list_check_runs", self.stats):
            runs = list(self._repo(repo).get_commit(head_sha).get_check_runs(check_name=name))
        return runs[0] if runs else None

    def start_check_run(self, repo: str, name: str, head_sha: str, title: str, summary: str,
                        details_url: str | None = None):
        """The check run named ``name`` for ``head_sha``, reused if it exists (idempotent). In
        token mode a pending commit status of that name instead."""
        if not self.app_mode:
            self._status(repo, head_sha, "pending", name, title)
            return StatusRun(repo, name, head_sha)
        run = self.find_check_run(repo, name, head_sha)
        output = {"title": title, "summary": summary}
        if run is None:
            kw = {"details_url": details_url} if details_url else {}
            with classified("create_check_run", self.stats):
                return self._repo(repo).create_check_run(name=name, head_sha=head_sha,
                                                         status="in_progress", output=output, **kw)
        with classified("update_check_run", self.stats):
            run.edit(status="in_progress", output=output)
        return run

    def finish_check_run(self, run, conclusion: str, title: str, summary: str,
                         annotations: list[dict], text: str | None = None) -> None:
        """Complete a check run, sending annotations in batches of at most 50 (GitHub's limit).
        In token mode: the commit status's final state (the comment carries the findings)."""
        if isinstance(run, StatusRun):
            self._status(run.repo, run.head_sha, STATUS_STATE.get(conclusion, "error"), run.name, title)
            return
        batches = [annotations[i:i + ANNOTATIONS_PER_REQUEST]
                   for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST)] or [[]]
        summary = summary[:MAX_COMMENT - 100]
        for batch in batches[:-1]:
            with classified("update_check_run", self.stats):
                run.edit(output={"title": title, "summary": summary, "annotations": batch})
        output = {"title": title, "summary": summary, "annotations": batches[-1]}
        if text:
            output["text"] = text[:MAX_COMMENT - 100]
        with classified("update_check_run", self.stats):
            run.edit(status="completed", conclusion=conclusion, output=output)

    def _status(self, repo: str, sha: str, state: str, context: str, description: str) -> None:
        with classified("create_status", self.stats):
            self.gh.requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/statuses/{sha}",
                input={"state": state, "description": (description or "")[:140], "context": context})

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> list[int]:
        """One comment (or, over 65,536 characters, one per part), found by a hidden marker and
        edited in place: a rerun never adds a second comment. Only the bot's own comments count:
        anyone can paste the marker into theirs."""
        parts = split_comment(body, marker)
        me = self.login.lower()
        with classified("list_comments", self.stats):
            issue = self._repo(repo).get_issue(number)
            existing = {}
            for c in issue.get_comments():
                if (c.user.login if c.user else "").lower() != me:
                    continue
                # the marker is the first line, exactly: one quoted further down (a leaf's text
                # echoed in the bot's own validation comment) marks nothing
                m = re.fullmatch(rf"<!-- {re.escape(marker)}(?::(\d+))? -->", (c.body or "").split("\n", 1)[0])
                if m:
                    existing.setdefault(int(m.group(1) or 1), c)
        ids = []
        for i, part in enumerate(parts, 1):
            c = existing.pop(i, None)
            if c is not None:
                if c.body != part:
                    with classified("edit_comment", self.stats):
                        c.edit(part)
                ids.append(c.id)
            else:
                with classified("create_comment", self.stats):
                    ids.append(issue.create_comment(part).id)
        for index, stale in existing.items():  # the report got shorter: empty the extra parts
            with classified("edit_comment", self.stats):
                stale.edit(f"<!-- {marker}:{index} -->\n_(nothing more: see the comment above)_")
        return ids

    def reply(self, repo: str, number: int, body: str) -> int:
        with classified("create_comment", self.stats):
            return self._repo(repo).get_issue(number).create_comment(body[:MAX_COMMENT]).id

    def react(self, repo: str, number: int, comment_id: int, content: str) -> None:
        with classified("create_reaction", self.stats):
            self._repo(repo).get_issue(number).get_comment(comment_id).create_reaction(content)

    def permission(self, repo: str, login: str) -> str:
        """admin, maintain, write, triage, read or none."""
        with classified("get_collaborator_permission", self.stats):
            _, data = self.gh.requester.requestJsonAndCheck(
                "GET", f"/repos/{repo}/collaborators/{login}/permission")
        return (data or {}).get("role_name") or (data or {}).get("permission") or "none"

    def in_team(self, team: str, login: str) -> bool:
        """Raises ``PermissionMissing`` when GitHub refuses the lookup (the App needs
        Organization permission *Members: read*; a token, read:org)."""
        org, slug = team.split("/", 1)
        try:
            with classified("get_team_membership", self.stats):
                t = self.gh.get_organization(org).get_team_by_slug(slug)
                membership = t.get_team_membership(login)
        except GitHubError as e:  # PermissionMissing (403) is re-raised below, as every non-404
            if "404" in str(e):
                return False
            raise
        return membership.state == "active"


def split_comment(body: str, marker: str, limit: int = MAX_COMMENT) -> list[str]:
    """Split a long body at line breaks into parts that each fit one GitHub comment, each
    carrying its own marker."""
    head = f"<!-- {marker} -->\n"
    if len(head) + len(body) <= limit:
        return [head + body]
    parts, current = [], ""
    room = limit - len(f"<!-- {marker}:999 -->\n") - 40
    for line in body.splitlines(keepends=True):
        while len(line) > room:  # a single huge line: hard-cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:room])
            line = line[room:]
        if len(current) + len(line) > room:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    n = len(parts)
    return [(f"<!-- {marker} -->\n" if i == 1 else f"<!-- {marker}:{i} -->\n") + p
            + (f"\n_(part {i} of {n})_" if n > 1 else "") for i, p in enumerate(parts, 1)]
