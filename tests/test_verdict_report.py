"""The report does not overstate: the verdict and its reason come first, knowledge leaves show
key facts (k of n) and wrong facts, too few items say so, a non-significant drop reads as one."""

from pipeline import report as rpt
from pipeline.eval.report_rows import leaf_rows, reasons_for


def evaluation():
    def leaf(kind, cls, items, **kw):
        base = {"class": cls, "changed": True, "kind": kind, "measure": "key facts" if kind == "knowledge" else "answer score",
                "questions": items, "scored": items, "base_score": 0.2, "deployed_score": 0.2, "new_score": 0.4,
                "score_gain": 0.2, "gain": 0.5, "interval": None, "restated_score": 0.41, "p_up": 0.002, "p_down": 1.0,
                "p_down_holm": 1.0, "p_baseline": 0.001, "lower": False, "f1_new": 0.4, "rouge_new": 0.4,
                "heldout": [{"question": "When was the Marrant Seawall finished?", "reference": "It was finished in 1711.",
                             "facts": [{"kind": "year", "value": "1711", "text": "1711"}], "deployed_answer": "In 1805.",
                             "new_answer": "In 1711.", "hit_deployed": False, "hit_new": True,
                             "wrong_deployed": ["year 1805"], "wrong_new": [], "deployed_score": 0.1, "new_score": 0.9}]}
        base.update(kw)
        return base
    return {"leaves": {
        "knowledge/brenvik_isle/qna.yaml": leaf("knowledge", "Improved", 15, key_facts={
            "items": 15, "deployed": 0, "new": 9, "new_wrong": 1, "deployed_wrong": 6, "base": 0, "restated": 0}),
        "knowledge/water_cycle/qna.yaml": leaf("knowledge", "Not enough evidence", 6, key_facts={
            "items": 6, "deployed": 2, "new": 2, "new_wrong": 0, "deployed_wrong": 0, "base": 2, "restated": 0}),
        "compositional_skills/haiku/qna.yaml": leaf("skill", "Not enough evidence", 2),
        "compositional_skills/other/qna.yaml": leaf("skill", "No change", 12, gain=-0.1, p_down=0.03, p_down_holm=0.12,
                                                    lower=True, interval=[-0.2, -0.01])},
        "forgetting": {"probe": "fact_probe.jsonl", "questions": 62, "base": 2.2, "new": 2.3, "threshold": 0.1,
                       "alpha": 0.05, "min_lost": 3, "passed": True, "facts_passed": True, "loss_passed": True,
                       "against": {"deployed": {"right": 47, "right_new": 46, "lost": 2, "gained": 1, "p": 0.5,
                                                "loss": 2.2, "loss_new": 2.3, "facts_passed": True, "loss_passed": True}}}}


def report_for(ev, reasons=()):
    frep = {"leaves": {p: {"in": 30, "out": 3} for p in ev["leaves"]}}
    mixed = {p: {"available": 3, "used": 30} for p in ev["leaves"]}
    rows = leaf_rows(ev, frep, mixed)
    return {"run_id": "r", "verdict": "rejected" if reasons else "accepted", "reasons": list(reasons),
            "taxonomy": {"path": "t", "ref": "abc", "base_ref": None}, "started_from": {"kind": "base", "model": "m"},
            "new_model": "n", "leaves": rows, "forgetting": ev["forgetting"], "funnel": {"in": 1, "out": 1, "filters": {}},
            "training": {}, "timings": {}}


def test_report_json_fields_and_markdown_first_lines():
    ev = evaluation()
    report = report_for(ev, reasons_for([], ev["forgetting"]))
    brenvik = next(r for r in report["leaves"] if "brenvik" in r["path"])
    assert brenvik["key_facts"] == {"items": 15, "deployed": 0, "new": 9, "new_wrong": 1, "deployed_wrong": 6,
                                    "base": 0, "restated": 0}
    assert {"facts", "hit_deployed", "hit_new"} <= set(brenvik["heldout"][0]) and brenvik["repetition"] == 10.0
    md = rpt.markdown(report).splitlines()
    assert md[0] == "## ✅ Sprout retrain: accepted"
    assert md[2].startswith("**Accepted: no leaf regressed; the forgetting check passed; learnt: brenvik\\_isle;")
    assert "not enough evidence to judge: haiku, water\\_cycle" in md[2]
    text = "\n".join(md)
    assert "| 0 → **9** of 15 | 1 | 0 of 15 |" in text
    assert "2 items: too few to test" in text and "No change (lower, not significant)" in text
    assert "(each ×10)" in text and "47 → 46 of 62 general facts right vs the deployed" in text
    assert "✅ In 1711." in text and "❌ In 1805." in text
    page = rpt.html_page(report)
    assert "verdict-line" in page and "0 → 9 of 15" in page


def test_a_forgetting_failure_is_the_first_reason():
    ev = evaluation()
    ev["forgetting"]["against"]["original_base"] = {"right": 50, "right_new": 40, "lost": 11, "gained": 1, "p": 0.003,
                                                    "loss": 2.0, "loss_new": 2.1, "facts_passed": False, "loss_passed": True}
    ev["forgetting"]["passed"] = False
    reasons = reasons_for([], ev["forgetting"])
    assert reasons == ["forgetting check failed: 11 general facts lost and 1 gained against the original base "
                       "(50 -> 40 of 62 right, p = 0.003)"]
    md = rpt.markdown(report_for(ev, reasons)).splitlines()
    assert md[0] == "## ❌ Sprout retrain: rejected" and md[2].startswith("**Rejected: forgetting check failed: 11")
