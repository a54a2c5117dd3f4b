"""A leaf's document.repo and document.commit are written by an attacker: each exploit is the
input here, and none reaches a command, a file outside the checkout or an unlisted host."""

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from pipeline.sdg.documents import DocumentError, fetch
from pipeline.taxonomy.documents import check_documents, fetch_commit
from pipeline.taxonomy.reader import read_leaf
from pipeline.taxonomy.sources import Source, SourceError, fetch_bounded, resolve_source
from tests.conftest import run_git
from tests.taxonomy.leaves import ATTRIBUTION, knowledge

CANARY_TEXT = "CANARY-7f3a9e secret outside the checkout"


@pytest.fixture
def canary(tmp_path) -> Path:
    """A secret file outside the taxonomy checkout; its text must never come back."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(CANARY_TEXT + "\n")
    run_git(outside, "init", "-q", "-b", "main")
    run_git(outside, "add", "-A")
    run_git(outside, "commit", "-qm", "secret")
    return outside


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "taxonomy"
    (root / "documents").mkdir(parents=True)
    (root / "documents" / "guide.md").write_text("# Guide\n\nA harmless document.\n")
    return root


def leaf_with(root: Path, repo: str, commit: str = "a" * 40, patterns=("guide.md",)):
    text = knowledge(commit=commit, patterns="".join(f"    - {p}\n" for p in patterns))
    text = text.replace("https://example.com/docs.git", repo)
    path = root / "knowledge" / "t" / "qna.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    (path.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    return read_leaf(path, root=root)


def everything_said(root: Path, result) -> str:
    """All text a user could see from checking and generating this leaf."""
    out = [x.message for x in check_documents(result, root)]
    try:
        out += [t for _, t in fetch(result.data["document"], root)]
    except DocumentError as e:
        out.append(str(e))
    return "\n".join(out)


@pytest.mark.parametrize("commit", [
    "--upload-pack=touch {canary};git-upload-pack",
    "-c core.sshCommand=touch {canary}",
    "--output={canary}",
])
def test_commit_injection_is_an_error_and_never_runs(tmp_path, checkout, commit):
    canary = tmp_path / "pwned"
    commit = commit.format(canary=canary)
    result = leaf_with(checkout, "https://github.com/example/docs", commit=commit)
    assert not result.ok
    assert [x.line for x in result.diagnostics if x.rule == "document-commit-unsafe"] == [48]
    everything_said(checkout, result)
    with pytest.raises(SourceError):
        fetch_commit(Source(url="https://github.com/example/docs"), commit)
    with pytest.raises(SourceError):
        fetch_commit(Source(folder=checkout / "documents"), commit)
    assert not canary.exists()


def test_plain_non_sha_commits_stay_warnings(checkout):
    for commit in ("HEAD", "main", "abc1234"):
        result = leaf_with(checkout, "https://github.com/example/docs", commit=commit)
        assert result.ok and [x.rule for x in result.diagnostics] == ["document-commit"]


@pytest.mark.parametrize("repo", [
    "file://{outside}", "{outside}", "file:///etc", "/", "ssh://git@github.com/x/y.git",
    "git://github.com/x/y.git", "git@github.com:x/y.git", "http://169.254.169.254/latest/meta-data",
    "http://github.com/x/y", "https://evil.example.com/x/y.git", "https://github.com.evil.example/x",
    "https://user:pw@github.com/x/y", "ext::sh -c touch% /tmp/pwned", "../outside",
    "documents/../../outside", "~/outside", "-uhttps://github.com/x",
])
def test_sources_outside_the_rules_are_refused(canary, checkout, repo):
    repo = repo.format(outside=canary)
    with pytest.raises(SourceError):
        resolve_source(repo, checkout)
    result = leaf_with(checkout, repo)
    said = everything_said(checkout, result)
    assert CANARY_TEXT not in said
    assert f"document.repo {repo!r}" in said or "document.repo is empty" in said  # the reason, named


def test_whitespace_around_a_repo_is_refused(checkout):
    for repo in (" documents", "documents\n", "https://github.com/x/y\t"):
        with pytest.raises(SourceError, match="whitespace"):
            resolve_source(repo, checkout)


def test_symlink_out_of_the_checkout_is_refused(canary, checkout):
    (checkout / "linked").symlink_to(canary, target_is_directory=True)
    with pytest.raises(SourceError, match="outside the taxonomy"):
        resolve_source("linked", checkout)
    assert CANARY_TEXT not in everything_said(checkout, leaf_with(checkout, "linked"))


def test_symlinked_file_inside_documents_is_not_followed(canary, checkout):
    (checkout / "documents" / "secret.md").symlink_to(canary / "secret.md")
    from pipeline.taxonomy.documents import materialize
    from pipeline.taxonomy.diff import git
    sha = git(materialize(checkout / "documents"), "rev-parse", "main").decode().strip()
    result = leaf_with(checkout, "documents", commit=sha, patterns=("'*.md'", "/etc/passwd", "secret.md"))
    said = everything_said(checkout, result)
    assert CANARY_TEXT not in said and "root:" not in said
    assert [n for n, _ in fetch(result.data["document"], checkout)] == ["guide.md"]


def test_a_bare_repository_planted_in_the_pr_is_read_as_files(checkout, tmp_path):
    # HEAD + config that would run a command if git opened the folder as a repository
    planted = checkout / "documents"
    (planted / "HEAD").write_text("ref: refs/heads/main\n")
    (planted / "config").write_text(f"[core]\n\tfsmonitor = touch {tmp_path / 'pwned'}\n")
    from pipeline.taxonomy.documents import materialize
    from pipeline.taxonomy.diff import git
    sha = git(materialize(planted), "rev-parse", "main").decode().strip()
    result = leaf_with(checkout, "documents", commit=sha)
    assert [n for n, _ in fetch(result.data["document"], checkout)] == ["guide.md"]
    assert not (tmp_path / "pwned").exists()


def test_rooted_pattern_reads_from_the_repository_root(checkout):
    from pipeline.taxonomy.documents import materialize
    from pipeline.taxonomy.diff import git
    sha = git(materialize(checkout / "documents"), "rev-parse", "main").decode().strip()
    result = leaf_with(checkout, "documents", commit=sha, patterns=("/guide.md",))
    assert result.ok and [x.rule for x in result.diagnostics] == ["document-pattern-rooted"]
    assert fetch(result.data["document"], checkout)[0][0] == "guide.md"
    assert list(check_documents(result, checkout)) == []


# -- remote sources: an allow-listed loopback host serving git over HTTP --------------------------
@pytest.fixture
def served(tmp_path, monkeypatch):
    """A real repository served over git's dumb HTTP protocol by the GitHub emulator."""
    from tests.github_emulator import Emulator
    work = tmp_path / "docs-work"
    work.mkdir()
    (work / "guide.md").write_text("# Served guide\n\nServed over HTTP.\n")
    run_git(work, "init", "-q", "-b", "main")
    run_git(work, "add", "-A")
    run_git(work, "commit", "-qm", "docs")
    sha = run_git(work, "rev-parse", "HEAD").strip()
    with Emulator() as emu:
        emu.add_repo("docs/guide")
        url = emu.serve_git("docs/guide", work)
        yield emu, url, sha


def test_listed_loopback_host_is_fetched(served, checkout, monkeypatch):
    emu, url, sha = served
    with pytest.raises(SourceError, match="not on an allowed host"):
        resolve_source(url, checkout)
    monkeypatch.setenv("SPROUT_DOCUMENT_HOSTS", emu.url)  # the tests add it, explicitly
    result = leaf_with(checkout, url, commit=sha)
    assert fetch(result.data["document"], checkout) == [("guide.md", "# Served guide\n\nServed over HTTP.\n")]
    # a branch name resolves to a full SHA first; only that SHA is fetched
    mirror, full = fetch_commit(resolve_source(url, checkout), "main")
    assert full == sha


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.end_headers()

    def log_message(self, *a):
        pass


class _Hang(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        time.sleep(30)

    def log_message(self, *a):
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_redirect_to_another_host_is_not_followed(served, checkout, monkeypatch):
    emu, url, sha = served
    _Redirect.target = emu.url  # the emulator is NOT listed; only the redirector is
    server, origin = _serve(_Redirect)
    try:
        monkeypatch.setenv("SPROUT_DOCUMENT_HOSTS", origin)
        result = leaf_with(checkout, f"{origin}/docs/guide.git", commit=sha)
        with pytest.raises(DocumentError):
            fetch(result.data["document"], checkout)
    finally:
        server.shutdown()


def test_hanging_and_huge_repositories_end_with_a_clear_error(served, tmp_path):
    emu, url, sha = served
    server, origin = _serve(_Hang)
    mirror = tmp_path / "mirror.git"
    run_git(tmp_path, "init", "-q", "--bare", str(mirror))
    try:
        start = time.monotonic()
        with pytest.raises(SourceError, match="took longer"):
            fetch_bounded(mirror, ["--end-of-options", f"{origin}/x.git", "+refs/heads/*:refs/heads/*"],
                          "http", timeout=2)
        assert time.monotonic() - start < 10
    finally:
        server.shutdown()
    with pytest.raises(SourceError, match="larger than"):  # the limit is on growth: 1 byte
        fetch_bounded(mirror, ["--end-of-options", url, "+refs/heads/*:refs/heads/*"], "http", max_bytes=1)
    run_git(tmp_path, "init", "-q", "--bare", str(tmp_path / "roomy.git"))
    fetch_bounded(tmp_path / "roomy.git", ["--end-of-options", url, "+refs/heads/*:refs/heads/*"], "http")

