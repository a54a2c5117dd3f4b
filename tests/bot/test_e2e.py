"""The whole path through the bot, with nothing scripted: a real taxonomy repository served by the
GitHub emulator (API + git over HTTP), the real app, real `sprout preview` / `precheck` / `run`
Ray jobs on a local head that clone the repository at the pull request's commits.

PR opened -> validation check run; /sprout generate -> preview comment; /sprout precheck ->
answers comment; merged -> retraining job -> report comment + completed check run. Also a merge
that fails (invalid leaf: stops at validate) and a cancelled retrain."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot.dispatch import Dispatcher
from tests.bot.conftest import REPO, comment_payload, pr_payload
from tests.conftest import ROOT, run_git

pytestmark = pytest.mark.slow

HAIKU = "compositional_skills/writing/freeform/haiku/qna.yaml"
# Smoke-sized training so the test takes a minute, not the demo's three: the same code path.
SMOKE = "--student tiny --epochs 1 --max-steps 3 --no-embeddings --probe-questions 8"


@pytest.fixture
def repo(tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(ROOT / "taxonomy", work)
    run_git(work, "init", "-q", "-b", "main")
    run_git(work, "add", "-A")
    run_git(work, "commit", "-qm", "the sample taxonomy")
    return work


def branch(work: Path, name: str, edit) -> tuple[str, str]:
    """A feature branch with one commit made by ``edit(work)``; returns (base, head)."""
    base = run_git(work, "rev-parse", "main").strip()
    run_git(work, "checkout", "-qb", name, "main")
    edit(work)
    run_git(work, "commit", "-qam", f"{name}: change a leaf")
    head = run_git(work, "rev-parse", "HEAD").strip()
    run_git(work, "checkout", "-q", "main")
    return base, head


def merge(work: Path, name: str) -> str:
    run_git(work, "merge", "-q", "--no-ff", "-m", f"Merge {name}", name)
    return run_git(work, "rev-parse", "HEAD").strip()


def add_haiku_seed(work: Path) -> None:
    leaf = work / HAIKU
    leaf.write_text(leaf.read_text().replace("seed_examples:\n", "seed_examples:\n"
                    "  - question: Write a haiku about a lighthouse in fog.\n    answer: |\n"
                    "      Grey breath on the sea\n      one slow eye opens and shuts\n"
                    "      ships count it like prayer\n", 1))


def break_haiku(work: Path) -> None:
    leaf = work / HAIKU
    leaf.write_text(leaf.read_text().replace("created_by: sprout-maintainers", "created_by:"))


@pytest.fixture
def e2e_bot(make_bot, settings, emulator, ray_head, tmp_path):
    runs, cache = tmp_path / "runs", tmp_path / "job-cache"
    # The Ray head outlives this test; the job's cache and runs go to this test's folders.
    env = f"SPROUT_CACHE={shlex.quote(str(cache))} PYTHONUNBUFFERED=1"
    s = replace(settings, runs_root=str(runs), git_url=f"{emulator.url}/{{repo}}.git",
                retrain_entrypoint=f"{env} sprout run {{git_url}} --ref {{sha}} --runs-root {{runs_root}} "
                                   f"{SMOKE} --print-report",
                preview_entrypoint=f"{env} {default_entrypoint('preview')}",
                precheck_entrypoint=f"{env} {default_entrypoint('precheck')} --student tiny")
    return make_bot(s, dispatcher=lambda store, gh: Dispatcher(store, gh, s, address=ray_head.address, poll=0.5))


def default_entrypoint(kind: str) -> str:
    """The shipped entrypoint, unchanged."""
    from bot.settings import Settings
    return getattr(Settings, f"{kind}_entrypoint")


def wait_jobs(bot, kind: str, statuses: set[str], timeout: float = 420) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = bot.store.jobs(kind=kind)
        if jobs and jobs[0]["status"] in statuses:
            return jobs[0]
        time.sleep(0.5)
    job = bot.store.jobs(kind=kind)
    logs = ""
    if job and job[0]["ray_job_id"]:
        logs = bot.dispatcher.client().get_job_logs(job[0]["ray_job_id"])[-3000:]
    raise AssertionError(f"{kind}: {job[:1]}\n{logs}")


def check(emulator, name: str, sha: str) -> dict:
    runs = [r for r in emulator.check_runs(REPO) if r["name"] == name and r["head_sha"] == sha]
    assert len(runs) == 1, runs  # idempotent: one check run per name and commit
    return runs[0]


def bot_comments(emulator, number: int, marker: str) -> list[dict]:
    return [c for c in emulator.comments(REPO, number) if marker in c["body"]]


def open_pull(bot, emulator, repo: Path, number: int, base: str, head: str) -> None:
    """GitHub learns the branch, and the bot gets `opened`."""
    emulator.serve_git(REPO, repo)
    emulator.add_pull_from_git(REPO, number, repo, base, head)
    bot.deliver("pull_request", pr_payload("opened", number, head, base_sha=base))
    bot.wait_idle()


def merge_pull(bot, emulator, repo: Path, number: int, name: str, base: str, head: str) -> str:
    """A real --no-ff merge, served, and the bot gets `closed` + merged; returns the merge SHA."""
    merge_sha = merge(repo, name)
    emulator.serve_git(REPO, repo)
    emulator.add_pull_from_git(REPO, number, repo, base, head, state="closed", merged=True, merge_sha=merge_sha)
    bot.deliver("pull_request", pr_payload("closed", number, head, base_sha=base, merged=True, merge_sha=merge_sha))
    return merge_sha


def say(bot, emulator, number: int, text: str) -> None:
    c = emulator.add_comment(REPO, number, "maintainer", text)
    bot.deliver("issue_comment", comment_payload(c, number, "maintainer"))
    bot.wait_idle()


def test_pull_request_to_model_through_the_bot(e2e_bot, emulator, repo):
    bot = e2e_bot
    base, head = branch(repo, "lighthouse", add_haiku_seed)
    open_pull(bot, emulator, repo, 1, base, head)
    assert check(emulator, "sprout/validate", head)["conclusion"] == "success"

    # Before merging: a preview of the synthetic data, and what the student answers today.
    say(bot, emulator, 1, "/sprout generate")
    say(bot, emulator, 1, "/sprout precheck")
    preview = wait_jobs(bot, "preview", {"succeeded", "failed"})
    precheck = wait_jobs(bot, "precheck", {"succeeded", "failed"})
    assert (preview["status"], precheck["status"]) == ("succeeded", "succeeded"), (preview, precheck)
    assert check(emulator, "sprout/preview", head)["conclusion"] == "neutral"
    assert check(emulator, "sprout/precheck", head)["conclusion"] == "neutral"
    [pv] = bot_comments(emulator, 1, "Sprout preview")
    assert "1 leaf(s)" in pv["body"] and HAIKU in pv["body"] and "**Q**" in pv["body"]
    [pc] = bot_comments(emulator, 1, "Sprout precheck")
    assert "lighthouse in fog" in pc["body"] and "| question | expected | student | score |" in pc["body"]

    # Merge: the bot retrains on the merge commit and posts the report.
    merge_sha = merge_pull(bot, emulator, repo, 1, "lighthouse", base, head)
    job = wait_jobs(bot, "retrain", {"succeeded", "failed", "cancelled"})
    [report] = bot_comments(emulator, 1, "Sprout retrain:")
    body = report["body"]
    accepted = "Sprout retrain: accepted" in body
    assert job["status"] == ("succeeded" if accepted else "failed"), job
    assert job["verdict"] == ("accepted" if accepted else "rejected") and job["stage"] == "report"
    run = check(emulator, "sprout/retrain", merge_sha)
    assert run["status"] == "completed" and run["conclusion"] == ("success" if accepted else "failure")
    assert "Sprout retrain:" in run["output"]["summary"]
    for leaf in ("haiku/qna.yaml", "water_cycle/qna.yaml", "unit_conversion/qna.yaml"):
        assert leaf in body  # first run: every leaf trained and evaluated
    assert "xychart-beta" in body and "Forgetting check" in body and merge_sha[:7] in body
    # the model is registered with its lineage for the next run
    [model] = json.loads((Path(bot.settings.runs_root) / "models.json").read_text())
    assert model["taxonomy_sha"] == merge_sha and Path(model["path"]).exists()


def test_failing_and_cancelled_retrains(e2e_bot, emulator, repo):
    bot = e2e_bot
    # A leaf broken on purpose, merged anyway (say, by an admin past the red check).
    base, head = branch(repo, "broken", break_haiku)
    open_pull(bot, emulator, repo, 2, base, head)
    assert check(emulator, "sprout/validate", head)["conclusion"] == "failure"
    merge_sha = merge_pull(bot, emulator, repo, 2, "broken", base, head)
    job = wait_jobs(bot, "retrain", {"succeeded", "failed", "cancelled"}, timeout=180)
    assert (job["status"], job["stage"], job["verdict"]) == ("failed", "validate", None)
    assert check(emulator, "sprout/retrain", merge_sha)["conclusion"] == "failure"
    [c] = bot_comments(emulator, 2, "Retraining failed")
    assert "at stage `validate`" in c["body"] and "created_by" in c["body"]

    # Fixed on a new branch, merged, then cancelled by a maintainer while it runs.
    run_git(repo, "revert", "--no-edit", "HEAD", "-m", "1")
    base2, head2 = branch(repo, "lighthouse", add_haiku_seed)
    merge_sha2 = merge_pull(bot, emulator, repo, 3, "lighthouse", base2, head2)
    running = wait_jobs(bot, "retrain", {"running"}, timeout=60)
    deadline = time.time() + 120  # let it get into the pipeline before stopping it
    while "[generate]" not in bot.dispatcher.client().get_job_logs(running["ray_job_id"]):
        assert time.time() < deadline, bot.dispatcher.client().get_job_logs(running["ray_job_id"])
        time.sleep(0.5)
    say(bot, emulator, 3, "/sprout cancel")
    job = wait_jobs(bot, "retrain", {"cancelled", "succeeded", "failed"}, timeout=120)
    assert job["status"] == "cancelled", job
    assert check(emulator, "sprout/retrain", merge_sha2)["conclusion"] == "cancelled"
    assert bot_comments(emulator, 3, "Retraining cancelled")
    assert any("cancelled 1 job(s)" in c["body"] for c in emulator.comments(REPO, 3))
    assert not (Path(bot.settings.runs_root) / "models.json").exists()  # nothing was registered
