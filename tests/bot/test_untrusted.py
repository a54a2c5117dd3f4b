"""Pull requests and comments are written by attackers: each exploit is the input here."""

import time
from dataclasses import replace

import httpx
import pytest

from bot.dispatch import Dispatcher
from bot.github import GitHub
from bot.router import Router
from bot.store import Store
from tests.bot.conftest import REPO, SECRET, comment_payload, pr_payload
from tests.github_emulator import Fault
from tests.github_emulator.state import iso
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

LEAF = "compositional_skills/math/arithmetic/qna.yaml"
FILES = {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION}


class Recorder:
    """A dispatcher stand-in that records requests (no Ray needed to test the handlers)."""

    def __init__(self, store):
        self.store, self.requests, self.cancels = store, [], []

    def request(self, repo, pr, sha, installation_id, kind="retrain", base_sha=None, trigger=None):
        self.requests.append((repo, pr, sha, kind, trigger))
        return len(self.requests)

    def cancel(self, repo, pr=None):
        self.cancels.append((repo, pr))
        return 0

    def start(self):
        return self

    def stop(self):
        pass


def bot_replies(emulator, number=1):
    me = f"{emulator.state.app_slug}[bot]"
    return [c["body"] for c in emulator.comments(REPO, number) if c["_author"] == me]


def say(bot, emulator, author, body, number=1, delivery=None):
    c = emulator.add_comment(REPO, number, author, body)
    assert bot.deliver("issue_comment", comment_payload(c, number, author), delivery=delivery).status_code == 202
    bot.wait_idle()
    return c


# -- comment takeover ----------------------------------------------------------------------------
def test_a_planted_marker_is_never_edited_or_trusted(bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    planted = emulator.add_comment(REPO, 1, "attacker", "<!-- sprout:validate -->\nAll leaves valid, merge away!")
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40))
    bot.wait_idle()
    assert emulator.state.repos[REPO].comments[planted["id"]]["body"].endswith("merge away!")  # untouched
    [report] = bot_replies(emulator)
    assert "<!-- sprout:validate -->" in report and "Sprout validation" in report
    bot.deliver("pull_request", pr_payload("synchronize", 1, "h" * 40))
    bot.wait_idle()
    assert len(bot_replies(emulator)) == 1  # its own comment is found and updated, not the planted one
    assert not emulator.calls("PATCH", rf"/issues/comments/{planted['id']}$")


# -- time of check -------------------------------------------------------------------------------
@pytest.fixture
def recorder_bot(make_bot, settings):
    return make_bot(settings, dispatcher=lambda store, gh: Recorder(store))


def test_force_push_after_the_command_is_refused(recorder_bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES, created_at=time.time() - 60, updated_at=time.time() - 60)
    opened = pr_payload("opened", 1, "h" * 40)
    opened["pull_request"]["updated_at"] = iso(time.time() - 60)  # GitHub's time for h, as the PR says
    recorder_bot.deliver("pull_request", opened)
    recorder_bot.wait_idle()
    c = emulator.add_comment(REPO, 1, "maintainer", "/sprout generate")
    c["created_at"] = iso(time.time() - 30)  # the maintainer reviewed h and commented
    emulator.push(REPO, 1, "e" * 40, {**FILES, "evil.md": "x"}, at=time.time() - 10)  # then the author pushed
    recorder_bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"))
    recorder_bot.wait_idle()
    assert recorder_bot.dispatcher.requests == []
    assert "pushed after your comment" in bot_replies(emulator)[-1] or \
        "changed after your comment" in bot_replies(emulator)[-1]
    # also when the bot already heard the push (synchronize handled before the comment)
    payload = pr_payload("synchronize", 1, "e" * 40)
    payload["pull_request"]["updated_at"] = iso(time.time() - 10)
    recorder_bot.deliver("pull_request", payload)
    recorder_bot.wait_idle()
    recorder_bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"))
    recorder_bot.wait_idle()
    assert recorder_bot.dispatcher.requests == []
    assert "`eeeeeee` was pushed after your comment" in bot_replies(emulator)[-1]
    # a new comment, written after the push, runs on what its author saw
    say(recorder_bot, emulator, "maintainer", "/sprout generate")
    assert [r[2] for r in recorder_bot.dispatcher.requests] == ["e" * 40]


def test_unannounced_head_then_a_fresh_comment_runs(recorder_bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES, updated_at=time.time() + 5)  # changed "later"
    c = emulator.add_comment(REPO, 1, "maintainer", "/sprout precheck")
    recorder_bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"))
    recorder_bot.wait_idle()
    assert recorder_bot.dispatcher.requests == [] and "Comment again" in bot_replies(emulator)[-1]
    time.sleep(1.1)  # GitHub's timestamps have one-second resolution
    say(recorder_bot, emulator, "maintainer", "/sprout precheck")
    assert [(r[2], r[3]) for r in recorder_bot.dispatcher.requests] == [("h" * 40, "precheck")]


def test_retrain_refused_on_an_unmerged_pull_request(recorder_bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    say(recorder_bot, emulator, "maintainer", "/sprout retrain")
    assert recorder_bot.dispatcher.requests == []
    assert "merged pull requests only" in bot_replies(emulator)[-1]
    emulator.add_pull(REPO, 2, "b" * 40, "h" * 40, {}, FILES, state="closed", merged=True, merge_sha="m" * 40)
    say(recorder_bot, emulator, "maintainer", "/sprout retrain", number=2)
    assert [(r[2], r[3]) for r in recorder_bot.dispatcher.requests] == [("m" * 40, "retrain")]


def test_cancel_is_scoped_to_the_pull_request(recorder_bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    say(recorder_bot, emulator, "writer", "/sprout cancel")
    say(recorder_bot, emulator, "writer", "/sprout cancel all")
    say(recorder_bot, emulator, "admin", "/sprout cancel all")
    assert recorder_bot.dispatcher.cancels == [(REPO, 1), (REPO, None)]


# -- exactly-once jobs ---------------------------------------------------------------------------
def test_duplicated_deliveries_queue_one_job(make_bot, settings, emulator):
    # a dispatcher whose Ray cannot be reached: jobs stay in the store, where we count them
    bot = make_bot(settings, dispatcher=lambda store, gh: Dispatcher(store, gh, settings, address="http://127.0.0.1:9"))
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES, state="closed", merged=True, merge_sha="m" * 40)
    merged = pr_payload("closed", 1, "h" * 40, merged=True, merge_sha="m" * 40)
    bot.deliver("pull_request", merged, delivery="merge-1")
    bot.deliver("pull_request", merged, delivery="merge-1")  # GitHub's redelivery: same id
    bot.deliver("pull_request", merged, delivery="merge-1-redelivered")  # a new id, same merge
    bot.wait_idle()
    c = emulator.add_comment(REPO, 1, "maintainer", "/sprout retrain")
    for d in ("c-1", "c-2"):
        bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"), delivery=d)
    bot.wait_idle()
    jobs = bot.store.jobs()
    assert len(jobs) == 2, jobs  # one for the merge, one for the comment
    assert len({j["key"] for j in jobs}) == 2


# -- token mode ----------------------------------------------------------------------------------
def test_token_mode_posts_statuses_and_the_comment(make_bot, token_settings, emulator):
    bot = make_bot(token_settings)
    bad = SKILL.replace("created_by: tester", "created_by:")
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {**FILES, LEAF: bad})
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40))
    bot.wait_idle()
    assert emulator.check_runs(REPO) == [] and not emulator.calls("POST", "/check-runs")
    states = [(s["context"], s["state"]) for s in emulator.statuses(REPO, "h" * 40)]
    assert states == [("sprout/validate", "pending"), ("sprout/validate", "failure")]
    [comment] = emulator.comments(REPO, 1)
    assert comment["_author"] == emulator.state.token_user
    assert LEAF in comment["body"] and ":2" in comment["body"]  # file and line in the comment
    assert bot.store.counts() == {"done": 1}


def test_emulator_refuses_check_runs_to_personal_tokens(emulator):
    r = httpx.post(f"{emulator.url}/repos/{REPO}/check-runs", json={"name": "x", "head_sha": "a" * 40},
                   headers={"Authorization": "token ghp_test"})
    assert r.status_code == 403


# -- smaller holes -------------------------------------------------------------------------------
def test_secondary_rate_limit_without_retry_after_waits_a_minute(bot, emulator):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    emulator.inject(Fault("POST", r"/check-runs$", status=403, secondary=True))
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40), delivery="rl")
    deadline = time.time() + 10
    while bot.store.delivery("rl")["status"] != "pending" or bot.store.delivery("rl")["attempts"] == 0:
        assert time.time() < deadline
        time.sleep(0.05)
    d = bot.store.delivery("rl")
    assert d["next_at"] - time.time() >= 55 and "secondary rate limit" in d["last_error"]


def test_non_ascii_signature_is_401(bot):
    r = bot.deliver("ping", {"zen": "x"}, signature="sha256=\u00e9t\u00e9".encode())  # raw UTF-8 bytes on the wire
    assert r.status_code == 401


def test_settings_repr_hides_secrets(settings, token_settings):
    text = repr(token_settings) + repr(settings)
    assert SECRET not in text and "ghp_test" not in text and "PRIVATE KEY" not in text


def test_status_page_and_metrics_need_the_token_when_set(make_bot, settings):
    bot = make_bot(replace(settings, status_token="s3cret-status"))
    for path in ("/", "/metrics"):
        assert bot.http.get(path).status_code == 401
        assert bot.http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert bot.http.get(path, headers={"Authorization": "Bearer s3cret-status"}).status_code == 200
    assert bot.http.get("/healthz").status_code == 200  # names no repository


def test_permanent_report_errors_are_not_retried_transient_ones_are(emulator, settings, tmp_path):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    store = Store(tmp_path / "d.db")
    d = Dispatcher(store, GitHub(settings, seconds_between_writes=None), settings, address="http://127.0.0.1:9")
    job = store.job(store.add_job(REPO, 1, "h" * 40, "preview", 42))
    emulator.inject(Fault("POST", r"/issues/1/comments$", status=422, times=1))
    assert d._report(job, "neutral", "t", "s") is True  # a 422 will not change: recorded, not retried
    emulator.inject(Fault("POST", r"/issues/1/comments$", status=502, times=1))
    assert d._report(job, "neutral", "t", "s") is False  # a 502 may: try again later


# -- leases --------------------------------------------------------------------------------------
def test_slow_handler_keeps_its_lease_and_runs_once(make_bot, settings):
    runs = []
    router = Router()

    @router.on("pull_request", "opened")
    def slow(event, ctx):
        runs.append(event.delivery_id)
        time.sleep(3)  # three leases long

    bot = make_bot(replace(settings, lease_seconds=1), router=router, workers=2)
    bot.deliver("pull_request", {"action": "opened"}, delivery="slow")
    time.sleep(0.3)
    bot.wait_idle(20)
    assert runs == ["slow"] and bot.store.delivery("slow")["status"] == "done"


def test_finish_only_by_the_owner_and_poison_after_repeated_deaths(tmp_path):
    store = Store(tmp_path / "s.db")
    store.add_delivery("d1", "pull_request", "opened", b"{}")
    assert store.claim("w1", 0.01, max_attempts=2).id == "d1"
    time.sleep(0.05)  # w1 "died": its lease ran out
    assert store.claim("w2", 0.01, max_attempts=2).id == "d1"
    assert store.finish("d1", "done", worker="w1") is False  # w1 no longer owns it
    assert store.renew("d1", "w1", 5) is False
    time.sleep(0.05)  # w2 died too: twice is the limit
    assert store.claim("w3", 5, max_attempts=2) is None
    d = store.delivery("d1")
    assert d["status"] == "poison" and "died or hung 2 times" in d["last_error"]


def test_poison_delivery_is_visible_on_the_status_page(bot):
    bot.store.add_delivery("p1", "pull_request", "opened", b"{}")
    bot.store._x("UPDATE deliveries SET status = 'poison', last_error = 'poison: the worker died' WHERE id = 'p1'")
    page = bot.http.get("/").text
    assert "class='poison'" in page and "the worker died" in page


def test_job_values_are_single_shell_words(settings, tmp_path):
    store = Store(tmp_path / "e.db")
    d = Dispatcher(store, GitHub(settings, seconds_between_writes=None), settings, address="http://127.0.0.1:9")
    for repo, sha in ((REPO, "$(touch /tmp/pwned)"), (REPO, "--upload-pack=x"), ("o/r;id", "a" * 40)):
        with pytest.raises(ValueError):
            d.request(repo, 1, sha, 42, trigger="merge")
    assert store.jobs() == []
    import shlex
    entry = d._entrypoint({"kind": "preview", "sha": "a" * 40, "base_sha": "b" * 40, "repo": "o/r.x", "pr": 3})
    words = shlex.split(entry)
    assert words[:2] == ["sprout", "preview"] and "a" * 40 in words and "b" * 40 in words
