"""Pull requests end to end: real app, real worker, PyGithub against the emulator."""

import time
from dataclasses import replace

from tests.bot.conftest import REPO, pr_payload
from tests.github_emulator import Fault
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

LEAF = "compositional_skills/math/arithmetic/qna.yaml"
ATTR = "compositional_skills/math/arithmetic/attribution.txt"


def open_pr(emulator, number, head_files, base_files=None, head="h" * 40, base="b" * 40):
    return emulator.add_pull(REPO, number, base, head, base_files or {"README.md": "x"},
                             {"README.md": "x", **head_files})


def test_valid_leaf_gets_success_check_and_one_comment(bot, emulator):
    open_pr(emulator, 1, {LEAF: SKILL, ATTR: ATTRIBUTION})
    assert bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40)).status_code == 202
    assert bot.wait_idle()["done"] == 1
    [run] = emulator.check_runs(REPO)
    assert (run["name"], run["status"], run["conclusion"]) == ("sprout/validate", "completed", "success")
    assert run["head_sha"] == "h" * 40
    [comment] = emulator.comments(REPO, 1)
    assert "<!-- sprout:validate -->" in comment["body"] and "1/1 leaves valid" in comment["body"]


def test_invalid_leaf_is_annotated_at_the_right_lines(bot, emulator):
    broken = SKILL.replace("created_by: tester", "created_by:").replace("tester\n", "tester  \n")
    open_pr(emulator, 2, {LEAF: broken, ATTR: ATTRIBUTION})
    bot.deliver("pull_request", pr_payload("opened", 2, "h" * 40))
    bot.wait_idle()
    [run] = emulator.check_runs(REPO)
    assert run["conclusion"] == "failure"
    anns = emulator.state.repos[REPO].annotations[run["id"]]
    assert [(a["path"], a["start_line"], a["start_column"], a["annotation_level"]) for a in anns] == [
        (LEAF, 2, 12, "failure")]
    assert "created_by" in anns[0]["message"] or "string" in anns[0]["message"]


def test_missing_attribution_and_no_leaf_changes(bot, emulator):
    open_pr(emulator, 3, {LEAF: SKILL})
    open_pr(emulator, 4, {"docs/readme.md": "hello"}, head="c" * 40)
    bot.deliver("pull_request", pr_payload("opened", 3, "h" * 40))
    bot.deliver("pull_request", pr_payload("opened", 4, "c" * 40))
    bot.wait_idle()
    runs = {r["head_sha"]: r for r in emulator.check_runs(REPO)}
    assert runs["h" * 40]["conclusion"] == "failure"
    assert runs["c" * 40]["conclusion"] == "neutral"
    assert emulator.comments(REPO, 4) == []  # nothing to say on a PR without leaves


def test_300_file_pr_paginates_and_batches_annotations(make_bot, settings, emulator):
    bot = make_bot(replace(settings, max_annotations=200))  # above the default cap of 50: batches of 50
    files = {}
    for i in range(150):
        d = f"compositional_skills/bulk/leaf_{i:03d}"
        files[f"{d}/qna.yaml"] = SKILL.replace("created_by: tester", "created_by:")
        files[f"{d}/attribution.txt"] = ATTRIBUTION
    open_pr(emulator, 5, files)
    bot.deliver("pull_request", pr_payload("opened", 5, "h" * 40))
    bot.wait_idle(timeout=120)
    [run] = emulator.check_runs(REPO)
    assert run["conclusion"] == "failure"
    assert len(emulator.state.repos[REPO].annotations[run["id"]]) == 150
    pages = emulator.calls("GET", r"/pulls/5/files")
    assert len(pages) >= 3  # 300 files, paginated
    patches = emulator.calls("PATCH", r"/check-runs/")
    assert len(patches) >= 3 and all(code == 200 for _, _, code in patches)  # <= 50 per request


def test_same_delivery_five_times_has_one_effect(bot, emulator):
    open_pr(emulator, 6, {LEAF: SKILL, ATTR: ATTRIBUTION})
    for _ in range(5):
        assert bot.deliver("pull_request", pr_payload("opened", 6, "h" * 40), delivery="dup-1").status_code == 202
    bot.wait_idle()
    assert len(emulator.check_runs(REPO)) == 1
    assert len(emulator.comments(REPO, 6)) == 1
    assert len(emulator.calls("POST", r"/check-runs$")) == 1


def test_new_push_edits_the_one_comment(bot, emulator):
    open_pr(emulator, 7, {LEAF: SKILL, ATTR: ATTRIBUTION})
    bot.deliver("pull_request", pr_payload("opened", 7, "h" * 40))
    bot.wait_idle()
    pull = emulator.state.repos[REPO].pulls[7]
    emulator.add_commit(REPO, "i" * 40, {LEAF: SKILL.replace("created_by: tester", "created_by:"), ATTR: ATTRIBUTION})
    pull.head_sha = "i" * 40
    bot.deliver("pull_request", pr_payload("synchronize", 7, "i" * 40))
    bot.wait_idle()
    [comment] = emulator.comments(REPO, 7)
    assert "iiiiiii" in comment["body"] and "❌" in comment["body"]
    assert {r["head_sha"]: r["conclusion"] for r in emulator.check_runs(REPO)} == {
        "h" * 40: "success", "i" * 40: "failure"}


def test_github_failing_three_times_then_recovering(bot, emulator):
    open_pr(emulator, 8, {LEAF: SKILL, ATTR: ATTRIBUTION})
    emulator.inject(Fault("GET", r"/pulls/8/files", status=502, times=3))
    bot.deliver("pull_request", pr_payload("opened", 8, "h" * 40), delivery="flaky")
    bot.wait_idle()
    d = bot.store.delivery("flaky")
    assert d["status"] == "done" and d["attempts"] == 4
    assert len(emulator.comments(REPO, 8)) == 1


def test_secondary_rate_limit_honours_retry_after(bot, emulator):
    open_pr(emulator, 9, {LEAF: SKILL, ATTR: ATTRIBUTION})
    emulator.inject(Fault("POST", r"/check-runs$", status=403, retry_after=1, times=1))
    start = time.time()
    bot.deliver("pull_request", pr_payload("opened", 9, "h" * 40), delivery="limited")
    bot.wait_idle()
    assert time.time() - start >= 1.0
    assert bot.store.delivery("limited")["status"] == "done"
    assert len(emulator.check_runs(REPO)) == 1


def test_delivery_parked_as_failed_after_max_attempts(bot, emulator):
    open_pr(emulator, 10, {LEAF: SKILL, ATTR: ATTRIBUTION})
    emulator.inject(Fault("GET", r"/pulls/10/files", status=500, times=100))
    bot.deliver("pull_request", pr_payload("opened", 10, "h" * 40), delivery="doomed")
    bot.wait_idle()
    d = bot.store.delivery("doomed")
    assert d["status"] == "failed" and d["attempts"] == 5 and "500" in d["last_error"]
    metrics = bot.http.get("/metrics").text
    assert "sprout_failed_deliveries 1" in metrics
    assert 'sprout_github_calls_total{call="pull_files",outcome="transient"} 5' in metrics
    page = bot.http.get("/").text
    assert "doomed" in page and "failed" in page


def test_forked_pr_is_validated_from_the_head_sha(bot, emulator):
    emulator.add_pull(REPO, 11, "b" * 40, "f" * 40, {}, {LEAF: SKILL, ATTR: ATTRIBUTION}, fork=True, user="stranger")
    bot.deliver("pull_request", pr_payload("opened", 11, "f" * 40))
    bot.wait_idle()
    assert emulator.check_runs(REPO)[0]["conclusion"] == "success"


def test_healthz_and_metrics(bot):
    assert bot.http.get("/healthz").json()["ok"] is True
    text = bot.http.get("/metrics").text
    for name in ("sprout_queue_depth", "sprout_oldest_pending_seconds", "sprout_handler_seconds_count",
                 "sprout_webhook_requests_total"):
        assert name in text


def test_dropped_connections_are_retried(bot, emulator):
    """GitHub (or a proxy) cutting a response short: a read and a write both come back."""
    open_pr(emulator, 11, {LEAF: SKILL, ATTR: ATTRIBUTION})
    emulator.inject(Fault("GET", r"/pulls/11/files", drop=True, times=1))
    emulator.inject(Fault("POST", r"/check-runs$", drop=True, times=1))
    bot.deliver("pull_request", pr_payload("opened", 11, "h" * 40), delivery="cut")
    bot.wait_idle()
    d = bot.store.delivery("cut")
    assert d["status"] == "done", d
    assert [c for c in emulator.calls() if c[2] == 0]  # the cuts happened
    assert len(emulator.comments(REPO, 11)) == 1
    runs = [r for r in emulator.check_runs(REPO) if r["head_sha"] == "h" * 40]
    assert [r["conclusion"] for r in runs] == ["success"]
