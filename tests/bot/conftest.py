"""Shared bot fixtures: the GitHub emulator, the real app under uvicorn, signed deliveries."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from bot.app import create_app
from bot.github import GitHub
from bot.settings import Settings
from bot.signature import sign
from bot.store import Store
from tests.conftest import ROOT
from tests.github_emulator import Emulator
from tests.github_emulator.state import iso

SECRET = "test-secret-0123456789"
REPO = "octo-org/taxonomy"


@pytest.fixture
def emulator():
    with Emulator() as emu:
        emu.add_repo(REPO, permissions={"maintainer": "maintain", "writer": "write", "admin": "admin"})
        emu.state.installations[42] = "octo-org"
        yield emu


@pytest.fixture
def settings(emulator, tmp_path, pem) -> Settings:
    """GitHub App mode: the only mode in which GitHub lets the bot write check runs."""
    return Settings(webhook_secret=SECRET, app_id=12345, private_key=pem, api_url=emulator.url,
                    database_url=f"sqlite:///{tmp_path}/bot.db", max_attempts=5, lease_seconds=5)


@pytest.fixture
def token_settings(settings) -> Settings:
    """Token mode (a personal or fine-grained token): commit statuses instead of check runs."""
    return replace(settings, github_token="ghp_test", app_id=None, private_key=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bot:
    """The real app served by uvicorn on loopback, with its worker thread."""

    def __init__(self, settings: Settings, dispatcher=None, **kw):
        self.settings = settings
        self.store = Store(settings.database_path)
        self.github = GitHub(settings, seconds_between_writes=None)
        if callable(dispatcher):  # a factory sharing this bot's store and GitHub
            dispatcher = dispatcher(self.store, self.github)
        self.dispatcher = dispatcher
        self.app = create_app(settings, store=self.store, github=self.github, dispatcher=dispatcher, **kw)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 15
        while not self.server.started:
            assert time.time() < deadline, "bot did not start"
            time.sleep(0.01)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def deliver(self, event: str, payload: dict | bytes, delivery: str | None = None,
                signature: str | None = None, headers: dict | None = None) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
             "X-Hub-Signature-256": signature if signature is not None else sign(body, self.settings.webhook_secret),
             "Content-Type": "application/json", **(headers or {})}
        return self.http.post("/webhook", content=body, headers={k: v for k, v in h.items() if v != ""})

    def wait_idle(self, timeout: float = 30) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            counts = self.store.counts()
            if not counts.get("pending") and not counts.get("running"):
                return counts
            time.sleep(0.05)
        raise AssertionError(f"deliveries still pending: {self.store.counts()} {self.store.recent(5)}")

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def make_bot():
    bots = []

    def make(settings: Settings, **kw) -> Bot:
        b = Bot(settings, **kw)
        bots.append(b)
        return b
    yield make
    for b in bots:
        b.close()


@pytest.fixture
def bot(make_bot, settings) -> Bot:
    return make_bot(settings)


@pytest.fixture(scope="module")
def pem() -> str:
    """A GitHub App private key (generated: the emulator checks the JWT it signs)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head on loopback (the bot's own kind), one per test module."""
    pytest.importorskip("ray")
    from bot.dispatch import LocalRayHead
    head = LocalRayHead(num_cpus=2)
    head.start()
    yield head
    head.stop()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr("bot.worker.backoff", lambda attempt: 0.05)


# -- payloads ---------------------------------------------------------------------------
SHARED_PAYLOADS = ROOT.parent / "shared" / "github" / "payloads"


def pr_payload(action: str, number: int, head_sha: str, base_sha: str = "b" * 40, merged: bool = False,
               merge_sha: str | None = None, installation: int | None = 42) -> dict:
    """A pull_request delivery in GitHub's shape: a real captured payload with our values."""
    path = SHARED_PAYLOADS / "pull_request.opened.cogni_real.json"
    payload = json.loads(path.read_text()) if path.exists() else {"pull_request": {"head": {}, "base": {}}, "repository": {}}
    payload["action"] = action
    payload["number"] = number
    pr = payload["pull_request"]
    pr.update(number=number, merged=merged, merge_commit_sha=merge_sha, state="closed" if action == "closed" else "open",
              updated_at=iso())
    pr["head"]["sha"], pr["base"]["sha"] = head_sha, base_sha
    payload["repository"]["full_name"] = REPO
    payload["repository"]["name"] = REPO.split("/")[1]
    if installation is None:
        payload.pop("installation", None)
    else:
        payload["installation"] = {"id": installation, "node_id": "x"}
    return payload


def comment_payload(comment: dict, number: int, author: str, action: str = "created",
                    author_type: str = "User", installation: int | None = 42) -> dict:
    path = SHARED_PAYLOADS / "issue_comment.created.on_pr.flutter_cocoon.json"
    payload = json.loads(path.read_text()) if path.exists() else {"issue": {}, "comment": {}, "repository": {}}
    payload["action"] = action
    payload["issue"].update(number=number, pull_request={"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"})
    payload["comment"].update(id=comment["id"], body=comment["body"], created_at=comment.get("created_at", iso()),
                              updated_at=comment.get("updated_at", iso()),
                              user={"login": author, "type": author_type, "id": 1})
    payload["repository"]["full_name"] = REPO
    if installation is not None:
        payload["installation"] = {"id": installation}
    return payload
