"""The new student against the deployed one (the last accepted model, else the base), on
questions neither was trained on, with a verdict that can come out either way.

- Per leaf: its held-out seed items (``sdg/heldout.py``), answered greedily by both models in
  batches, scored per question (content-word F1 and ROUGE-L). A leaf is **Improved** only when
  the mean paired gain exceeds ``margin`` *and* the paired bootstrap interval excludes zero;
  **Regressed** symmetrically; otherwise **No change**. New leaves take the same test. A sample
  of unchanged leaves is asked too: the new model must not have lost them.
- Beside them: the original base's score (when it is not the deployed model) and a constant
  answer per leaf (its most frequent training answer words), the score any model gets for free.
- Forgetting: a general probe written for Sprout and disjoint from every replay file, scored by
  answer F1 (generation) and mean token loss; the run fails past either threshold.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from ..package_data import local_path
from .scoring import content_words, rouge_l, score, token_f1

PROBE = local_path("probe")


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 16
    margin: float = 0.05
    """A leaf's mean score must move by more than this (and the interval exclude zero) to change class."""
    confidence: float = 0.90
    """Two-sided paired bootstrap interval of the mean gain."""
    resamples: int = 2000
    forgetting_loss: float = 0.10
    """The run fails when the probe loss rises by more than this share over the deployed model's."""
    forgetting_f1: float = 0.05
    """... or when the probe answer F1 falls by more than this and its interval lies below zero."""
    probe_questions: int | None = None
    """Ask only the first N probe questions (smoke runs and tests); None: all of them."""
    unchanged_sample: int = 3
    """Unchanged leaves asked for regressions, chosen by ``seed``."""
    seed: int = 0


def questions_for(leaf: dict, system: str) -> list[dict]:
    """The leaf's held-out items as prompts: a knowledge question closed-book (the model must
    have learnt the document), a skill question with its own context."""
    items = []
    for h in leaf.get("heldout", []):
        user = f"{h['context'].strip()}\n\n{h['question']}" if leaf.get("kind") == "skill" and h.get("context") else h["question"]
        items.append({"question": h["question"], "user": user, "reference": h["answer"],
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


def probe_rows(config: EvalConfig, probe: Path = PROBE) -> list[list[dict]]:
    from ..train.data import read_messages
    rows = read_messages(probe)
    return rows[:config.probe_questions] if config.probe_questions else rows


def probe_loss(model_dir: Path, rows: list[list[dict]], system: str) -> float:
    """Mean token loss on the probe's assistant turns."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..train.chat_format import as_client_sends
    from ..train.data import tokenize_dataset
    from ..train.packing import Bin, collate, loss_sum
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    convs = as_client_sends(tok, [[{"role": "system", "content": system}, *[m for m in r if m["role"] != "system"]]
                                  for r in rows])
    samples, _ = tokenize_dataset(tok, convs, 1024)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(samples)):
            loss, n = loss_sum(model, *collate(samples, Bin([i], len(samples[i])), tok.pad_token_id))
            total, count = total + float(loss), count + n
    return total / max(1, count)


def paired_interval(gains: list[float], confidence: float = 0.90, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-question gains."""
    if not gains:
        return 0.0, 0.0
    rng = random.Random(seed)
    n = len(gains)
    means = sorted(sum(gains[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    lo = means[int(tail * (resamples - 1))]
    hi = means[int(round((1 - tail) * (resamples - 1)))]
    return lo, hi


def classify(gains: list[float], margin: float, interval: tuple[float, float]) -> str:
    mean = sum(gains) / len(gains) if gains else 0.0
    if mean > margin and interval[0] > 0:
        return "Improved"
    if mean < -margin and interval[1] < 0:
        return "Regressed"
    return "No change"


def constant_answer(leaf: dict, size: int = 12) -> str:
    """The strongest answer that ignores the question: the leaf's most frequent content words
    over its training seed answers (what a model gets for echoing the topic)."""
    counts = Counter(w for s in leaf.get("seeds", []) for w in content_words(s.get("answer")))
    return " ".join(w for w, _ in counts.most_common(size))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def evaluate(deployed_dir: Path, new_dir: Path, leaves: dict[str, dict], system: str,
             config: EvalConfig = EvalConfig(), judge=None, base_dir: Path | None = None,
             changed: set[str] | None = None, probe: Path = PROBE, log=print) -> dict:
    """``leaves``: leaf infos (with ``heldout``) to ask, by path; ``changed``: which of them the
    run changed (None: all). ``base_dir``: the original base, reported when it differs from the
    deployed model."""
    changed = set(leaves) if changed is None else changed
    items, owners = [], []
    for path in sorted(leaves):
        for it in questions_for(leaves[path], system):
            items.append(it)
            owners.append(path)
    rows = probe_rows(config, probe)
    probe_convs = [[{"role": "system", "content": system}, *[m for m in r if m["role"] == "user"][:1]] for r in rows]
    probe_refs = [next(m["content"] for m in r if m["role"] == "assistant") for r in rows]
    convs = [it["messages"] for it in items] + probe_convs
    models = {"deployed": Path(deployed_dir), "new": Path(new_dir)}
    if base_dir is not None and Path(base_dir).resolve() != Path(deployed_dir).resolve():
        models["base"] = Path(base_dir)
    answers = {}
    for name, folder in models.items():
        log(f"[evaluate] {name} model answers {len(items)} held-out and {len(rows)} probe questions")
        answers[name] = answer_all(folder, convs, config, progress=f"{name} model answers")
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
    per_leaf: dict[str, dict] = {}
    for i, (path, it) in enumerate(zip(owners, items)):
        leaf = per_leaf.setdefault(path, {"questions": 0, "changed": path in changed, "heldout": [],
                                          "_s": {m: [] for m in models}, "_f1": [], "_rouge": [], "_jd": [], "_jn": []})
        leaf["questions"] += 1
        for m in models:
            leaf["_s"][m].append(score(answers[m][i], it["reference"]))
        leaf["_f1"].append(token_f1(answers["new"][i], it["reference"]))
        leaf["_rouge"].append(rouge_l(answers["new"][i], it["reference"]))
        if judged and judged["deployed"][i] is not None and judged["new"][i] is not None:
            leaf["_jd"].append(judged["deployed"][i])
            leaf["_jn"].append(judged["new"][i])
        leaf["heldout"].append({"question": it["user"], "reference": it["reference"],
                                "deployed_answer": answers["deployed"][i], "new_answer": answers["new"][i],
                                "deployed_score": round(leaf["_s"]["deployed"][-1], 4),
                                "new_score": round(leaf["_s"]["new"][-1], 4)})
    for path, leaf in per_leaf.items():
        s = leaf.pop("_s")
        gains = [n - d for n, d in zip(s["new"], s["deployed"])]
        interval = paired_interval(gains, config.confidence, config.resamples, config.seed)
        const = constant_answer(leaves[path])
        leaf.update(deployed_score=round(_mean(s["deployed"]), 4), new_score=round(_mean(s["new"]), 4),
                    base_score=round(_mean(s.get("base", s["deployed"])), 4),
                    constant_score=round(_mean([score(const, h["reference"]) for h in leaf["heldout"]]), 4),
                    gain=round(_mean(gains), 4), interval=[round(interval[0], 4), round(interval[1], 4)],
                    f1_new=round(_mean(leaf.pop("_f1")), 4), rouge_new=round(_mean(leaf.pop("_rouge")), 4),
                    **{"class": classify(gains, config.margin, interval)})
        jd, jn = leaf.pop("_jd"), leaf.pop("_jn")
        if jd:
            leaf.update(judge_deployed=round(_mean(jd), 4), judge_new=round(_mean(jn), 4), judged=len(jd))
    # Forgetting, on the probe
    n_items = len(items)
    f1 = {m: [token_f1(a, ref) for a, ref in zip(answers[m][n_items:], probe_refs)] for m in models}
    f1_gains = [n - d for n, d in zip(f1["new"], f1["deployed"])]
    f1_interval = paired_interval(f1_gains, config.confidence, config.resamples, config.seed)
    log(f"[evaluate] probe loss of {len(models)} models")
    losses = {m: probe_loss(folder, rows, system) for m, folder in models.items()}
    loss_ok = losses["new"] <= losses["deployed"] * (1 + config.forgetting_loss)
    f1_ok = not (_mean(f1_gains) < -config.forgetting_f1 and f1_interval[1] < 0)
    forgetting = {"probe": probe.name, "questions": len(rows),
                  "base": round(losses["deployed"], 4), "new": round(losses["new"], 4),
                  "threshold": config.forgetting_loss,
                  "f1_base": round(_mean(f1["deployed"]), 4), "f1_new": round(_mean(f1["new"]), 4),
                  "f1_interval": [round(f1_interval[0], 4), round(f1_interval[1], 4)],
                  "f1_threshold": config.forgetting_f1,
                  "loss_passed": loss_ok, "f1_passed": f1_ok, "passed": loss_ok and f1_ok}
    if "base" in models:
        forgetting.update(original_base=round(losses["base"], 4), f1_original_base=round(_mean(f1["base"]), 4))
    return {"leaves": per_leaf, "forgetting": forgetting, "judge": judge_stats, "config": asdict(config),
            "models": {m: str(p) for m, p in models.items()}}


def pick_unchanged(all_leaves: list[str], changed: set[str], k: int, seed: int) -> list[str]:
    """A seeded sample of the leaves the run did not change, asked for regressions."""
    rest = sorted(p for p in all_leaves if p not in changed)
    return sorted(random.Random(seed).sample(rest, min(k, len(rest))))
