"""The judge in evaluation: replies in the shapes real judges write, parsed, counted when
unreadable, averaged per leaf, shown in the report."""

import pytest

from pipeline import report as rpt
from pipeline.eval.evaluate import EvalConfig, evaluate
from pipeline.eval.judge import parse_score
from pipeline.mix import SYSTEM
from tests.fakes.models import tiny_model
from tests.fakes.teacher import ScriptedTeacher


@pytest.mark.parametrize("reply, grade", [
    ("score: 5", 1.0), ("Score = 1", 0.0), ("The answer is fine.\nscore: 4\n", 0.75),
    ("**Score:** 4", 0.75), ("Rating: 5", 1.0), ("**Rating**: 2", 0.25), ("Score: [[3]]", 0.5),
    ("The student names the right year but misses the place.\n\n4/5", 0.75),
    ("I would give this 2 out of 5.", 0.25), ("Verdict: 2/5", 0.25), ("Grade - 3", 0.5),
    # the judge quotes the scale while reasoning; its verdict is the last score it writes
    ("On a scale where score: 1 is wrong and 5 is right, this is partly right.\nScore: 3", 0.5),
    ("### Reasoning\nThe answer matches.\n\n### Score\nScore: 5", 1.0),
])
def test_parse_score_real_reply_shapes(reply, grade):
    assert parse_score(reply) == grade


@pytest.mark.parametrize("reply", ["score: 9", "Score: 4.5", "", None, "The answer is good.", "Score: N"])
def test_parse_score_unreadable(reply):
    assert parse_score(reply) is None


def test_evaluation_with_a_judge_counts_unreadable_replies(tmp_path):
    model = tiny_model(tmp_path / "m")
    leaf = {"path": "compositional_skills/a/qna.yaml", "kind": "skill", "chunks": [], "seeds": [],
            "heldout": [{"context": None, "question": f"What is {n} plus {n}?", "answer": str(2 * n)} for n in range(3)]}
    seen = []

    def grade(prompt, i):
        seen.append(prompt.variables)
        return "Reasoning: close.\n**Score:** 2" if prompt.variables["reference"] == "0" else "I cannot grade this."
    judge = ScriptedTeacher({"eval_judge": grade})
    config = EvalConfig(probe_questions=2, max_new_tokens=4)
    result = evaluate(model, model, {leaf["path"]: leaf}, SYSTEM, config, judge=judge)
    got = result["leaves"][leaf["path"]]
    assert len(seen) == 6  # 3 questions, deployed and new answers
    assert (got["judge_deployed"], got["judge_new"], got["judged"]) == (0.25, 0.25, 1)  # unreadable replies skipped
    assert result["judge"] == {"asked": 6, "unparseable": 4, "judge": "scripted:v1"}  # ... but counted
    assert "judge_new" not in evaluate(model, model, {leaf["path"]: leaf}, SYSTEM, config)["leaves"][leaf["path"]]

    report = {"run_id": "r", "verdict": "accepted", "reasons": [], "taxonomy": {"path": "t", "ref": "a", "base_ref": None},
              "student": {"name": "tiny (random init)", "pretrained": False}, "teacher": {"name": "t", "smoke": False},
              "judge": result["judge"], "started_from": {"kind": "base", "model": "m"}, "new_model": "n",
              "leaves": [{"path": leaf["path"], "class": "No change", "samples_generated": 3, "samples_kept": 3,
                          "base_score": 0.1, "deployed_score": 0.1, "new_score": 0.1, "delta": 0.0,
                          "interval": [0.0, 0.0], "constant_score": 0.0, "examples": [], "heldout": got["heldout"],
                          "judge_deployed": got["judge_deployed"], "judge_new": got["judge_new"]}],
              "forgetting": result["forgetting"], "funnel": {"in": 3, "out": 3, "filters": {}}, "training": {},
              "timings": {}}
    md = rpt.markdown(report)
    assert "judge deployed → new |" in md and "0.25 → 0.25" in md and "4 of 6 replies unreadable" in md
    assert md.startswith("⚠️ **Smoke run, not evidence**")
    assert "<th>judge deployed → new</th>" in rpt.html_page(report)
