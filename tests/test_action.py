"""The composite Action (.github/actions/validate/action.yml) run as a GitHub runner runs it: its
own steps read from the file, expressions filled in from the inputs, each `run:` step in bash
with GITHUB_ACTION_PATH, GITHUB_WORKSPACE and GITHUB_OUTPUT set, on a taxonomy repository with a
base ref, the action itself in a copy laid out as the runner lays it (_actions/OWNER/REPO/REF)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_git
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

ACTION_FILE = ROOT / ".github/actions/validate/action.yml"
EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
# Steps a runner takes from the marketplace: what the test stands in for them with.
KNOWN_USES = {"actions/setup-python": "python on PATH (a fresh venv)",
              "actions/cache": "recorded: path and key"}


def _action() -> dict:
    return yaml.safe_load(ACTION_FILE.read_text())


def _evaluate(text: str, context: dict) -> str:
    def value(m):
        expr = m.group(1)
        if expr not in context:
            raise AssertionError(f"action.yml uses ${{{{ {expr} }}}}, which this runner does not provide")
        return context[expr]
    return EXPR.sub(value, text)


def run_action(action_path: Path, workspace: Path, inputs: dict, python_bin: Path, tmp: Path):
    """Run every step of the composite action; returns (stdout of each run step, cache steps, rc)."""
    action = _action()
    declared = action["inputs"]
    assert set(inputs) <= set(declared), f"unknown inputs {set(inputs) - set(declared)}"
    context = {f"inputs.{k}": str(inputs.get(k, v.get("default", ""))) for k, v in declared.items()}
    context["github.action_path"] = str(action_path)
    base_env = {"PATH": f"{python_bin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp)),
                "GITHUB_ACTION_PATH": str(action_path), "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_ACTIONS": "true", "CI": "true", "RUNNER_OS": "Linux", "RUNNER_TEMP": str(tmp),
                "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache/pip"))}
    outputs, caches, logs = {}, [], []
    for i, step in enumerate(action["runs"]["steps"]):
        if "uses" in step:
            name = step["uses"].split("@")[0]
            assert name in KNOWN_USES, f"step {i} uses {step['uses']}: not emulated here"
            assert "@" in step["uses"], "pin the version of every action used"
            with_ = {k: _evaluate(str(v), context) for k, v in (step.get("with") or {}).items()}
            if name == "actions/cache":
                caches.append(with_)
            continue
        # Inputs reach a script through env, never spliced into its text (that would be script
        # injection from whoever writes the workflow's inputs, e.g. a PR's base ref or path).
        assert "inputs." not in step["run"], f"step {i} splices an input into its script"
        assert step.get("shell") == "bash"
        output_file = tmp / f"output-{i}"
        output_file.write_text("")
        env = {**base_env, "GITHUB_OUTPUT": str(output_file),
               **{k: _evaluate(str(v), context) for k, v in (step.get("env") or {}).items()}}
        script = tmp / f"step-{i}.sh"
        script.write_text(_evaluate(step["run"], context))
        # GitHub's bash invocation for `shell: bash`
        p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                           cwd=workspace, env=env, capture_output=True, text=True)
        logs.append(p)
        if p.returncode:
            return logs, caches, p.returncode
        for line in output_file.read_text().splitlines():
            key, _, val = line.partition("=")
            outputs[key] = val
            if "id" in step:
                context[f"steps.{step['id']}.outputs.{key}"] = val
    return logs, caches, 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The action checked out as a runner does, and a fresh Python for setup-python's place."""
    tmp = tmp_path_factory.mktemp("runner")
    action_repo = tmp / "_actions" / "owner" / "sprout" / "v1"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "bench/", "docs/")):
            (action_repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, action_repo / rel)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "python")], check=True)
    return action_repo / ".github/actions/validate", tmp / "python" / "bin"


def _taxonomy_repo(path: Path) -> str:
    for name in ("good", "other"):
        leaf = path / "compositional_skills" / name / "qna.yaml"
        leaf.parent.mkdir(parents=True)
        leaf.write_text(SKILL)
        (leaf.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    # A broken leaf already on the base branch: validating only the changed leaves must skip it.
    old = path / "compositional_skills" / "old_broken" / "qna.yaml"
    old.parent.mkdir(parents=True)
    old.write_text(SKILL.replace("created_by: tester", "created_by:"))
    (old.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    run_git(path, "init", "-q", "-b", "main")
    run_git(path, "add", "-A")
    run_git(path, "commit", "-qm", "base")
    return run_git(path, "rev-parse", "HEAD").strip()


@pytest.mark.slow
def test_the_action_installs_itself_and_annotates_the_changed_lines(installed, tmp_path):
    action_path, python_bin = installed
    workspace = tmp_path / "work" / "taxonomy-repo"
    base = _taxonomy_repo(workspace)
    run_git(workspace, "checkout", "-qb", "pr")
    bad = workspace / "compositional_skills" / "good" / "qna.yaml"
    lines = SKILL.splitlines(keepends=True)
    lineno = next(i for i, line in enumerate(lines, 1) if line.startswith("created_by:"))
    bad.write_text(SKILL.replace("created_by: tester", "created_by:"))
    run_git(workspace, "commit", "-qam", "break a leaf")

    logs, caches, rc = run_action(action_path, workspace, {"path": ".", "base-ref": base}, python_bin, tmp_path)
    assert rc == 1, [(p.stdout, p.stderr) for p in logs]
    out = logs[-1].stdout
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert errors and all(e.startswith(f"::error file=compositional_skills/good/qna.yaml,line={lineno},")
                          for e in errors), out
    assert "old_broken" not in out and "Traceback" not in logs[-1].stderr
    # The Action installed Sprout at its own ref, with its pinned dependencies, into the runner's Python.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    freeze = subprocess.run([str(python_bin / "python"), "-m", "pip", "freeze"], capture_output=True, text=True,
                            env=clean_env).stdout
    pins = [x for x in (action_path / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert all(pin in freeze.splitlines() for pin in pins), freeze
    where = subprocess.run([str(python_bin / "python"), "-c", "import importlib.metadata as m, pipeline; "
                            "print(m.distribution('sprout').read_text('direct_url.json')); print(pipeline.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=clean_env).stdout.splitlines()
    assert str(action_path.parents[2]) in where[0] and '"editable"' not in where[0], where
    assert where[1].startswith(str(python_bin.parent)), where  # the installed copy, not a source tree
    # and caches pip under a key that names the pins' hash
    assert len(caches) == 1 and caches[0]["path"] and re.fullmatch(
        r"sprout-validate-pip-Linux-\w+-py3\.\d+-[0-9a-f]{16}", caches[0]["key"]), caches

    # The pull request fixed: it passes; the untouched broken leaf on the base is not its business.
    bad.write_text(SKILL.replace("tester", "fixer"))
    run_git(workspace, "commit", "-qam", "fix")
    logs, _, rc = run_action(action_path, workspace, {"path": ".", "base-ref": base}, python_bin, tmp_path)
    assert rc == 0, logs[-1].stdout + logs[-1].stderr
    assert "::error" not in logs[-1].stdout

    # Inputs are values, not shell: a hostile path or ref runs nothing.
    for inputs in ({"path": "$(touch pwned)", "base-ref": base}, {"path": ".", "base-ref": "$(touch pwned)"},
                   {"path": ".", "base-ref": "--output=pwned"}):
        logs, _, rc = run_action(action_path, workspace, inputs, python_bin, tmp_path)
        assert rc != 0 and not (workspace / "pwned").exists(), inputs
