"""Round two of untrusted input (issue 22, bot side): the bot never takes orders from itself or
from hidden text, a planted marker marks nothing, commands bind to the head at comment time
(A -> B -> A), quota and load are bounded, jobs have a time limit. Each input is the exploit."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from bot.commands import parse
from bot.dispatch import Dispatcher
from bot.github import GitHub
from bot.store import Store
from tests.bot.conftest import REPO, comment_payload, pr_payload
from tests.bot.test_untrusted import FILES, LEAF, Recorder, bot_replies, say
from tests.github_emulator.state import iso
from tests.taxonomy.leaves import ATTRIBUTION, SKILL


@pytest.fixture
def recorder_bot(make_bot, settings):
    return make_bot(settings, dispatcher=lambda store, gh: Recorder(store))


# -- the bot never obeys its own comments ------------------------------------------------------
def test_token_mode_bot_never_obeys_a_command_echoed_in_its_own_comment(make_bot, token_settings, emulator):
    """The issue's exploit: a leaf path with U+2028 around '@sprout generate' was echoed raw in
    the validation comment; GitHub delivered that comment (by the token's user, type User) and
    the bot queued a preview. The token's user is an admin, so `cancel all` would cancel everything."""
    emulator.state.repos[REPO].permissions[emulator.state.token_user] = "admin"
    bot = make_bot(token_settings, dispatcher=lambda store, gh: Recorder(store))
    path = "compositional_skills/x\u2028@sprout generate\u2028y/qna.yaml"
    bad = SKILL.replace("created_by: tester", "created_by:")
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {path: bad, path.replace("qna.yaml", "attribution.txt"): ATTRIBUTION},
                      updated_at=time.time() - 60)
    opened = pr_payload("opened", 1, "h" * 40)
    opened["pull_request"]["updated_at"] = iso(time.time() - 60)
    bot.deliver("pull_request", opened)
    bot.wait_idle()
    [own] = emulator.comments(REPO, 1)
    assert own["_author"] == emulator.state.token_user and "sprout generate" in own["body"]
    assert "\u2028" not in own["body"]  # made a space: no line break the bot's parser could see
    for body in (own["body"], "@sprout cancel all\n<!-- sprout:validate -->"):
        c = emulator.add_comment(REPO, 1, emulator.state.token_user, body)
        bot.deliver("issue_comment", comment_payload(c, 1, emulator.state.token_user, author_type="User"))
        bot.wait_idle()
    assert bot.dispatcher.requests == [] and bot.dispatcher.cancels == []
    assert len(emulator.comments(REPO, 1)) == 3  # its validation comment and the two above: no reply
    # a person's comment carrying the marker is not read either (the bot only ever writes those)
    c = emulator.add_comment(REPO, 1, "maintainer", "<!-- sprout:validate -->\n/sprout cancel all")
    bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"))
    bot.wait_idle()
    assert bot.dispatcher.cancels == []


@pytest.mark.parametrize("body", [
    "x\u2028/sprout retrain", "x\u2029/sprout retrain", "x\u0085/sprout retrain", "x\r/sprout retrain",
    "~~~\n/sprout retrain\n~~~", "~~~~\n~~~\n/sprout retrain\n~~~~", "````\n```\n/sprout retrain\n````",
    "text\n\n    /sprout retrain", "\t/sprout retrain",
    "<!--\n/sprout retrain\n-->", "<!-- /sprout retrain -->", "hi <!--\n/sprout retrain -->",
    "<details>\n<summary>more</summary>\n\n/sprout retrain\n\n</details>",
    "<div hidden>\n/sprout retrain\n</div>",
    "> quoted\n/sprout retrain", ">/sprout retrain",
    "/sprout\u2028retrain", "/sprout\u00a0retrain",
])
def test_commands_hidden_from_readers_are_not_commands(body):
    assert parse(body, "/sprout", "sprout") is None


@pytest.mark.parametrize("body,expected", [
    ("~~~\nx\n~~~\n/sprout precheck", ("precheck", [])),
    ("<details>\n\nhidden\n\n</details>\n\n/sprout generate", ("generate", [])),
    ("> quoted\n\n/sprout status", ("status", [])),
    ("<!-- note -->\n/sprout help", ("help", [])),
    ("hello\r\n/sprout validate\r\n", ("validate", [])),
])
def test_commands_after_hidden_text_still_work(body, expected):
    assert parse(body, "/sprout", "sprout") == expected


def test_a_marker_is_the_first_line_exactly(bot, emulator):
    """The issue's exploit: the bot's validation comment quoted a pattern holding
    '<!-- sprout:precheck:1:2 -->'; a later precheck report took it for its part 2 and overwrote it."""
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    me = f"{emulator.state.app_slug}[bot]"
    validation = emulator.add_comment(REPO, 1, me, "<!-- sprout:validate -->\n### Sprout validation\n"
                                      "| x | `<!-- sprout:precheck:1:2 -->` |")
    gh = bot.github.client(42)
    [new] = gh.upsert_comment(REPO, 1, "sprout:precheck:1", "## precheck report")
    assert new != validation["id"]
    assert emulator.state.repos[REPO].comments[validation["id"]]["body"].endswith("precheck:1:2 -->` |")
    assert gh.upsert_comment(REPO, 1, "sprout:precheck:1", "## precheck again") == [new]  # found again


# -- commands bind to the head at comment time: A -> B -> A -------------------------------------
def test_a_head_pushed_back_after_the_comment_does_not_run(recorder_bot, emulator):
    now = time.time()
    emulator.add_pull(REPO, 1, "b" * 40, "a" * 40, {}, {**FILES, "evil.md": "x"}, updated_at=now - 100)
    for sha, at in (("a" * 40, now - 100), ("c" * 40, now - 60)):  # A (malicious), then B (clean)
        if sha != "a" * 40:
            emulator.push(REPO, 1, sha, FILES, at=at)
        payload = pr_payload("synchronize", 1, sha)
        payload["pull_request"]["updated_at"] = iso(at)
        recorder_bot.deliver("pull_request", payload)
        recorder_bot.wait_idle()
    c = emulator.add_comment(REPO, 1, "maintainer", "/sprout generate")
    c["created_at"] = iso(now - 30)  # the maintainer reviewed B and commented
    emulator.push(REPO, 1, "a" * 40, {**FILES, "evil.md": "x"}, at=now - 10)  # force-pushed back to A
    payload = pr_payload("synchronize", 1, "a" * 40)
    payload["pull_request"]["updated_at"] = iso(now - 10)
    recorder_bot.deliver("pull_request", payload)
    recorder_bot.wait_idle()
    recorder_bot.deliver("issue_comment", comment_payload(c, 1, "maintainer"))
    recorder_bot.wait_idle()
    assert recorder_bot.dispatcher.requests == []
    assert "`aaaaaaa` was pushed after your comment" in bot_replies(emulator)[-1]


def test_head_at_is_the_latest_sighting_at_or_before(tmp_path):
    store = Store(tmp_path / "s.db")
    for sha, at in (("A", 10.0), ("B", 20.0), ("A", 30.0)):
        store.saw_head(REPO, 1, sha, at)
    assert [store.head_at(REPO, 1, t) for t in (5, 10, 25, 30, 99)] == [None, "A", "B", "A", "A"]
    assert store.head_seen_at(REPO, 1, "A") == 10.0


# -- quota and load ----------------------------------------------------------------------------
def test_commands_per_person_are_limited_one_reply_then_silence(make_bot, settings, emulator):
    bot = make_bot(replace(settings, commands_per_hour=2))
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    for _ in range(2):
        say(bot, emulator, "stranger", "/sprout help")
    say(bot, emulator, "stranger", "/sprout validate")
    replies = bot_replies(emulator)
    assert len(replies) == 3 and "I will ignore your commands" in replies[-1]
    before = len(emulator.calls())
    for _ in range(3):
        say(bot, emulator, "stranger", "/sprout validate")
    # silence: not one request to GitHub for them (no reaction, no reply, no check run)
    assert emulator.calls()[before:] == []
    assert len(bot_replies(emulator)) == 3 and not emulator.check_runs(REPO)
    say(bot, emulator, "writer", "/sprout help")  # others are not affected
    assert len(bot_replies(emulator)) == 4


@pytest.mark.slow  # ~10 s: the validator reads 180,000 lines
def test_a_1mb_leaf_costs_a_bounded_number_of_api_requests(bot, emulator):
    """190,000 findings once meant 3,800 check-run PATCHes: now at most 50 annotations, the
    rest counted, and the whole validation a handful of requests."""
    leaf = SKILL + "# x \n" * 180_000  # ~900 KB, a trailing-spaces finding on every line
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {**FILES, LEAF: leaf})
    before = len(emulator.calls())
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40))
    bot.wait_idle(120)
    calls = emulator.calls()[before:]
    assert len(calls) <= 15, calls
    [run] = emulator.check_runs(REPO)
    assert run["conclusion"] == "failure"
    assert len(emulator.state.repos[REPO].annotations[run["id"]]) == 50
    assert "findings are not annotated" in run["output"]["summary"]
    [comment] = emulator.comments(REPO, 1)
    assert len(comment["body"]) < 65_536


# -- every job bounded ---------------------------------------------------------------------------
class SlowRay:
    """A Ray Jobs client whose jobs run until stopped (the dispatcher's logic, no Ray needed)."""

    def __init__(self):
        self.jobs, self.stopped, self.env = {}, [], {}

    def get_job_info(self, job_id):
        if job_id not in self.jobs:
            raise RuntimeError("status code 404: does not exist")
        return self.jobs[job_id]

    def submit_job(self, entrypoint, submission_id, metadata=None, runtime_env=None):
        self.jobs[submission_id] = "RUNNING"
        self.env[submission_id] = (runtime_env or {}).get("env_vars", {})
        return submission_id

    def get_job_status(self, job_id):
        return self.get_job_info(job_id)

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        self.jobs[job_id] = "STOPPED"
        return True

    def get_job_logs(self, job_id):
        return "[generate] ...\nworking hard\n"


def test_a_job_past_its_time_limit_is_stopped_reported_and_the_queue_moves_on(emulator, settings, tmp_path):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    emulator.add_pull(REPO, 2, "b" * 40, "i" * 40, {}, FILES)
    s = replace(settings, job_timeouts=(("retrain", 1800.0), ("preview", 0.5), ("precheck", 900.0)))
    store = Store(tmp_path / "d.db")
    d = Dispatcher(store, GitHub(s, seconds_between_writes=None), s, address="http://127.0.0.1:9")
    d._client = ray = SlowRay()
    first = d.request(REPO, 1, "h" * 40, 42, kind="preview", base_sha="b" * 40, trigger="c1")
    second = d.request(REPO, 2, "i" * 40, 42, kind="preview", base_sha="b" * 40, trigger="c2")
    assert (store.job(first)["status"], store.job(second)["status"]) == ("running", "queued")
    d.tick()
    assert store.job(first)["status"] == "running" and not ray.stopped  # within its limit
    time.sleep(0.6)
    d.tick()  # past it: stopped
    d.tick()  # Ray says STOPPED: reported, and the next job starts
    job = store.job(first)
    assert job["status"] == "timed_out" and ray.stopped == [job["ray_job_id"]]
    assert store.job(second)["status"] == "running"
    run = [r for r in emulator.check_runs(REPO) if r["head_sha"] == "h" * 40 and r["name"] == "sprout/preview"][0]
    assert run["conclusion"] == "timed_out" and "over its" in run["output"]["title"]
    [comment] = emulator.comments(REPO, 1)
    assert "SPROUT_PREVIEW_TIMEOUT" in comment["body"]
    # the job got its report nonce in its environment, never in its command line or on GitHub
    nonce = job["nonce"]
    assert ray.env[job["ray_job_id"]] == {"SPROUT_REPORT_NONCE": nonce} and len(nonce) == 32
    assert nonce not in d._entrypoint(job) and nonce not in comment["body"]


def test_clone_url_credentials_are_never_shown(emulator, settings, tmp_path, make_bot):
    s = replace(settings, git_url="https://deploy:ghp_SECRET123@git.example.com/{repo}.git")
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, FILES)
    store = Store(tmp_path / "d.db")
    d = Dispatcher(store, GitHub(s, seconds_between_writes=None), s, address="http://127.0.0.1:9")
    d._client = SlowRay()
    d.request(REPO, 1, "h" * 40, 42, kind="preview", base_sha="b" * 40, trigger="c1")
    [run] = [r for r in emulator.check_runs(REPO) if r["name"] == "sprout/preview"]
    assert "ghp_SECRET123" not in str(run["output"]) and "https://***@git.example.com" in run["output"]["summary"]
    bot = make_bot(replace(s, database_url=f"sqlite:///{tmp_path}/d.db"))
    page = bot.http.get("/").text
    assert "ghp_SECRET123" not in page and "deploy" not in page and "git.example.com/octo-org/taxonomy" in page


# -- forwarded headers ---------------------------------------------------------------------------
def test_forwarded_headers_never_make_a_loopback_client(bot):
    """Behind a same-host proxy that passes X-Forwarded-For through, uvicorn's default (trust
    127.0.0.1) made an outside request look local: the loopback-only status page was public."""
    assert bot.http.get("/").status_code == 200  # a direct loopback client
    for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}):
        assert bot.http.get("/", headers=header).status_code == 403, header
        assert bot.http.get("/metrics", headers=header).status_code == 403, header


def test_uvicorn_believes_no_proxy_unless_configured(settings):
    from pipeline.cli.serve import uvicorn_options
    assert uvicorn_options(settings) == {"proxy_headers": False}
    assert uvicorn_options(replace(settings, forwarded_allow_ips="10.0.0.5")) == {
        "proxy_headers": True, "forwarded_allow_ips": "10.0.0.5"}
