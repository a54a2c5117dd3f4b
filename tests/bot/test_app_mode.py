"""GitHub App mode: JWT -> installation token, and recovery of deliveries GitHub failed."""

import time
from dataclasses import replace

import pytest

from bot.github import GitHub
from bot.recovery import recover
from bot.store import Store
from tests.bot.conftest import REPO, pr_payload
from tests.github_emulator.state import iso
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

LEAF = "compositional_skills/math/arithmetic/qna.yaml"


@pytest.fixture
def app_settings(settings, pem):
    return replace(settings, github_token=None, app_id=12345, private_key=pem)


def test_app_mode_uses_an_installation_token(make_bot, app_settings, emulator):
    bot = make_bot(app_settings, recover=False)
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40, installation=42))
    assert bot.wait_idle()["done"] == 1
    assert emulator.calls("POST", r"/app/installations/42/access_tokens$")
    assert emulator.check_runs(REPO)[0]["conclusion"] == "success"
    bot.deliver("pull_request", pr_payload("synchronize", 1, "h" * 40, installation=42))
    bot.wait_idle()
    # the token is cached until shortly before it expires
    assert len(emulator.calls("POST", r"/access_tokens$")) == 1


def test_app_mode_without_installation_is_a_recorded_failure(make_bot, app_settings, emulator):
    bot = make_bot(app_settings, recover=False)
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40, installation=None), delivery="no-inst")
    bot.wait_idle()
    d = bot.store.delivery("no-inst")
    assert d["status"] == "failed" and "installation" in d["last_error"]


def test_recovery_redelivers_failed_deliveries_the_store_never_saw(app_settings, emulator, tmp_path):
    now = time.time()
    emulator.state.hook_deliveries = [
        {"id": 1, "guid": "lost", "status_code": 502, "delivered_at": iso(now - 60), "event": "pull_request"},
        {"id": 2, "guid": "lost", "status_code": 504, "delivered_at": iso(now - 30), "event": "pull_request"},
        {"id": 3, "guid": "ok", "status_code": 202, "delivered_at": iso(now - 30), "event": "pull_request"},
        {"id": 4, "guid": "stored", "status_code": 500, "delivered_at": iso(now - 30), "event": "issue_comment"},
        {"id": 5, "guid": "retried-ok", "status_code": 500, "delivered_at": iso(now - 50), "event": "pull_request"},
        {"id": 6, "guid": "retried-ok", "status_code": 202, "delivered_at": iso(now - 40), "event": "pull_request"},
        {"id": 7, "guid": "too-old", "status_code": 500, "delivered_at": iso(now - 4 * 86400), "event": "push"},
    ] + [{"id": 100 + i, "guid": f"fine-{i}", "status_code": 202, "delivered_at": iso(now), "event": "push"}
         for i in range(150)]  # more than one page
    store = Store(tmp_path / "r.db")
    store.add_delivery("stored", "issue_comment", "created", b"{}")
    assert recover(GitHub(app_settings, seconds_between_writes=None), store) == [2]
    assert emulator.state.redelivery_requests == [2]
