"""The emulator answers in the shapes real GitHub recorded (PyGithub's own test recordings)."""

import json
import time
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED
from tests.github_emulator import Emulator
from tests.github_emulator.replay import read

REPLAY = SHARED / "github" / "pygithub-replay"
REPO = "PyGithub/PyGithub"

# Recorded fields we do not emulate: URL templates, counters and settings the bot never reads.
NOT_EMULATED = {
    "check_run": set(),
    "pull_file": set(),
    "comment": {"author_association", "performed_via_github_app", "reactions"},
    "token": set(),
    "contents": {"_links"},
    "issue": {"active_lock_reason", "assignee", "assignees", "author_association", "body", "closed_at",
              "closed_by", "comments", "comments_url", "created_at", "events_url", "labels", "labels_url",
              "locked", "milestone", "node_id", "reactions", "repository_url", "timeline_url", "updated_at",
              "performed_via_github_app", "state_reason", "draft", "sub_issues_summary", "type"},
    "commit": {"author", "committer", "comments_url", "stats"},
}


def kind_of(verb: str, path: str) -> str | None:
    rules = [("POST", r"/check-runs$", "check_run"), ("PATCH", r"/check-runs/\d+$", "check_run"),
             ("GET", r"/check-runs/\d+$", "check_run"),
             ("GET", r"/pulls/\d+/files", "pull_file"), ("GET", r"/issues/\d+/comments", "comment"),
             ("POST", r"/issues/\d+/comments", "comment"), ("PATCH", r"/issues/comments/\d+$", "comment"),
             ("GET", r"/issues/comments/\d+$", "comment"), ("POST", r"/access_tokens$", "token"),
             ("GET", r"/contents/", "contents"), ("GET", r"/issues/\d+$", "issue"),
             ("GET", r"/commits/[0-9a-f]+$", "commit")]
    for v, rx, kind in rules:
        if v == verb and re.search(rx, path.split("?")[0]):
            return kind
    return None


def exchanges():
    if not REPLAY.exists():
        pytest.skip("recordings not present")
    for f in sorted(REPLAY.glob("*.txt")):
        for e in read(f):
            kind = kind_of(e.verb, e.path)
            if kind and 200 <= e.status < 300 and e.response:
                yield f.name, kind, e


def sample(obj):
    return obj[0] if isinstance(obj, list) else obj


def test_emulator_shapes_match_recordings():
    checked = 0
    with Emulator() as emu:
        emu.add_repo(REPO)
        emu.state.installations.update({30614431: "x", 30614487: "y"})
        # an installation token: only Apps may write check runs, and edit their own comments
        app = "ghs_" + "0" * 36
        emu.state.tokens[app] = time.time() + 3600
        for name, kind, e in exchanges():
            recorded = sample(e.response)
            path = re.sub(r"^/repos/[^/]+/[^/]+", f"/repos/{REPO}", e.path)
            _seed(emu, kind, path, recorded)
            headers = ({"Authorization": "Bearer a.b.c"} if kind == "token"
                       else {"Authorization": f"token {app}"} if kind in ("check_run", "comment") else {})
            body = json.loads(e.request_body) if e.request_body and e.request_body.startswith("{") else None
            if kind == "check_run" and e.verb in ("PATCH", "GET"):
                run_id = _create_check(emu, headers)
                path = re.sub(r"/check-runs/\d+", f"/check-runs/{run_id}", path)
            if kind == "comment" and e.verb in ("PATCH", "GET") and "/comments/" in path:
                c = emu.add_comment(REPO, 31, f"{emu.state.app_slug}[bot]", "hi")
                path = re.sub(r"/comments/\d+", f"/comments/{c['id']}", path)
            r = httpx.request(e.verb, emu.url + path, json=body, headers=headers)
            assert r.status_code == e.status or (200 <= r.status_code < 300), (name, path, r.status_code, r.text[:200])
            ours = sample(r.json())
            missing = set(recorded) - set(ours) - NOT_EMULATED[kind]
            assert not missing, (name, kind, sorted(missing))
            for key in set(recorded) & set(ours):  # the same JSON types where both have a value
                a, b = recorded[key], ours[key]
                if a is not None and b is not None:
                    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, (name, key, a, b)
            checked += 1
    assert checked >= 12


def _seed(emu, kind, path, recorded):
    repo = emu.state.repos[REPO]
    m = re.search(r"/(?:pulls|issues)/(\d+)", path)
    if m and int(m.group(1)) not in repo.pulls:
        emu.add_pull(REPO, int(m.group(1)), "b" * 40, "a" * 40, {}, {"x.md": "1", "y.md": "2"})
    m = re.search(r"/contents/([^?]+)\?ref=([^&]+)", path)
    if m:
        from urllib.parse import unquote
        emu.add_commit(REPO, unquote(m.group(2)), {m.group(1): "# doc\n"})
    m = re.search(r"/commits/([0-9a-f]+)$", path.split("?")[0])
    if m:
        emu.add_commit(REPO, m.group(1), {"a.md": "x"})


def _create_check(emu, headers) -> int:
    r = httpx.post(f"{emu.url}/repos/{REPO}/check-runs", json={"name": "x", "head_sha": "a" * 40}, headers=headers)
    return r.json()["id"]


def test_emulator_serves_git_over_http(emulator, tmp_path):
    """The e2e tests clone from the emulator as jobs clone from GitHub."""
    import shutil

    import httpx

    from tests.conftest import ROOT, run_git
    repo = tmp_path / "work"
    shutil.copytree(ROOT / "taxonomy", repo)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    url = emulator.serve_git(REPO, repo)
    run_git(tmp_path, "clone", "-q", url, "clone")
    leaf = "compositional_skills/writing/freeform/haiku/qna.yaml"
    assert (tmp_path / "clone" / leaf).read_bytes() == (repo / leaf).read_bytes()
    assert httpx.get(f"{emulator.url}/{REPO}.git/..%2F..%2Fetc/passwd").status_code == 404
    assert httpx.get(f"{emulator.url}/octo-org/other.git/HEAD").status_code == 404
    assert httpx.get(f"{emulator.url}/{REPO}.git/HEAD").status_code == 200
