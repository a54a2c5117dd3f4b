"""Chat-ops comments: commands, permissions, and what the bot ignores."""

from dataclasses import replace

import pytest

from bot.commands import parse
from tests.bot.conftest import REPO, comment_payload
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

LEAF = "compositional_skills/math/arithmetic/qna.yaml"


@pytest.fixture
def pr(emulator):
    return emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})


def say(bot, emulator, author, body, **kw):
    c = emulator.add_comment(REPO, 1, author, body)
    assert bot.deliver("issue_comment", comment_payload(c, 1, author, **kw)).status_code == 202
    bot.wait_idle()
    return c


def bot_replies(emulator):
    me = f"{emulator.state.app_slug}[bot]"
    return [c["body"] for c in emulator.comments(REPO, 1) if c["_author"] == me]


def reactions(emulator, comment):
    return [r["content"] for r in emulator.state.repos[REPO].reactions if r["_comment"] == comment["id"]]


@pytest.mark.parametrize("body,expected", [
    ("/sprout help", ("help", [])), ("/sprout", ("help", [])), ("  /Sprout RETRAIN now", ("retrain", ["now"])),
    ("@sprout status", ("status", [])), ("@sprout[bot] validate", ("validate", [])),
    ("thanks!\n/sprout validate", ("validate", [])), ("see `/sprout help`", None),
    ("> /sprout retrain", None), ("```\n/sprout retrain\n```", None), ("/sprouting", None),
])
def test_parse(body, expected):
    assert parse(body, "/sprout", "sprout") == expected


def test_help_for_anyone(bot, emulator, pr):
    c = say(bot, emulator, "stranger", "/sprout help")
    [reply] = bot_replies(emulator)
    assert "/sprout retrain" in reply and "write access" in reply
    assert reactions(emulator, c) == ["eyes"]


def test_validate_for_anyone_reruns_the_check(bot, emulator, pr):
    c = say(bot, emulator, "stranger", "/sprout validate")
    assert [r["conclusion"] for r in emulator.check_runs(REPO)] == ["success"]
    assert reactions(emulator, c) == ["eyes", "+1"]


def test_costly_command_refused_politely_without_write(bot, emulator, pr):
    say(bot, emulator, "stranger", "/sprout retrain")
    [reply] = bot_replies(emulator)
    assert "@stranger" in reply and "write, maintain or admin" in reply
    assert bot.store.jobs() == []


def test_costly_command_allowed_with_maintain(bot, emulator, pr):
    say(bot, emulator, "maintainer", "/sprout retrain")
    [reply] = bot_replies(emulator)
    assert "not enabled" in reply  # no dispatcher in this bot: the permission check passed


def test_trusted_team_member_is_allowed_and_empty_list_grants_nothing(make_bot, settings, emulator, pr):
    emulator.state.teams[("octo-org", "trainers")] = {"teammate"}
    emulator.state.installation_permissions["members"] = "read"  # Organization > Members: read
    plain = make_bot(settings)
    say(plain, emulator, "teammate", "/sprout generate")
    assert "needs write" in bot_replies(emulator)[-1]
    teamed = make_bot(replace(settings, trusted_teams=("octo-org/trainers",),
                              database_url=settings.database_url + "2"))
    say(teamed, emulator, "teammate", "/sprout generate")
    assert "needs a Ray cluster" in bot_replies(emulator)[-1]  # allowed; no dispatcher here


def test_unknown_command_gets_help(bot, emulator, pr):
    say(bot, emulator, "stranger", "/sprout dance")
    [reply] = bot_replies(emulator)
    assert "don't know the command `dance`" in reply


def test_status_lists_jobs(bot, emulator, pr):
    bot.store.add_job(REPO, 1, "c" * 40, "retrain", 42)
    say(bot, emulator, "stranger", "/sprout status")
    assert "ccccccc" in bot_replies(emulator)[0]


def test_ignored_comments(bot, emulator, pr):
    say(bot, emulator, "maintainer", "/sprout help", action="edited")
    say(bot, emulator, "maintainer", "/sprout help", action="deleted")
    say(bot, emulator, "sprout[bot]", "/sprout help", author_type="Bot")
    say(bot, emulator, "maintainer", "just a normal comment")
    assert bot_replies(emulator) == []
    c = emulator.add_comment(REPO, 1, "maintainer", "/sprout help")
    payload = comment_payload(c, 1, "maintainer")
    del payload["issue"]["pull_request"]  # a comment on an issue, not a pull request
    bot.deliver("issue_comment", payload)
    bot.wait_idle()
    assert bot_replies(emulator) == []


def test_team_lookup_without_members_permission_is_a_clear_reply(make_bot, settings, emulator, pr):
    emulator.state.teams[("octo-org", "trainers")] = {"teammate"}
    assert "members" not in emulator.state.installation_permissions  # GitHub answers 403
    bot = make_bot(replace(settings, trusted_teams=("octo-org/trainers",)))
    say(bot, emulator, "teammate", "/sprout generate")
    reply = bot_replies(emulator)[-1]
    assert "Members: read" in reply and "403" in reply
    assert bot.store.jobs() == []
