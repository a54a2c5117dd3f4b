"""What the emulated GitHub knows: repositories, commits, pull requests, checks, comments."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field


def iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t if t is not None else time.time()))


@dataclass
class Pull:
    number: int
    head_sha: str
    base_sha: str
    head_ref: str = "feature"
    base_ref: str = "main"
    title: str = "Add a leaf"
    user: str = "contributor"
    state: str = "open"
    merged: bool = False
    merge_sha: str | None = None
    fork: bool = False
    files: list = field(default_factory=list)  # dicts: filename, status, previous_filename?
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)  # GitHub bumps it on every push


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str = "main"
    commits: dict = field(default_factory=dict)  # sha -> {path: bytes}
    pulls: dict = field(default_factory=dict)
    permissions: dict = field(default_factory=dict)  # login -> admin|maintain|write|triage|read
    check_runs: dict = field(default_factory=dict)  # id -> dict
    annotations: dict = field(default_factory=dict)  # check run id -> list
    comments: dict = field(default_factory=dict)  # id -> dict (issue comments)
    reactions: list = field(default_factory=list)
    statuses: list = field(default_factory=list)  # commit statuses, oldest first

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ids = itertools.count(1000)
        self.repos: dict[str, Repo] = {}
        self.teams: dict[tuple[str, str], set[str]] = {}
        self.installations: dict[int, str] = {}  # id -> account login
        self.tokens: dict[str, float] = {}  # token -> expiry
        self.app_slug = "sprout-bot"
        self.token_user = "sprout-maintainer"  # whom a personal token (ghp_...) belongs to
        # what an installation token may do; GitHub answers 403 for team lookups without members
        self.installation_permissions = {"checks": "write", "contents": "read", "pull_requests": "write",
                                         "issues": "write", "metadata": "read", "statuses": "write"}
        self.hook_deliveries: list[dict] = []  # GET /app/hook/deliveries
        self.redelivery_requests: list[int] = []
        self.calls: list[tuple[str, str, int]] = []
        self.git: dict = {}  # full name -> bare repository served over HTTP

    def next_id(self) -> int:
        return next(self.ids)

    def repo(self, full_name: str) -> Repo | None:
        return self.repos.get(full_name)
