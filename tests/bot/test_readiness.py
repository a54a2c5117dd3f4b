"""GET /readyz (the store opens, the intake and a worker are up) and the resources a job's driver
asks Ray for (SPROUT_ENTRYPOINT_NUM_CPUS / _GPUS)."""

import time
from dataclasses import replace

import pytest

from bot.dispatch import Dispatcher
from bot.settings import Settings, SettingsError
from tests.bot.conftest import REPO, pr_payload


def test_ready_until_the_store_goes_away(bot):
    r = bot.http.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True, "problems": []})
    # The volume under the database vanishes: the open connection still answers (an unlinked
    # inode), a fresh open does not, and readiness says so while liveness cannot.
    for suffix in ("", "-wal", "-shm"):
        p = bot.settings.database_path.with_name(bot.settings.database_path.name + suffix)
        p.unlink(missing_ok=True)
    r = bot.http.get("/readyz")
    assert r.status_code == 503 and "store" in r.json()["problems"][0]


def test_not_ready_without_a_worker(bot):
    for w in bot.app.state.workers:
        w.stop()
    r = bot.http.get("/readyz")
    assert r.status_code == 503 and r.json()["problems"] == ["no worker running"]


def test_entrypoint_resources_are_settings():
    base = {"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t"}
    s = Settings.from_env(base)
    assert (s.entrypoint_num_cpus, s.entrypoint_num_gpus) == (None, None)
    s = Settings.from_env({**base, "SPROUT_ENTRYPOINT_NUM_CPUS": "2", "SPROUT_ENTRYPOINT_NUM_GPUS": "0.5"})
    assert (s.entrypoint_num_cpus, s.entrypoint_num_gpus) == (2.0, 0.5)
    for bad in ("-1", "many", "nan", "inf"):
        with pytest.raises(SettingsError, match="SPROUT_ENTRYPOINT_NUM_GPUS must be a number"):
            Settings.from_env({**base, "SPROUT_ENTRYPOINT_NUM_GPUS": bad})


class RecordingClient:
    """The part of Ray's JobSubmissionClient the dispatcher calls on submit."""

    def __init__(self):
        self.submitted = []

    def get_job_info(self, submission_id):
        raise RuntimeError("Request failed with status code 404: job does not exist")

    def submit_job(self, **kw):
        self.submitted.append(kw)
        return kw["submission_id"]


@pytest.mark.parametrize("cpus,gpus,expected", [
    (None, None, {}),
    (1.0, None, {"entrypoint_num_cpus": 1.0}),
    (2.0, 1.0, {"entrypoint_num_cpus": 2.0, "entrypoint_num_gpus": 1.0}),
])
def test_dispatch_asks_ray_for_the_driver_resources(settings, cpus, gpus, expected, tmp_path):
    from bot.github import GitHub
    from bot.store import Store
    s = replace(settings, entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus)
    d = Dispatcher(Store(tmp_path / "bot.db"), GitHub(s, seconds_between_writes=None), s, address="127.0.0.1:1")
    d._client = client = RecordingClient()
    d.request(REPO, 1, "a" * 40, None)
    [kw] = client.submitted
    assert {k: v for k, v in kw.items() if k.startswith("entrypoint_num")} == expected


@pytest.mark.slow
def test_a_driver_that_needs_a_gpu_waits_for_one(make_bot, settings, emulator, ray_head):
    """On a real (CPU-only) head: a driver asking for a GPU is not started on a node without one,
    and Ray says it waits for resources."""
    from ray.job_submission import JobSubmissionClient
    s = replace(settings, retrain_entrypoint="python -c \"print('ran')\"", entrypoint_num_cpus=1.0,
                entrypoint_num_gpus=1.0)
    bot = make_bot(s, dispatcher=lambda store, gh: Dispatcher(store, gh, s, address=ray_head.address, poll=0.3))
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {}, state="closed", merged=True, merge_sha="m" * 40)
    emulator.add_commit(REPO, "m" * 40, {})
    bot.deliver("pull_request", pr_payload("closed", 1, "h" * 40, merged=True, merge_sha="m" * 40))
    client = JobSubmissionClient(ray_head.address)
    deadline = time.time() + 60
    while not any(j["status"] == "running" for j in bot.store.jobs()):  # submitted to Ray
        assert time.time() < deadline
        time.sleep(0.2)
    [job] = bot.store.jobs()
    time.sleep(3)
    info = client.get_job_info(job["submission_id"])
    # Ray words this only for a job submitted with entrypoint resources; a one-line print would
    # have finished by now on a free CPU.
    assert str(info.status) in ("PENDING", "JobStatus.PENDING"), info.status
    assert "waiting for resources" in info.message, info.message
    client.stop_job(job["submission_id"])
