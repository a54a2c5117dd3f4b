"""The judge score in evaluation: parsed, averaged per leaf, shown in the report."""

from pipeline import report as rpt
from pipeline.eval.evaluate import evaluate
from pipeline.eval.judge import parse_score
from pipeline.mix import SYSTEM
from tests.fakes.models import tiny_model
from tests.fakes.teacher import ScriptedTeacher


def test_parse_score():
    assert parse_score("score: 5") == 1.0 and parse_score("Score = 1") == 0.0
    assert parse_score("The answer is fine.\nscore: 4\n") == 0.75
    assert parse_score("score: 9") is None and parse_score("") is None and parse_score(None) is None


def test_evaluation_with_a_judge(tmp_path):
    model = tiny_model(tmp_path / "m")
    leaf = {"path": "compositional_skills/a/qna.yaml", "kind": "skill", "chunks": [],
            "seeds": [{"context": None, "question": f"What is {n} plus {n}?", "answer": str(2 * n)} for n in range(3)]}
    seen = []

    def grade(prompt, i):
        seen.append(prompt.variables)
        return "score: 2" if prompt.variables["reference"] == "0" else "I cannot grade this."
    judge = ScriptedTeacher({"eval_judge": grade})
    result = evaluate(model, model, {leaf["path"]: leaf}, {}, set(), SYSTEM, judge=judge)
    got = result["leaves"][leaf["path"]]
    assert len(seen) == 6  # 3 questions, base and new answers
    assert (got["judge_base"], got["judge_new"], got["judged"]) == (0.25, 0.25, 1)  # unreadable replies skipped
    assert "judge_new" not in evaluate(model, model, {leaf["path"]: leaf}, {}, set(), SYSTEM)["leaves"][leaf["path"]]

    report = {"run_id": "r", "verdict": "accepted", "reasons": [], "taxonomy": {"path": "t", "ref": "a", "base_ref": None},
              "started_from": {"kind": "base", "model": "m"}, "new_model": "n",
              "leaves": [{"path": leaf["path"], "class": "No change", "samples_generated": 3, "samples_kept": 3,
                          "base_score": 0.1, "new_score": 0.1, "delta": 0.0, "examples": [],
                          "judge_base": got["judge_base"], "judge_new": got["judge_new"]}],
              "forgetting": result["forgetting"], "funnel": {"in": 3, "out": 3, "filters": {}}, "training": {},
              "timings": {}}
    assert "judge base → new |" in rpt.markdown(report) and "0.25 → 0.25" in rpt.markdown(report)
    assert "<th>judge base → new</th>" in rpt.html_page(report)
