"""POST /webhook over real HTTP: verify before parsing, store, acknowledge; nothing else."""

import base64
import json
from pathlib import Path

import pytest

from bot.signature import SignatureError, sign, verify
from tests.bot.conftest import pr_payload
from tests.conftest import SHARED

SIGNED = SHARED / "github" / "signed-deliveries"
REAL_SECRET = "402786017574bd28f9d8f7a18648939751c47fe09077d56e10f0444f14fbb73b"


def signed_deliveries():
    if not SIGNED.exists():
        pytest.skip("shared signed deliveries not present")
    return sorted(SIGNED.glob("*.json"))


def test_real_github_signatures_verify_over_raw_bytes():
    files = signed_deliveries()
    assert len(files) == 9
    for f in files:
        d = json.loads(f.read_text())
        body = base64.b64decode(d["body_raw_base64"])
        verify(body, d["headers"]["x-hub-signature-256"], REAL_SECRET)
        reserialised = json.dumps(json.loads(body)).encode()
        if reserialised != body:  # re-serialised JSON is not what GitHub signed
            with pytest.raises(SignatureError):
                verify(reserialised, d["headers"]["x-hub-signature-256"], REAL_SECRET)
        with pytest.raises(SignatureError):
            verify(body, d["headers"]["x-hub-signature-256"], REAL_SECRET + "x")


def test_real_deliveries_are_accepted_by_the_running_bot(make_bot, settings):
    from dataclasses import replace
    bot = make_bot(replace(settings, webhook_secret=REAL_SECRET))
    for f in signed_deliveries():
        d = json.loads(f.read_text())
        h = d["headers"]
        r = bot.deliver(h["x-github-event"], base64.b64decode(d["body_raw_base64"]),
                        delivery=h["x-github-delivery"], signature=h["x-hub-signature-256"])
        assert r.status_code == 202, r.text
    assert len(bot.store.recent(100)) == 9


def test_forged_missing_and_sha1_only_signatures_are_401(bot):
    body = json.dumps(pr_payload("opened", 1, "a" * 40)).encode()
    assert bot.deliver("pull_request", body, signature=sign(body, "wrong")).status_code == 401
    assert bot.deliver("pull_request", body, signature="").status_code == 401
    sha1 = bot.deliver("pull_request", body, signature="",
                       headers={"X-Hub-Signature": "sha1=" + "0" * 40})
    assert sha1.status_code == 401
    tampered = bot.http.post("/webhook", content=body.replace(b'"opened"', b'"closed"'), headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": sign(body, bot.settings.webhook_secret)})
    assert tampered.status_code == 401
    truncated = bot.http.post("/webhook", content=body[:100], headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-2",
        "X-Hub-Signature-256": sign(body, bot.settings.webhook_secret)})
    assert truncated.status_code == 401
    assert bot.store.recent() == []


def test_bad_json_is_400_after_a_valid_signature(bot):
    assert bot.deliver("pull_request", b"{not json").status_code == 400
    assert bot.deliver("pull_request", b"[1, 2]").status_code == 400
    assert bot.store.recent() == []


def test_oversized_payload_is_413_unread(bot):
    import socket
    with socket.create_connection(("127.0.0.1", bot.port), timeout=10) as s:
        s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                  b"X-GitHub-Delivery: big\r\nContent-Length: %d\r\n\r\n{" % (26 * 1024 * 1024))
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    chunked = bot.http.post("/webhook", content=iter([b"x" * (1 << 20)] * 26),
                            headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "big2"})
    assert chunked.status_code == 413
    assert bot.store.recent() == []


def test_ping_is_200_and_not_stored(bot):
    r = bot.deliver("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert r.status_code == 200 and r.json()["zen"]
    assert bot.store.recent() == []


def test_redelivery_is_acknowledged_not_stored_twice(bot):
    payload = {"action": "created", "repository": {"full_name": "x/y"}}
    first = bot.deliver("star", payload, delivery="same-id")
    again = bot.deliver("star", payload, delivery="same-id")
    assert first.status_code == again.status_code == 202
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert bot.wait_idle()["ignored"] == 1  # unknown events are stored, then ignored


def test_missing_event_headers_are_400(bot):
    body = b"{}"
    r = bot.http.post("/webhook", content=body, headers={"X-Hub-Signature-256": sign(body, bot.settings.webhook_secret)})
    assert r.status_code == 400
