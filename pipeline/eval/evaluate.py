"""The new student against the deployed one (the last accepted model, else the base), on
questions neither was trained on, with a verdict that can come out either way and known error
rates (``verdict.py``).

- Per leaf: its held-out seed items (``sdg/heldout.py``), answered greedily by every model in
  batches. Knowledge items are scored on their **key facts** (``facts.py``: hit = every fact,
  no contradicting value; a contradiction is a wrong fact); skill items, and knowledge items
  beside their facts, by word overlap (content-word F1 and ROUGE-L).
- The bar: the deployed model, and the question restated as a statement (a baseline that adds
  no fact but scores well on word overlap). The original base is shown beside them.
- Items the deployed model's lineage trained on (``trained``) are dropped and reported.
- Forgetting: ``probe.py``, general facts ranked by likelihood against same-kind distractors,
  against the deployed model and the original base.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from .facts import check, restate
from .probe import PROBE, ProbeConfig, forgetting
from .scoring import rouge_l, score, token_f1



@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 16
    alpha: float = 0.05
    """Error rate of each claim: Improved per leaf, Regressed over the run (Holm)."""
    min_items: int = 10
    """Scored items a leaf needs to be classed; fewer: Not enough evidence."""
    confidence: float = 0.90
    """Level of the printed interval of the mean gain (sign-flip test inverted)."""
    forgetting_loss: float = 0.10
    """The run fails when the probe's right-ending loss rises by more than this share."""
    forgetting_min_lost: int = 3
    """... or when at least this many more probe facts are lost than gained, beyond chance."""
    probe_questions: int | None = None
    """Ask only the first N probe facts (smoke runs and tests); None: all of them."""
    unchanged_sample: int = 3
    """Unchanged leaves asked for regressions, chosen by ``seed``."""
    seed: int = 0


def questions_for(leaf: dict, system: str) -> list[dict]:
    """The leaf's held-out items as prompts: a knowledge question closed-book (the model must
    have learnt the document), a skill question with its own context."""
    items = []
    for h in leaf.get("heldout", []):
        user = f"{h['context'].strip()}\n\n{h['question']}" if leaf.get("kind") == "skill" and h.get("context") else h["question"]
        facts = h.get("facts")
        if facts is None and leaf.get("kind") == "knowledge":
            from .facts import key_facts  # items held out before facts were recorded
            facts = [f.as_dict() for f in key_facts(h["question"], h["answer"])]
        items.append({"question": h["question"], "user": user, "reference": h["answer"], "facts": facts or [],
                      "kind": leaf.get("kind", "knowledge"),
                      "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
    return items


def answer_all(model_dir: Path, conversations: list[list[dict]], config: EvalConfig,
               progress: str | None = None) -> list[str]:
    if not conversations:
        return []
    from ..sdg.teachers import GenParams, HFTeacher
    from ..train.chat_format import as_client_sends
    teacher = HFTeacher(model_dir, batch_size=config.batch_size)
    # a model that carries its system prompt is asked as a server's client asks it (none sent)
    out = teacher.generate(as_client_sends(teacher.tokenizer, conversations),
                           GenParams(temperature=0.0, max_tokens=config.max_new_tokens, seed=0), progress=progress)
    return [o[0].strip() for o in out]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def evaluate(deployed_dir: Path, new_dir: Path, leaves: dict[str, dict], system: str,
             config: EvalConfig = EvalConfig(), judge=None, base_dir: Path | None = None,
             changed: set[str] | None = None, probe: Path = PROBE, trained: dict | None = None,
             log=print) -> dict:
    """``leaves``: leaf infos (with ``heldout``) to ask, by path; ``changed``: which of them the
    run changed (None: all). ``base_dir``: the original base, reported when it differs from the
    deployed model. ``trained``: the deployed model's lineage's training turns
    (``ledger.lineage_turns``): items found there are dropped and listed."""
    from .ledger import trained_on
    from .verdict import VerdictConfig, classify, leaf_test
    changed = set(leaves) if changed is None else changed
    trained = trained or {}
    items, owners, dropped = [], [], {}
    for path in sorted(leaves):
        for it in questions_for(leaves[path], system):
            if trained and trained_on(it["question"], it["reference"], trained):
                dropped.setdefault(path, []).append(it["question"])
                continue
            items.append(it)
            owners.append(path)
    models = {"deployed": Path(deployed_dir), "new": Path(new_dir)}
    if base_dir is not None and Path(base_dir).resolve() != Path(deployed_dir).resolve():
        models["base"] = Path(base_dir)
    answers = {}
    for name, folder in models.items():
        log(f"[evaluate] {name} model answers {len(items)} held-out questions")
        answers[name] = answer_all(folder, [it["messages"] for it in items], config, progress=f"{name} model answers")
    answers["restated"] = [restate(it["question"]) for it in items]
    judged: dict[str, list] = {}
    judge_stats = None
    if judge is not None and getattr(judge, "can_judge", False) and items:
        from .judge import judge_answers
        qs, refs = [it["user"] for it in items], [it["reference"] for it in items]
        stats = {"asked": 0, "unparseable": 0}
        for name in ("deployed", "new"):
            grades = judge_answers(judge, qs, refs, answers[name][:len(items)])
            judged[name] = grades
            stats["asked"] += len(grades)
            stats["unparseable"] += sum(g is None for g in grades)
        judge_stats = {**stats, "judge": getattr(judge, "identity", str(judge))}
    scored_models = [*models, "restated"]
    per_leaf: dict[str, dict] = {}
    for i, (path, it) in enumerate(zip(owners, items)):
        leaf = per_leaf.setdefault(path, {"questions": 0, "changed": path in changed, "kind": it["kind"], "heldout": [],
                                          "_s": {m: [] for m in scored_models}, "_k": {m: [] for m in scored_models},
                                          "_w": {m: 0 for m in scored_models}, "_f1": [], "_rouge": [], "_jd": [], "_jn": []})
        leaf["questions"] += 1
        row = {"question": it["user"], "reference": it["reference"], "facts": it["facts"],
               "deployed_answer": answers["deployed"][i], "new_answer": answers["new"][i]}
        for m in scored_models:
            leaf["_s"][m].append(score(answers[m][i], it["reference"]))
            if it["facts"]:
                c = check(answers[m][i], it["facts"], it["question"])
                leaf["_k"][m].append(1.0 if c["hit"] else 0.0)
                leaf["_w"][m] += bool(c["wrong"])
                if m in ("deployed", "new"):
                    row[f"hit_{m}"] = c["hit"]
                    row[f"wrong_{m}"] = c["wrong"]
        leaf["_f1"].append(token_f1(answers["new"][i], it["reference"]))
        leaf["_rouge"].append(rouge_l(answers["new"][i], it["reference"]))
        if judged and judged["deployed"][i] is not None and judged["new"][i] is not None:
            leaf["_jd"].append(judged["deployed"][i])
            leaf["_jn"].append(judged["new"][i])
        row.update(deployed_score=round(leaf["_s"]["deployed"][-1], 4), new_score=round(leaf["_s"]["new"][-1], 4))
        leaf["heldout"].append(row)
    vc = VerdictConfig(alpha=config.alpha, min_items=config.min_items, level=config.confidence)
    tests = {}
    for path, leaf in per_leaf.items():
        s, k = leaf["_s"], leaf["_k"]
        # The main measure: key facts for knowledge, word overlap for skills (and for knowledge
        # items without facts, shown but not tested).
        measure = k if leaf["kind"] == "knowledge" else s
        tests[path] = leaf_test(measure["deployed"], measure["new"], measure["restated"], vc,
                                interval=leaf["kind"] != "knowledge")
        leaf["measure"] = "key facts" if leaf["kind"] == "knowledge" else "answer score"
    classify(tests, vc)
    for path, leaf in per_leaf.items():
        s, k, w = leaf.pop("_s"), leaf.pop("_k"), leaf.pop("_w")
        t = tests[path]
        gains = [n - d for n, d in zip(s["new"], s["deployed"])]
        leaf.update(deployed_score=round(_mean(s["deployed"]), 4), new_score=round(_mean(s["new"]), 4),
                    base_score=round(_mean(s.get("base", s["deployed"])), 4),
                    restated_score=round(_mean(s["restated"]), 4),
                    score_gain=round(_mean(gains), 4),
                    gain=round(t["gain"], 4), interval=[round(x, 4) for x in t["interval"]] if t["interval"] else None,
                    p_up=round(t["p_up"], 4), p_down=round(t["p_down"], 4), p_baseline=round(t.get("p_baseline", 1.0), 4),
                    p_down_holm=round(t["p_down_holm"], 4) if t["p_down_holm"] is not None else None,
                    scored=t["items"], lower=t["lower"],
                    f1_new=round(_mean(leaf.pop("_f1")), 4), rouge_new=round(_mean(leaf.pop("_rouge")), 4),
                    **{"class": t["class"]})
        if leaf["kind"] == "knowledge":
            kb = k.get("base", k["deployed"])
            leaf["key_facts"] = {"items": len(k["new"]), "deployed": int(sum(k["deployed"])), "new": int(sum(k["new"])),
                                 "new_wrong": w["new"], "deployed_wrong": w["deployed"], "base": int(sum(kb)),
                                 "restated": int(sum(k["restated"]))}
        if path in dropped:
            leaf["ledger_dropped"] = dropped[path]
        jd, jn = leaf.pop("_jd"), leaf.pop("_jn")
        if jd:
            leaf.update(judge_deployed=round(_mean(jd), 4), judge_new=round(_mean(jn), 4), judged=len(jd))
    fg = forgetting(models, ProbeConfig(alpha=config.alpha, min_lost=config.forgetting_min_lost,
                                        loss_limit=config.forgetting_loss, items=config.probe_questions),
                    probe, log=log)
    return {"leaves": per_leaf, "forgetting": fg, "judge": judge_stats, "config": asdict(config),
            "ledger_dropped": sum(len(v) for v in dropped.values()),
            "models": {m: str(p) for m, p in models.items()}}


def pick_unchanged(all_leaves: list[str], changed: set[str], k: int, seed: int) -> list[str]:
    """A seeded sample of the leaves the run did not change, asked for regressions."""
    rest = sorted(p for p in all_leaves if p not in changed)
    return sorted(random.Random(seed).sample(rest, min(k, len(rest))))
