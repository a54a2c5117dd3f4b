"""`sprout preview` and `sprout precheck` on a pull request's commits (a real git repository)."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.preview import precheck, preview
from pipeline.run import RunConfig, RunError
from tests.conftest import ROOT, run_git

HAIKU = "compositional_skills/writing/freeform/haiku/qna.yaml"


@pytest.fixture
def pr(sample_taxonomy):
    """(repo, base, head): a branch adding one seed to the haiku leaf and editing the README."""
    repo = sample_taxonomy
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    base = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "checkout", "-qb", "feature")
    leaf = repo / HAIKU
    leaf.write_text(leaf.read_text().replace("seed_examples:\n", "seed_examples:\n"
                    "  - question: Write a haiku about a lighthouse in fog.\n    answer: |\n"
                    "      Grey breath on the sea\n      one slow eye opens and shuts\n"
                    "      ships count it like prayer\n", 1))
    run_git(repo, "commit", "-qam", "haiku: lighthouse")
    head = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "checkout", "-q", "main")
    return repo, base, head


def test_preview_generates_only_the_changed_leaf(pr, tmp_path):
    repo, base, head = pr
    out, result = preview(RunConfig(taxonomy=str(repo), ref=head, base_ref=base, out=str(tmp_path / "pv"),
                                    runs_root=str(tmp_path / "runs"), embeddings=False), log=lambda m: None)
    assert [x["path"] for x in result["leaves"]] == [HAIKU]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["generated_leaves"] == [HAIKU]
    assert list(manifest["stages"]) == ["checkout", "validate", "diff", "generate", "filter"]  # no training
    leaf = result["leaves"][0]
    assert leaf["generated"] > leaf["kept"] > 0 and len(leaf["samples"]) == 3
    assert (result["ref"], result["base_ref"]) == (head, base)
    md = (out / "preview.md").read_text()
    assert f"`{HAIKU}` | {leaf['generated']} → {leaf['kept']}" in md and "**Q**" in md
    assert "exact\\_dedup" in md  # the funnel names what dropped samples (escaped Markdown)
    haiku = [x for x in leaf["samples"] if "\n" in x["answer"].strip()]
    assert haiku
    for x in haiku:  # line breaks survive in the comment
        assert "<br>".join(line.strip() for line in x["answer"].strip().splitlines() if line.strip()) in md


def test_preview_of_a_change_without_leaves(pr, tmp_path):
    repo, base, _ = pr
    run_git(repo, "checkout", "-qb", "docs")
    (repo / "README.md").write_text("only words\n")
    run_git(repo, "commit", "-qam", "docs")
    head = run_git(repo, "rev-parse", "HEAD").strip()
    out, result = preview(RunConfig(taxonomy=str(repo), ref=head, base_ref=base, out=str(tmp_path / "pv"),
                                    runs_root=str(tmp_path / "runs"), embeddings=False), log=lambda m: None)
    assert result["leaves"] == [] and "changes no leaves" in (out / "preview.md").read_text()


def test_unknown_refs_are_clear_errors(pr, tmp_path):
    repo, base, head = pr
    with pytest.raises(RunError, match="cannot diff against 0123456"):
        preview(RunConfig(taxonomy=str(repo), ref=head, base_ref="0123456", out=str(tmp_path / "a"),
                          runs_root=str(tmp_path / "runs")), log=lambda m: None)
    with pytest.raises(RunError, match="checkout feedface.*not found"):
        preview(RunConfig(taxonomy=str(repo), ref="feedface", base_ref=base, out=str(tmp_path / "b"),
                          runs_root=str(tmp_path / "runs")), log=lambda m: None)


def test_checkout_fetches_a_pull_request_head_only_reachable_from_refs_pull(pr, tmp_path):
    """A fork's PR head is not on any branch of the base repository: GitHub keeps refs/pull/N/head."""
    repo, base, head = pr
    run_git(repo, "update-ref", "refs/pull/7/head", head)
    run_git(repo, "branch", "-qD", "feature")
    out, result = preview(RunConfig(taxonomy=f"file://{repo}", ref=head, base_ref=base, out=str(tmp_path / "pv"),
                                    runs_root=str(tmp_path / "runs"), embeddings=False), log=lambda m: None)
    assert [x["path"] for x in result["leaves"]] == [HAIKU]


def test_precheck_asks_the_current_student(pr, tmp_path):
    repo, base, head = pr
    runs = tmp_path / "runs"
    out, result = precheck(RunConfig(taxonomy=str(repo), ref=head, base_ref=base, out=str(tmp_path / "pc"),
                                     runs_root=str(runs), student="tiny"), log=lambda m: None)
    [leaf] = result["leaves"]
    assert leaf["path"] == HAIKU and len(leaf["questions"]) == 6  # 5 seeds + the new one
    assert any("lighthouse in fog" in q["question"] for q in leaf["questions"])
    assert all(0.0 <= q["score"] <= 1.0 for q in leaf["questions"])
    assert result["student_described"] == "the base student"
    md = (out / "precheck.md").read_text()
    assert "| question | expected | student | score |" in md and "Grey breath on the sea" in md

    # With an accepted model in the registry, that is the student a merge starts from: asked instead.
    from tests.fakes.models import tiny_model
    model = tiny_model(tmp_path / "accepted")
    (runs / "models.json").write_text(json.dumps([
        {"id": "run-1", "path": str(model), "verdict": "accepted", "taxonomy_sha": base},
        {"id": "run-2", "path": str(tmp_path / "gone"), "verdict": "rejected", "taxonomy_sha": base}]))
    _, again = precheck(RunConfig(taxonomy=str(repo), ref=head, base_ref=base, out=str(tmp_path / "pc2"),
                                  runs_root=str(runs), student="tiny"), log=lambda m: None)
    assert again["student"] == str(model) and "run-1" in again["student_described"]


def test_cli_preview_prints_the_report_between_markers(pr, tmp_path):
    repo, base, head = pr
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "preview", str(repo), "--ref", head, "--base", base,
                        "--out", str(tmp_path / "pv"), "--runs-root", str(tmp_path / "runs"), "--no-embeddings",
                        "--print-report"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "SPROUT_REPORT_NONCE": "0123456789abcdef" * 2})
    assert p.returncode == 0, p.stderr[-2000:]
    from bot.dispatch import extract_report
    report = extract_report(p.stdout, "0123456789abcdef" * 2)
    assert report["kind"] == "preview" and report["markdown"].startswith("## 🌱 Sprout preview: 1 leaf(s)")
    assert extract_report(p.stdout, "f" * 32) is None  # another job's nonce finds nothing
