"""A pull request's tree is checked out and hashed safely (issue 22, point 8): links are never
followed by the tree hash, no filter driver runs at checkout or when documents are materialised
(git-lfs or any driver a node's git config defines), and the clone is bounded and partial."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.checkout import CheckoutError, run_bounded, tree_hash
from pipeline.run import Run, RunConfig, RunError

ROOT = Path(__file__).resolve().parents[1]


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_tree_hash_never_follows_a_link(tmp_path):
    tax = tmp_path / "tax"
    (tax / "knowledge").mkdir(parents=True)
    (tax / "knowledge" / "qna.yaml").write_text("version: 3\n")
    (tax / "knowledge" / "pagemap.md").symlink_to("/proc/self/pagemap")
    (tax / "zero").symlink_to("/dev/zero")
    (tax / "root").symlink_to("/")
    os.mkfifo(tax / "fifo")  # opening it would block forever
    # in a child with 2 GiB of address space: reading /proc/self/pagemap would take far more
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from pipeline.run import Run; print(Run._tree_hash(__import__('pathlib').Path(sys.argv[1])))")
    p = subprocess.run([sys.executable, "-c", code, str(tax)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-500:]
    first = p.stdout.strip()
    assert len(first) == 16
    # the link's text is what counts: pointing it elsewhere changes the hash, its target does not
    assert tree_hash(tax) == first
    (tax / "knowledge" / "pagemap.md").unlink()
    (tax / "knowledge" / "pagemap.md").symlink_to("/proc/self/maps")
    assert tree_hash(tax) != first


def _evil_config(tmp_path: Path) -> tuple[Path, Path]:
    """A git config defining drivers that leave a marker file when run, as a node's global config
    (git-lfs installs one just like it) would."""
    marker = tmp_path / "PWNED"
    cmd = f"sh -c 'touch {marker}; cat'"
    config = tmp_path / "evil.gitconfig"
    config.write_text(f'[filter "evil"]\n\tsmudge = {cmd}\n\tclean = {cmd}\n\trequired = true\n'
                      f'[filter "lfs"]\n\tsmudge = {cmd}\n\tclean = {cmd}\n\tprocess = {cmd}\n\trequired = true\n')
    return config, marker


def _pr_repo(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    (src / "knowledge" / "x").mkdir(parents=True)
    sh(src, "init", "-q", "-b", "main")
    (src / "knowledge" / "x" / "qna.yaml").write_text("version: 3\n")
    sh(src, "add", "-A")
    sh(src, "commit", "-q", "-m", "base")
    # the pull request: attributes naming drivers, an .lfsconfig pointing anywhere, a link out
    (src / ".gitattributes").write_text("* filter=evil\n*.yaml filter=lfs diff=lfs merge=lfs\n")
    (src / ".lfsconfig").write_text("[lfs]\n\turl = https://evil.example/lfs\n")
    (src / "knowledge" / "x" / "leak.md").symlink_to("/proc/self/environ")
    sh(src, "add", "-A")
    sh(src, "commit", "-q", "-m", "pr")
    return src, sh(src, "rev-parse", "HEAD")


def test_checkout_runs_no_filter_driver_and_writes_links_as_text(tmp_path, monkeypatch):
    src, head = _pr_repo(tmp_path)
    config, marker = _evil_config(tmp_path)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    run = Run(RunConfig(taxonomy=str(src), ref=head, out=str(tmp_path / "run")), log=lambda *a: None)
    run.checkout()
    checkout = tmp_path / "run" / "checkout"
    assert not marker.exists(), "a filter driver ran at checkout"
    assert (checkout / "knowledge" / "x" / "qna.yaml").read_text() == "version: 3\n"
    leak = checkout / "knowledge" / "x" / "leak.md"
    assert not leak.is_symlink() and leak.read_text() == "/proc/self/environ"


def test_materialised_documents_run_no_filter_driver(tmp_path, monkeypatch):
    from pipeline.taxonomy.documents import materialize
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.\n")
    (docs / ".gitattributes").write_text("* filter=evil\n")
    config, marker = _evil_config(tmp_path)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    repo = materialize(docs)
    assert not marker.exists(), "a clean filter ran on the pull request's documents"
    assert sh(repo, "show", "main:a.md") == "# A\n\nText."


def test_clone_is_bounded_in_size(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    sh(src, "init", "-q", "-b", "main")
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    sh(src, "add", "-A")
    sh(src, "commit", "-q", "-m", "big")
    monkeypatch.setenv("SPROUT_CHECKOUT_MAX_BYTES", str(256 << 10))
    run = Run(RunConfig(taxonomy=str(src), ref="main", out=str(tmp_path / "run")), log=lambda *a: None)
    with pytest.raises(RunError, match="larger than"):
        run.checkout()


def test_a_hanging_git_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_CHECKOUT_TIMEOUT", "0.5")
    with pytest.raises(CheckoutError, match="longer than"):
        run_bounded([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, "cloning x")


def test_clone_fetches_only_the_contents_it_checks_out(tmp_path):
    """Over a transport that allows it, the clone is partial: a large file deleted from the
    history is never downloaded (the diff needs commits and trees, not old contents)."""
    src = tmp_path / "src"
    (src / "knowledge").mkdir(parents=True)
    sh(src, "init", "-q", "-b", "main")
    sh(src, "config", "uploadpack.allowFilter", "true")
    (src / "old.bin").write_bytes(os.urandom(1 << 20))
    (src / "knowledge" / "qna.yaml").write_text("version: 3\n")
    sh(src, "add", "-A")
    sh(src, "commit", "-q", "-m", "one")
    big = sh(src, "rev-parse", "HEAD:old.bin")
    sh(src, "rm", "-q", "old.bin")
    sh(src, "commit", "-q", "-m", "two")
    run = Run(RunConfig(taxonomy=f"file://{src}", out=str(tmp_path / "run")), log=lambda *a: None)
    run.checkout()
    checkout = tmp_path / "run" / "checkout"
    assert (checkout / "knowledge" / "qna.yaml").exists()
    missing = sh(checkout, "rev-list", "--objects", "--all", "--missing=print")
    assert f"?{big}" in missing.split()
