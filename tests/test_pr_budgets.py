"""Budgets per pull request (issue 22, point 8) and documents in the taxonomy's own history.

Each test's input is the exploit or the failing case: a leaf asking for too many chunks, leaves,
completions or patterns; a document too large to read (checked with ``git cat-file -s`` before
any read); 60 patterns matching one file (read once); ``repo: .`` with a commit of the taxonomy
repository (failed with "commit … is not in the documents folder")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.budgets import BudgetError, Budgets
from pipeline.sdg import documents as sdg_documents
from pipeline.sdg.documents import DocumentError, fetch
from pipeline.sdg.generate import GenerateConfig, generate
from tests.fakes.teacher import ScriptedTeacher

ROOT = Path(__file__).resolve().parents[1]
BRENVIK = "knowledge/geography/fictional/brenvik_isle"


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    for name in ("SPROUT_MAX_LEAVES", "SPROUT_MAX_CHUNKS", "SPROUT_MAX_COMPLETIONS",
                 "SPROUT_MAX_COMPLETIONS_PER_LEAF", "SPROUT_MAX_PATTERNS", "SPROUT_MAX_DOCUMENT_BYTES",
                 "SPROUT_MAX_DOCUMENT_FILE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("setting,value,words", [
    ("SPROUT_MAX_CHUNKS", "1", "document chunks"),
    ("SPROUT_MAX_COMPLETIONS_PER_LEAF", "3", "teacher completions"),
    ("SPROUT_MAX_COMPLETIONS", "3", "teacher completions"),
    ("SPROUT_MAX_DOCUMENT_BYTES", "100", "size of all documents"),
])
def test_a_leaf_over_budget_stops_before_the_teacher_is_called(cache, tmp_path, monkeypatch, setting, value, words):
    monkeypatch.setenv(setting, value)
    teacher = ScriptedTeacher()
    with pytest.raises(BudgetError, match=rf"{words}.*over the budget.*{setting}"):
        generate(ROOT / "taxonomy", tmp_path / "out", teacher, GenerateConfig(), only=[BRENVIK])
    assert teacher.calls == 0


def test_too_many_leaves_in_one_run(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_MAX_LEAVES", "2")
    teacher = ScriptedTeacher()
    with pytest.raises(BudgetError, match="leaves to generate.*SPROUT_MAX_LEAVES"):
        generate(ROOT / "taxonomy", tmp_path / "out", teacher, GenerateConfig())
    assert teacher.calls == 0


def test_within_budget_generation_is_unchanged(cache, tmp_path):
    summary = generate(ROOT / "taxonomy", tmp_path / "out", ScriptedTeacher(), GenerateConfig(), only=[BRENVIK])
    assert summary["leaves"][0]["samples"] > 0


@pytest.fixture
def doc_repo(tmp_path):
    repo = tmp_path / "tax"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# A\n\nFirst version.\n")
    (repo / "docs" / "big.md").write_text("# Big\n\n" + "word " * 40_000)
    sh(repo, "init", "-q", "-b", "main")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", "docs")
    first = sh(repo, "rev-parse", "HEAD")
    (repo / "docs" / "a.md").write_text("# A\n\nSecond version.\n")
    sh(repo, "commit", "-q", "-am", "edit")
    return repo, first


def test_repo_dot_reads_a_commit_of_the_taxonomy_repository(doc_repo, cache):
    repo, first = doc_repo
    docs = fetch({"repo": ".", "commit": first, "patterns": ["docs/a.md"]}, repo)
    assert docs == [("docs/a.md", "# A\n\nFirst version.\n")]  # that commit, not the working tree
    with pytest.raises(DocumentError, match="not in the taxonomy repository's history"):
        fetch({"repo": ".", "commit": "0" * 40, "patterns": ["docs/a.md"]}, repo)


def test_repo_dot_keeps_the_size_rules(doc_repo, cache, monkeypatch):
    repo, first = doc_repo
    monkeypatch.setenv("SPROUT_MAX_DOCUMENT_FILE_BYTES", "100000")
    reads = []
    real_git = sdg_documents.git
    monkeypatch.setattr(sdg_documents, "git", lambda *a, **k: reads.append(a[1:3]) or real_git(*a, **k))
    with pytest.raises(BudgetError, match=r"docs/big.md in bytes is 200,\d+, over the budget"):
        fetch({"repo": ".", "commit": first, "patterns": ["docs/*.md"]}, repo)
    assert ("cat-file", "blob") not in reads  # sized with cat-file -s, never read


def test_repo_dot_in_the_validator(doc_repo, cache):
    from pipeline.taxonomy.documents import check_documents
    from pipeline.taxonomy.validate import LeafResult
    repo, first = doc_repo
    leaf = LeafResult(path="knowledge/x/qna.yaml", file="knowledge/x/qna.yaml", kind="knowledge",
                      data={"document": {"repo": ".", "commit": first, "patterns": ["docs/a.md"]}})
    assert list(check_documents(leaf, repo)) == []


def test_a_planted_git_file_is_not_the_taxonomy_repository(tmp_path, cache):
    from pipeline.taxonomy.sources import resolve_source
    tax = tmp_path / "tax"
    tax.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sh(elsewhere, "init", "-q")
    (tax / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")
    assert not resolve_source(".", tax).history


def test_sixty_patterns_matching_one_file_read_it_once(doc_repo, cache, monkeypatch):
    repo, first = doc_repo
    monkeypatch.setenv("SPROUT_MAX_PATTERNS", "100")
    reads = []
    real_git = sdg_documents.git
    monkeypatch.setattr(sdg_documents, "git", lambda *a, **k: reads.append(a[1:3]) or real_git(*a, **k))
    patterns = ["docs/a.md", "**/a.md", "docs/*a.md"] * 20
    assert [n for n, _ in fetch({"repo": ".", "commit": first, "patterns": patterns}, repo)] == ["docs/a.md"]
    assert reads.count(("cat-file", "blob")) == 1


def test_too_many_patterns(doc_repo, cache):
    repo, first = doc_repo
    with pytest.raises(BudgetError, match="document patterns is 21, over the budget of 20.*SPROUT_MAX_PATTERNS"):
        fetch({"repo": ".", "commit": first, "patterns": ["docs/a.md"] * 21}, repo)


def test_budgets_read_from_the_environment():
    assert Budgets.from_env({"SPROUT_MAX_CHUNKS": "7"}).chunks == 7
    with pytest.raises(BudgetError, match="whole number"):
        Budgets.from_env({"SPROUT_MAX_CHUNKS": "lots"})
