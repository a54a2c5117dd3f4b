"""kill -9 the bot mid-delivery and restart it: nothing lost, no duplicate effects."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from bot.signature import sign
from tests.bot.conftest import REPO, SECRET, free_port, pr_payload
from tests.github_emulator import Fault
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

LEAF = "compositional_skills/math/arithmetic/qna.yaml"


class BotProcess:
    def __init__(self, emulator, db, pem):
        self.port = free_port()
        env = {**os.environ, "SPROUT_WEBHOOK_SECRET": SECRET, "SPROUT_GITHUB_APP_ID": "12345",
               "SPROUT_GITHUB_PRIVATE_KEY": pem,
               "SPROUT_GITHUB_API_URL": emulator.url, "SPROUT_DATABASE_URL": f"sqlite:///{db}",
               "SPROUT_LEASE_SECONDS": "2"}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bot", "serve", "--port",
                                      str(self.port), "--no-retrain", "--log-level", "warning"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                assert time.time() < deadline, "bot did not start"
                time.sleep(0.1)

    def deliver(self, event, payload, delivery):
        body = json.dumps(payload).encode()
        return httpx.post(f"http://127.0.0.1:{self.port}/webhook", content=body, timeout=10, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body, SECRET)})

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def statuses(db):
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT id, status FROM deliveries").fetchall())


def wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_kill_9_mid_delivery_then_restart(emulator, tmp_path, pem):
    db = tmp_path / "bot.db"
    for n in (1, 2, 3):
        emulator.add_pull(REPO, n, "b" * 40, f"{n}" * 40, {}, {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    # The check-run creation hangs for 3 s and then happens anyway: the bot dies not knowing.
    emulator.inject(Fault("POST", r"/check-runs$", status=0, delay=3, times=1))
    bot = BotProcess(emulator, db, pem)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    try:
        for n, d in zip((1, 2, 3), ids):
            assert bot.deliver("pull_request", pr_payload("opened", n, f"{n}" * 40), d).status_code == 202
        wait_for(lambda: "running" in statuses(db).values())
        bot.kill9()
        assert set(statuses(db)) == set(ids)  # every acknowledged delivery survived the kill
    finally:
        bot.stop()
    time.sleep(3.5)  # the hung request finishes (or not) while the bot is down
    bot = BotProcess(emulator, db, pem)
    try:
        wait_for(lambda: set(statuses(db).values()) == {"done"})
    finally:
        bot.stop()
    runs = emulator.check_runs(REPO)
    assert sorted(r["head_sha"][0] for r in runs) == ["1", "2", "3"]  # one per PR: none duplicated
    assert all(r["conclusion"] == "success" for r in runs)
    for n in (1, 2, 3):
        assert len(emulator.comments(REPO, n)) == 1
