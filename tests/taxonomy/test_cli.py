"""`sprout validate` as people and CI run it: a real subprocess, real git."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_git
from tests.taxonomy.leaves import ATTRIBUTION, SKILL


def sprout(*args, cwd=ROOT, env=None):
    e = {**os.environ, "NO_COLOR": "1", **(env or {})}
    e.pop("GITHUB_ACTIONS", None)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=120)


def test_sample_taxonomy_is_clean():
    p = sprout("validate", "taxonomy")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "7 leaves checked, 7 valid" in p.stdout


def test_no_arguments_validates_the_taxonomy_folder():
    p = sprout("validate")
    assert p.returncode == 0 and "7 leaves checked" in p.stdout


def test_help_teaches():
    p = sprout("validate", "--help")
    assert p.returncode == 0
    for word in ("--diff", "--format", "--strict", "--check-documents", "examples:", "exit status"):
        assert word in p.stdout


@pytest.fixture
def broken(tmp_path):
    leaf = tmp_path / "compositional_skills" / "math" / "qna.yaml"
    leaf.parent.mkdir(parents=True)
    leaf.write_text(SKILL.replace("created_by: tester", "created_by:"))
    (leaf.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    return tmp_path


def test_text_output_names_file_line_rule_and_hint(broken):
    p = sprout("validate", str(broken))
    assert p.returncode == 1
    assert "qna.yaml:2:12: error [schema] .created_by must be a string, not empty (null)" in p.stdout
    assert "hint:" in p.stdout and "FAILED: 1 leaves checked" in p.stdout


def test_json_output(broken):
    p = sprout("validate", "--format", "json", str(broken))
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["summary"]["invalid"] == 1
    d = doc["results"][0]["diagnostics"][0]
    assert (d["line"], d["column"], d["rule"], d["severity"]) == (2, 12, "schema", "error")


def test_github_output_is_workflow_commands(broken):
    p = sprout("validate", "--format", "github", str(broken))
    line = p.stdout.splitlines()[0]
    assert line.startswith("::error file=") and ",line=2,col=12,title=sprout%3A schema::" in line


def test_auto_format_inside_github_actions(broken):
    p = sprout("validate", str(broken), env={"GITHUB_ACTIONS": "true"})
    assert p.stdout.startswith("::error ")


def test_usage_errors_exit_2(tmp_path):
    assert sprout("validate", str(tmp_path / "missing")).returncode == 2
    assert sprout("validate", "--format", "xml").returncode == 2
    notrepo = sprout("validate", "--diff", "HEAD", str(tmp_path))
    assert notrepo.returncode == 2 and "--diff" in notrepo.stderr


def test_diff_validates_only_changed_leaves(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "taxonomy", repo / "taxonomy")
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    haiku = repo / "taxonomy/compositional_skills/writing/freeform/haiku/qna.yaml"
    haiku.write_text(haiku.read_text().replace("created_by: sprout-maintainers", "created_by:"))
    new = repo / "taxonomy/compositional_skills/new_skill/qna.yaml"
    new.parent.mkdir(parents=True)
    new.write_text(SKILL)
    (new.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    shutil.rmtree(repo / "taxonomy/compositional_skills/reasoning")
    p = sprout("validate", "--diff", "main", "taxonomy", cwd=repo)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "2 changed leaves since main (1 deleted, not checked)" in p.stdout
    assert "haiku/qna.yaml:2:12: error [schema]" in p.stdout
    assert "2 leaves checked, 1 valid, 1 invalid" in p.stdout


def test_check_documents_on_sample_and_broken_pattern(sample_taxonomy):
    assert sprout("validate", "--check-documents", str(sample_taxonomy)).returncode == 0
    leaf = sample_taxonomy / "knowledge/science/earth/water_cycle/qna.yaml"
    leaf.write_text(leaf.read_text().replace("- water_cycle.md", "- missing/*.md"))
    p = sprout("validate", "--check-documents", str(sample_taxonomy))
    assert p.returncode == 1 and "[document-check]" in p.stdout and "missing/*.md" in p.stdout
