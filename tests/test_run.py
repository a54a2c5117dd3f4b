"""`sprout run` end to end on the sample taxonomy (small settings), resume, lineage, report."""

import json

import pytest

from pipeline import report as rpt
from pipeline.eval.scoring import rouge_l, token_f1
from pipeline.run import RunConfig, RunError, run


def test_scores():
    assert token_f1("Paris is the capital", "The capital is Paris") == 1.0
    assert token_f1("", "x") == 0.0 and rouge_l("a b c d", "a c d") == pytest.approx(2 * 0.75 * 1 / 1.75)


def small(tmp_path, taxonomy, **kw):
    return RunConfig(taxonomy=str(taxonomy), out=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"),
                     epochs=1, max_steps=3, embeddings=False, student="tiny", probe_questions=8, **kw)


@pytest.mark.slow
def test_run_resume_lineage_and_report(sample_taxonomy, tmp_path):
    logs = []
    out, report = run(small(tmp_path, sample_taxonomy), log=logs.append)
    assert report["verdict"] in ("accepted", "rejected")
    assert {leaf["path"] for leaf in report["leaves"]} == {
        "compositional_skills/grounded/extraction/meeting_action_items/qna.yaml",
        "compositional_skills/reasoning/unit_conversion/qna.yaml",
        "compositional_skills/writing/freeform/haiku/qna.yaml",
        "knowledge/geography/fictional/brenvik_isle/qna.yaml",
        "knowledge/history/computing/ada_lovelace/qna.yaml",
        "knowledge/science/earth/water_cycle/qna.yaml",
        "knowledge/technology/version_control/git_basics/qna.yaml"}
    for leaf in report["leaves"]:
        assert {"path", "samples_generated", "samples_kept", "base_score", "new_score"} <= set(leaf)
        assert leaf["samples_generated"] >= leaf["samples_kept"] > 0
    assert {"base", "new", "threshold", "passed"} <= set(report["forgetting"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s for s, v in manifest["stages"].items() if v["status"] == "done"] == [
        "checkout", "validate", "diff", "generate", "filter", "mix", "train", "evaluate", "report"]
    md = (out / "report.md").read_text()
    assert "xychart-beta" in md and "Forgetting check" in md and "| leaf | class |" in md
    assert "<svg" in (out / "report.html").read_text()
    models = json.loads((tmp_path / "runs/models.json").read_text())
    assert models[0]["verdict"] == report["verdict"] and models[0]["parent"].endswith("students/tiny")
    # a rerun with the same folder resumes: nothing is redone
    logs.clear()
    run(small(tmp_path, sample_taxonomy), log=logs.append)
    assert sum("skipped" in m for m in logs) == 9


def test_invalid_taxonomy_stops_at_validate(sample_taxonomy, tmp_path):
    leaf = sample_taxonomy / "compositional_skills/writing/freeform/haiku/qna.yaml"
    leaf.write_text(leaf.read_text().replace("created_by: sprout-maintainers", "created_by:"))
    with pytest.raises(RunError, match="validate: the taxonomy has invalid leaves"):
        run(small(tmp_path, sample_taxonomy), log=lambda m: None)
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["stages"]["validate"]["status"] == "failed"
    assert "generate" not in manifest["stages"]


def test_report_rendering():
    report = {"run_id": "r1", "verdict": "rejected", "reasons": ["regressed leaves: a"],
              "taxonomy": {"path": "t", "ref": "abc", "base_ref": None},
              "started_from": {"kind": "base", "model": "m"}, "new_model": "n",
              "leaves": [{"path": "a/qna.yaml", "class": "Regressed", "samples_generated": 10, "samples_kept": 4,
                          "base_score": 0.5, "new_score": 0.2, "delta": -0.3, "examples": []}],
              "forgetting": {"base": 2.0, "new": 2.5, "threshold": 0.1, "passed": False},
              "funnel": {"in": 10, "out": 4, "filters": {"exact_dedup": 6}},
              "training": {"knowledge": [{"step": i, "loss": 3 - i / 10} for i in range(1, 6)]},
              "timings": {"train": 12.0}}
    md = rpt.markdown(report)
    assert md.startswith("## ❌ Sprout retrain: rejected") and "🔴 Regressed" in md and "-0.300" in md
    assert "line [2.9, 2.8, 2.7, 2.6, 2.5]" in md and "FAILED" in md
    page = rpt.html_page(report)
    assert "<polyline" in page and "rejected" in page


@pytest.mark.slow
def test_start_from_last_trains_only_the_changed_leaf_with_replay(sample_taxonomy, tmp_path):
    from tests.conftest import run_git
    run_git(sample_taxonomy, "init", "-q", "-b", "main")
    run_git(sample_taxonomy, "add", "-A")
    run_git(sample_taxonomy, "commit", "-qm", "base")
    first_cfg = small(tmp_path, sample_taxonomy, start_from="last")
    out1, first = run(first_cfg, log=lambda m: None)
    registry = tmp_path / "runs/models.json"
    models = json.loads(registry.read_text())
    models[0]["verdict"] = "accepted"  # whatever the smoke run scored: continue from it
    registry.write_text(json.dumps(models))
    assert json.loads((out1 / "manifest.json").read_text())["stages"]["mix"]["incremental"] is False

    haiku = "compositional_skills/writing/freeform/haiku/qna.yaml"
    leaf = sample_taxonomy / haiku
    leaf.write_text(leaf.read_text().replace("an autumn river.", "an autumn stream."))
    from dataclasses import replace
    out2, second = run(replace(first_cfg, out=str(tmp_path / "run2")), log=lambda m: None)
    stages = json.loads((out2 / "manifest.json").read_text())["stages"]
    assert stages["mix"]["incremental"] is True and stages["mix"]["leaves_trained"] == [haiku]
    assert str(out1 / "data" / "phase2.jsonl") in stages["mix"]["replay_sources"]
    assert stages["train"]["started_from"] == "last" and stages["train"]["base"] == models[0]["path"]
    # the changed leaf, and a sample of unchanged ones for regressions, against the deployed model
    assert [x["path"] for x in second["leaves"] if x["changed"]] == [haiku]
    assert len([x for x in second["leaves"] if not x["changed"]]) == 3
    assert second["deployed_model"] == models[0]["path"]
    recipe = json.loads((out2 / "data" / "recipe.json").read_text())
    p2 = recipe["phase2"]
    assert p2["replay"] >= p2["skills"] > 0  # half of the phase is replay
    assert json.loads(registry.read_text())[-1]["parent"] == models[0]["path"]


@pytest.mark.slow
def test_a_judge_filters_the_data_and_grades_the_answers(sample_taxonomy, tmp_path):
    """`--judge URL`: an OpenAI-compatible judge on loopback that rejects cloze questions in the
    filter and grades every evaluation answer (with reasoning before the score, and some replies
    it cannot be read from). The offline teacher stays the teacher."""
    from fastapi import FastAPI, Request

    from tests.sdg.test_teachers_http import serve
    app = FastAPI()
    asked = {"filter": 0, "eval": 0}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "judge", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        if "Reply with exactly four lines" in text:
            asked["filter"] += 1
            reply = ("faithful: 1\nrelevance: 0\nquestion: 1\nanswer: 2" if "Fill in the blank" in text
                     else "faithful: 1\nrelevance: 2\nquestion: 1\nanswer: 3")
        else:
            asked["eval"] += 1
            reply = "Not sure." if asked["eval"] % 5 == 0 else "The answer is partly right.\n\n**Score:** 3"
        return {"id": "x", "object": "chat.completion", "model": "judge",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]}

    server, url = serve(app)
    try:
        out, report = run(small(tmp_path, sample_taxonomy, judge=url, judge_model="judge"), log=lambda m: None)
    finally:
        server.should_exit = True
    frep = json.loads((out / "data/filter_report.json").read_text())
    assert asked["filter"] > 0 and frep["totals"]["filters"]["judge"]["dropped"] > 0
    assert json.loads((out / "manifest.json").read_text())["stages"]["filter"]["judge"].endswith(":judge")
    j = report["judge"]
    assert j["asked"] == asked["eval"] and j["unparseable"] == asked["eval"] // 5 > 0
    graded = [leaf for leaf in report["leaves"] if "judge_new" in leaf]
    assert graded and all(leaf["judge_new"] == 0.5 for leaf in graded)
    assert f"{j['unparseable']} of {j['asked']} replies unreadable" in (out / "report.md").read_text()
