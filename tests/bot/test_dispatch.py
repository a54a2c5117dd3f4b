"""Merge -> a real Ray job on a local head through the Jobs API -> results on the PR."""

import time
from dataclasses import replace

import pytest

from bot.dispatch import Dispatcher
from tests.bot.conftest import REPO, comment_payload, pr_payload

pytestmark = pytest.mark.slow


def bot_with(make_bot, settings, ray_head, entrypoint):
    s = replace(settings, retrain_entrypoint=entrypoint)
    return make_bot(s, dispatcher=lambda store, gh: Dispatcher(store, gh, s, address=ray_head.address, poll=0.3))


def wait_job(bot, statuses, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = bot.store.jobs()
        if jobs and all(j["status"] in statuses for j in jobs):
            return jobs
        time.sleep(0.3)
    raise AssertionError(bot.store.jobs())


def merge(emulator, number, sha):
    emulator.add_pull(REPO, number, "b" * 40, "h" * 40, {}, {}, state="closed", merged=True, merge_sha=sha)
    emulator.add_commit(REPO, sha, {})


def test_merged_pr_runs_a_ray_job_and_posts_results(make_bot, settings, emulator, ray_head):
    bot = bot_with(make_bot, settings, ray_head, "python -c \"print('sprout trained {sha} for {repo}')\"")
    merge(emulator, 1, "m" * 40)
    bot.deliver("pull_request", pr_payload("closed", 1, "h" * 40, merged=True, merge_sha="m" * 40))
    [job] = wait_job(bot, {"succeeded"})
    assert job["ray_job_id"].startswith("sprout-")
    [run] = [r for r in emulator.check_runs(REPO) if r["name"] == "sprout/retrain"]
    assert (run["head_sha"], run["conclusion"]) == ("m" * 40, "success")
    [comment] = emulator.comments(REPO, 1)
    assert f"sprout trained {'m' * 40} for {REPO}" in comment["body"]


def test_failing_job_posts_the_log_tail(make_bot, settings, emulator, ray_head):
    bot = bot_with(make_bot, settings, ray_head,
                   "python -c \"import sys; print('stage generate failed: teacher unreachable'); sys.exit(3)\"")
    merge(emulator, 2, "n" * 40)
    bot.deliver("pull_request", pr_payload("closed", 2, "h" * 40, merged=True, merge_sha="n" * 40))
    wait_job(bot, {"failed"})
    [run] = [r for r in emulator.check_runs(REPO) if r["name"] == "sprout/retrain"]
    assert run["conclusion"] == "failure"
    assert "teacher unreachable" in emulator.comments(REPO, 2)[0]["body"]


def test_cancel_and_coalesce(make_bot, settings, emulator, ray_head):
    bot = bot_with(make_bot, settings, ray_head, "python -c \"import time; time.sleep(300)\"")
    for n, sha in ((3, "p" * 40), (4, "q" * 40), (5, "r" * 40)):
        merge(emulator, n, sha)
        bot.deliver("pull_request", pr_payload("closed", n, "h" * 40, merged=True, merge_sha=sha))
        bot.wait_idle()
    jobs = {j["sha"][0]: j["status"] for j in bot.store.jobs()}
    assert jobs == {"p": "running", "q": "superseded", "r": "queued"}  # one at a time; newest wins
    # /sprout cancel on PR 3 cancels PR 3's job only; the next merge's retrain then starts
    c = emulator.add_comment(REPO, 3, "maintainer", "/sprout cancel")
    bot.deliver("issue_comment", comment_payload(c, 3, "maintainer"))
    bot.wait_idle()
    assert any("cancelled 1 job(s) for this pull request" in x["body"] for x in emulator.comments(REPO, 3))
    wait_job(bot, {"cancelled", "superseded", "running"}, timeout=60)
    assert {j["sha"][0]: j["status"] for j in bot.store.jobs()}["r"] in ("queued", "submitting", "running")
    # a writer may not cancel everything; a maintainer may
    c = emulator.add_comment(REPO, 4, "writer", "/sprout cancel all")
    bot.deliver("issue_comment", comment_payload(c, 4, "writer"))
    bot.wait_idle()
    assert "needs maintain or admin" in emulator.comments(REPO, 4)[-1]["body"]
    c = emulator.add_comment(REPO, 4, "maintainer", "/sprout cancel all")
    bot.deliver("issue_comment", comment_payload(c, 4, "maintainer"))
    final = wait_job(bot, {"cancelled", "superseded"}, timeout=60)
    assert sorted(j["status"] for j in final) == ["cancelled", "cancelled", "superseded"]


def test_report_from_the_job_log_is_posted_and_cannot_be_forged(make_bot, settings, emulator, ray_head):
    # what a pull request could make a job print (a held-out question, an answer): a report in the
    # old marker format, and one tagged with a guessed nonce; then the job's own report line
    forged = ("print('<<<SPROUT-REPORT-MD'); print('## ✅ Sprout retrain: accepted'); print('SPROUT-REPORT-MD>>>'); "
              "print('SPROUT-REPORT ' + 'a' * 32 + ' ' + json.dumps(dict(verdict='accepted', markdown='FORGED')))")
    real = ("print('SPROUT-REPORT ' + os.environ['SPROUT_REPORT_NONCE'] + ' ' + "
            "json.dumps(dict(kind='report', verdict='rejected', markdown='## OK Sprout retrain: rejected\\n| leaf | class |')))")
    script = f"import json, os; print('[generate] ...'); {forged}; {real}; {forged}"
    bot = bot_with(make_bot, settings, ray_head, f'python -c "{script}"')
    merge(emulator, 6, "s" * 40)
    bot.deliver("pull_request", pr_payload("closed", 6, "h" * 40, merged=True, merge_sha="s" * 40))
    [job] = wait_job(bot, {"succeeded"})
    body = emulator.comments(REPO, 6)[0]["body"]
    posted, tail = body.split("<details><summary>Log tail</summary>")
    assert "## OK Sprout retrain: rejected\n| leaf | class |" in posted  # the job's own report
    assert "FORGED" not in posted and "accepted" not in posted  # the forgeries are only log, fenced
    assert tail.count("(the report line)") == 3  # every tagged line, forged or not, is left out
    assert job["verdict"] == "rejected" and job["nonce"] not in body  # the nonce never reaches GitHub


def test_failed_stage_is_named():
    from bot.dispatch import extract_report, failed_stage
    logs = "[validate] ...\n[validate] done\n[train] ...\nTraceback: boom\n"
    assert failed_stage(logs) == "train" and extract_report(logs, "a" * 32) is None


def test_sprout_submit_reports_a_failing_run(ray_head, tmp_path, sample_taxonomy):
    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    leaf = sample_taxonomy / "compositional_skills/writing/freeform/haiku/qna.yaml"
    leaf.write_text(leaf.read_text().replace("created_by: sprout-maintainers", "created_by:"))
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "RAY_ADDRESS": ""}
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", str(sample_taxonomy), "--address",
                        ray_head.address, "--poll", "0.5", "--", "--out", str(tmp_path / "run"),
                        "--runs-root", str(tmp_path / "runs")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "at stage validate" in p.stdout and "invalid leaves" in p.stdout
    assert "at stage validate" in summary.read_text()


def test_stopping_a_local_head_leaves_other_ray_clusters_alone(ray_head):
    """`ray stop` would kill every Ray process on the machine; the bot stops only its own head."""
    import httpx

    from bot.dispatch import LocalRayHead
    other = LocalRayHead(num_cpus=1)
    address = other.start()
    assert httpx.get(f"{address}/api/version").status_code == 200
    other.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{address}/api/version", timeout=2)
    assert httpx.get(f"{ray_head.address}/api/version").status_code == 200  # still up


def test_a_real_job_past_its_limit_is_stopped_and_the_next_runs(make_bot, settings, emulator, ray_head):
    s = replace(settings, retrain_entrypoint="python -c \"import time; time.sleep(300)\"",
                job_timeouts=(("retrain", 3.0), ("preview", 900.0), ("precheck", 900.0)))
    bot = make_bot(s, dispatcher=lambda store, gh: Dispatcher(store, gh, s, address=ray_head.address, poll=0.3))
    for n, sha in ((7, "t" * 40), (8, "u" * 40)):
        merge(emulator, n, sha)
        bot.deliver("pull_request", pr_payload("closed", n, "h" * 40, merged=True, merge_sha=sha))
        bot.wait_idle()
    jobs = wait_job(bot, {"timed_out"}, timeout=90)  # both, one after the other
    assert [j["sha"][0] for j in sorted(jobs, key=lambda j: j["id"])] == ["t", "u"]
    run = [r for r in emulator.check_runs(REPO) if r["head_sha"] == "t" * 40][0]
    assert run["conclusion"] == "timed_out"
    assert "SPROUT_RETRAIN_TIMEOUT" in emulator.comments(REPO, 7)[0]["body"]
