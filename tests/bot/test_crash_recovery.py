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
    def __init__(self, emulator, db, pem, **env_extra):
        self.port = free_port()
        env = {**os.environ, "SPROUT_WEBHOOK_SECRET": SECRET, "SPROUT_GITHUB_APP_ID": "12345",
               "SPROUT_GITHUB_PRIVATE_KEY": pem,
               "SPROUT_GITHUB_API_URL": emulator.url, "SPROUT_DATABASE_URL": f"sqlite:///{db}",
               "SPROUT_LEASE_SECONDS": "2", **env_extra}
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


def worker_pids(db):
    try:
        with sqlite3.connect(db) as c:
            return [r[0] for r in c.execute("SELECT pid FROM worker_stats")]
    except sqlite3.OperationalError:  # the table is created with the store
        return []


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_kill_9_of_the_intake_under_load_loses_no_acknowledged_delivery(emulator, tmp_path, pem):
    """The load generator (its own process) sends 150 deliveries/s; the intake is killed with
    SIGKILL in the middle. Every delivery that got its 202 is in the store, its worker process
    does not outlive it, and a restarted bot handles every stored delivery."""
    db = tmp_path / "bot.db"
    for n in range(1, 11):
        emulator.add_pull(REPO, n, "b" * 40, f"{n:x}" * 40, {},
                          {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    bot = BotProcess(emulator, db, pem, SPROUT_GITHUB_WRITE_INTERVAL="0")
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({
        "host": "127.0.0.1", "port": bot.port, "rate": 150, "seconds": 4, "secret": SECRET,
        "bodies": [json.dumps(pr_payload("opened", n, f"{n:x}" * 40)) for n in range(1, 11)]}))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    load = subprocess.Popen([sys.executable, os.path.join(root, "bench", "_load.py"), str(spec), str(out)])
    try:
        wait_for(lambda: worker_pids(db), timeout=20)  # the worker process reported in
        worker = worker_pids(db)[0]
        wait_for(lambda: len(statuses(db)) >= 200, timeout=20)
        # Hold SQLite's write lock for a moment before the kill: deliveries arriving now wait
        # for their commit, and an intake that answered before its commit would lose them.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(0.5)
        bot.kill9()
        blocker.execute("ROLLBACK")
        blocker.close()
        assert load.wait(60) == 0
    finally:
        bot.stop()
        if load.poll() is None:
            load.kill()
    result = json.loads(out.read_text())
    acked = set(result["acked"])
    stored = statuses(db)
    assert len(acked) >= 200 and result["sent"] - len(acked) > 0  # the kill did cut the load short
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged deliveries lost"
    wait_for(lambda: not pid_alive(worker), timeout=15)  # the orphaned worker stopped by itself
    bot = BotProcess(emulator, db, pem, SPROUT_GITHUB_WRITE_INTERVAL="0")
    try:
        wait_for(lambda: set(statuses(db).values()) <= {"done"}, timeout=120)
    finally:
        bot.stop()
    assert len(statuses(db)) == len(set(stored))


@pytest.mark.slow
def test_the_worker_process_is_restarted_and_reports_to_metrics(emulator, tmp_path, pem):
    db = tmp_path / "bot.db"
    for n in (1, 2):
        emulator.add_pull(REPO, n, "b" * 40, f"{n}" * 40, {},
                          {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    bot = BotProcess(emulator, db, pem, SPROUT_GITHUB_WRITE_INTERVAL="0")
    url = f"http://127.0.0.1:{bot.port}"
    try:
        assert bot.deliver("pull_request", pr_payload("opened", 1, "1" * 40), "one").status_code == 202
        wait_for(lambda: statuses(db).get("one") == "done")
        wait_for(lambda: "sprout_handler_seconds_count 1" in httpx.get(url + "/metrics").text, timeout=10)
        first = worker_pids(db)[0]
        assert pid_alive(first) and first != bot.proc.pid  # the work runs in its own process
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: httpx.get(url + "/healthz").status_code == 503, timeout=10)
        wait_for(lambda: httpx.get(url + "/healthz").status_code == 200, timeout=20)  # restarted
        assert bot.deliver("pull_request", pr_payload("opened", 2, "2" * 40), "two").status_code == 202
        wait_for(lambda: statuses(db).get("two") == "done")
        wait_for(lambda: worker_pids(db) and worker_pids(db)[0] != first, timeout=10)
    finally:
        bot.stop()
    assert len(emulator.check_runs(REPO)) == 2
