"""Jobs on a real local Ray head: they never see the bot's secrets, are never submitted twice,
and are never stuck (lost jobs are reported; a bot killed with -9 finds its head and job again)."""

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

from bot.dispatch import Dispatcher, LocalRayHead, _group_alive
from bot.github import GitHub
from bot.signature import sign
from bot.store import Store
from tests.bot.conftest import REPO, SECRET, free_port, pr_payload

pytestmark = pytest.mark.slow

SECRETS = {"SPROUT_GITHUB_TOKEN": "ghp_SECRET_token_123", "SPROUT_WEBHOOK_SECRET": "whsec_SECRET_456",
           "SPROUT_GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----SECRET789",
           "GITHUB_TOKEN": "ghs_SECRET_actions", "HF_TOKEN": "hf_SECRET"}


def wait(predicate, timeout=90, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_jobs_never_see_the_bots_secrets(monkeypatch, tmp_path, emulator, settings):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SPROUT_DOCUMENT_HOSTS", "docs.example.org")  # job settings do pass
    head = LocalRayHead(num_cpus=1, state_file=tmp_path / "head.json")
    head.start()
    try:
        from ray.job_submission import JobSubmissionClient
        client = JobSubmissionClient(head.address)
        job = client.submit_job(entrypoint="python -c \"import os, json; print('ENV=' + json.dumps(dict(os.environ)))\"")
        wait(lambda: str(client.get_job_status(job)) in ("SUCCEEDED", "FAILED"), what="the env job")
        logs = client.get_job_logs(job)
        env = json.loads(logs.rsplit("ENV=", 1)[1].splitlines()[0])
        for name, value in SECRETS.items():
            assert name not in env and value not in logs, name
        assert env.get("SPROUT_DOCUMENT_HOSTS") == "docs.example.org"
        assert json.loads((tmp_path / "head.json").read_text())["address"] == head.address
    finally:
        head.stop()
    assert not (tmp_path / "head.json").exists()


def test_lost_and_half_submitted_jobs(ray_head, emulator, settings, tmp_path):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {})
    for sha in ("l", "k", "q"):
        emulator.add_commit(REPO, sha * 40, {})
    store = Store(tmp_path / "d.db")
    s = settings.__class__(**{**settings.__dict__, "retrain_entrypoint": "python -c \"print('ran {sha}')\""})
    d = Dispatcher(store, GitHub(s, seconds_between_writes=None), s, address=ray_head.address, poll=0.2, lost_after=3)
    # a job the bot believed running, which Ray does not know (its head was restarted)
    lost = store.add_job(REPO, 1, "l" * 40, "retrain", 42, status="running")
    store.update_job(lost, ray_job_id=f"sprout-retrain-{lost}-gone-{uuid.uuid4().hex[:6]}")
    # the bot crashed after Ray accepted a submission and before recording it
    half = store.add_job(REPO, 1, "k" * 40, "preview", 42, status="submitting")
    sub = f"sprout-preview-{half}-{uuid.uuid4().hex[:6]}"
    store.update_job(half, submission_id=sub)
    d.client().submit_job(entrypoint="python -c \"print('half ran')\"", submission_id=sub)
    # and a retrain queued behind the lost one
    queued = d.request(REPO, 1, "q" * 40, 42, trigger="merge")
    for _ in range(4):
        d.tick()
        time.sleep(0.2)
    assert store.job(lost)["status"] == "lost" and "no longer knows" in store.job(lost)["detail"]
    wait(lambda: (d.tick(), store.job(queued)["status"] == "succeeded")[1], what="the queue to move on")
    wait(lambda: (d.tick(), store.job(half)["status"] == "succeeded")[1], what="the half-submitted job")
    # submitted once: Ray has exactly one job with that submission id
    assert sum(j.submission_id == sub for j in d.client().list_jobs()) == 1
    bodies = [c["body"] for c in emulator.comments(REPO, 1)]
    assert any("lost" in b and "no longer knows" in b for b in bodies)


class BotProcess:
    def __init__(self, emulator, db, pem, entrypoint):
        self.port = free_port()
        env = {**os.environ, "SPROUT_WEBHOOK_SECRET": SECRET, "SPROUT_GITHUB_APP_ID": "12345",
               "SPROUT_GITHUB_PRIVATE_KEY": pem, "SPROUT_GITHUB_API_URL": emulator.url,
               "SPROUT_DATABASE_URL": f"sqlite:///{db}", "SPROUT_RETRAIN_ENTRYPOINT": entrypoint}
        env.pop("RAY_ADDRESS", None)
        self.log = db.parent / f"bot-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bot", "serve", "--port",
                                          str(self.port), "--log-level", "warning"],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        wait(self._up, 60, "the bot")

    def _up(self):
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert self.proc.poll() is None, "bot exited"
            return False

    def deliver(self, event, payload):
        body = json.dumps(payload).encode()
        return httpx.post(f"http://127.0.0.1:{self.port}/webhook", content=body, timeout=10, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET)})


def jobs(db):
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute("SELECT * FROM jobs")]


def test_kill_9_with_a_job_running_finds_the_job_again(emulator, tmp_path, pem):
    db = tmp_path / "bot.db"
    state = tmp_path / "ray-head.json"
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {}, state="closed", merged=True, merge_sha="m" * 40)
    emulator.add_commit(REPO, "m" * 40, {})
    entry = "python -c \"import time; time.sleep(12); print('trained {sha}')\""
    bot = BotProcess(emulator, db, pem, entry)
    try:
        bot.deliver("pull_request", pr_payload("closed", 1, "h" * 40, merged=True, merge_sha="m" * 40))
        try:
            wait(lambda: jobs(db) and jobs(db)[0]["status"] == "running", 120, "the job to run")
        except AssertionError:
            raise AssertionError(f"{jobs(db)}\n{bot.log.read_text()[-3000:]}") from None
        head = json.loads(state.read_text())
        bot.proc.send_signal(signal.SIGKILL)
        bot.proc.wait(10)
        os.killpg(head["pgid"], 0)  # the head outlived the bot...
        bot = BotProcess(emulator, db, pem, entry)  # ...and the restarted bot takes it back
        [job] = wait(lambda: [j for j in jobs(db) if j["status"] == "succeeded"], 120, "the job to finish")
        assert json.loads(state.read_text())["pgid"] == head["pgid"]  # reused, not restarted
        assert any(f"trained {'m' * 40}" in c["body"] for c in emulator.comments(REPO, 1))
    finally:
        bot.proc.terminate()  # a clean stop stops the head it owns
        bot.proc.wait(60)
    assert not state.exists()
    wait(lambda: not _group_alive(head["pgid"]), 30, "the head to stop")
