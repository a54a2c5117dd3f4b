"""evaluation.json (+ the filter and mix summaries) -> the report's per-leaf rows and the reasons
for its verdict: one place that says what rejects a run."""

from __future__ import annotations


def leaf_rows(ev: dict, filter_report: dict, mixed: dict) -> list[dict]:
    rows = []
    for path, leaf in sorted(ev["leaves"].items()):
        fl = filter_report["leaves"].get(path, {"in": 0, "out": 0})
        mx = mixed.get(path) or {}
        row = {"path": path, "class": leaf["class"], "changed": leaf["changed"], "kind": leaf.get("kind"),
               "measure": leaf.get("measure"), "samples_generated": fl["in"], "samples_kept": fl["out"],
               "base_score": leaf["base_score"], "deployed_score": leaf["deployed_score"],
               "new_score": leaf["new_score"], "delta": leaf.get("score_gain", leaf.get("gain")),
               "gain": leaf.get("gain"), "interval": leaf.get("interval"),
               "restated_score": leaf.get("restated_score"), "questions": leaf["questions"],
               "scored": leaf.get("scored"), "p_up": leaf.get("p_up"), "p_down": leaf.get("p_down"),
               "p_down_holm": leaf.get("p_down_holm"), "p_baseline": leaf.get("p_baseline"),
               "lower": leaf.get("lower", False),
               "token_f1": leaf["f1_new"], "rouge_l": leaf["rouge_new"], "heldout": leaf["heldout"],
               "examples": [{"question": h["question"], "expected": h["reference"], "base": h["deployed_answer"],
                             "new": h["new_answer"]} for h in leaf["heldout"][:3]],
               **{k: leaf[k] for k in ("key_facts", "ledger_dropped", "judge_deployed", "judge_new", "judged")
                  if k in leaf}}
        if mx.get("available"):
            # the mix repeats a small leaf's samples up to the floor: say how often each is seen
            row["repetition"] = round(mx["used"] / mx["available"], 1)
        rows.append(row)
    return rows


def reasons_for(rows: list[dict], fg: dict) -> list[str]:
    reasons = []
    for name, c in (fg.get("against") or {}).items():
        who = "the deployed model" if name == "deployed" else "the original base"
        if not c["facts_passed"]:
            reasons.append(f"forgetting check failed: {c['lost']} general facts lost and {c['gained']} gained against "
                           f"{who} ({c['right']} -> {c['right_new']} of {fg['questions']} right, p = {c['p']:.3f})")
        if not c["loss_passed"]:
            reasons.append(f"forgetting check failed: the probe's choice loss rose {c['loss']:.3f} -> {c['loss_new']:.3f} "
                           f"against {who}, past +{fg['threshold']:.0%}")
    if "against" not in fg and not fg.get("passed", True):
        reasons.append(f"forgetting check failed: the probe loss rose {fg['base']:.3f} -> {fg['new']:.3f}")
    regressed = [r["path"] for r in rows if r["class"] == "Regressed"]
    if regressed:
        reasons.append(f"regressed leaves (Holm-adjusted over every leaf asked): {', '.join(regressed)}")
    return reasons
