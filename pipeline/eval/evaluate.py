"""Base vs new student on each changed leaf's questions, and a forgetting check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .scoring import rouge_l, score, token_f1

PROBE = Path(__file__).parent / "replay_probe.jsonl"


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 64
    batch_size: int = 16
    heldout_per_leaf: int = 10
    """Generated questions per leaf kept out of training and asked here, besides the seeds."""
    change_threshold: float = 0.02
    """A leaf is Improved or Regressed when its mean score moves more than this."""
    forgetting_threshold: float = 0.10
    """The run fails when the new model's replay loss exceeds the base's by more than this share."""


def questions_for(leaf: dict, heldout: list[dict], system: str) -> list[dict]:
    items = []
    for s in leaf.get("seeds", []):
        user = f"{s['context'].strip()}\n\n{s['question']}" if leaf.get("kind") == "skill" and s.get("context") else s["question"]
        items.append({"source": "seed", "user": user, "reference": s["answer"]})
    for r in heldout:
        user = f"{r['context'].strip()}\n\n{r['question']}" if r.get("context") else r["question"]
        items.append({"source": "heldout", "user": user, "reference": r["answer"]})
    for it in items:
        it["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": it["user"]}]
    return items


def answer_all(model_dir: Path, conversations: list[list[dict]], config: EvalConfig) -> list[str]:
    from ..sdg.teachers import GenParams, HFTeacher
    teacher = HFTeacher(model_dir, batch_size=config.batch_size)
    out = teacher.generate(conversations, GenParams(temperature=0.0, max_tokens=config.max_new_tokens, seed=0))
    return [o[0].strip() for o in out]


def replay_loss(model_dir: Path, probe: Path = PROBE) -> float:
    """Mean token loss on the assistant turns of a replay probe set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..train.data import read_messages, tokenize_dataset
    from ..train.packing import Bin, collate, loss_sum
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    samples, _ = tokenize_dataset(tok, read_messages(probe), 1024)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(samples)):
            loss, n = loss_sum(model, *collate(samples, Bin([i], len(samples[i])), tok.pad_token_id))
            total, count = total + float(loss), count + n
    return total / max(1, count)


def classify(base: float, new: float, added: bool, threshold: float) -> str:
    if added:
        return "New"
    if new - base > threshold:
        return "Improved"
    if base - new > threshold:
        return "Regressed"
    return "No change"


def evaluate(base_dir: Path, new_dir: Path, leaves: dict[str, dict], heldout: dict[str, list[dict]],
             added: set[str], system: str, config: EvalConfig = EvalConfig(), judge=None) -> dict:
    """Per changed leaf: base vs new mean score (token F1 and ROUGE-L), and with a ``judge`` (a
    teacher that can judge) the judge's mean grade too; plus the forgetting check."""
    items, owners = [], []
    for path in sorted(leaves):
        for it in questions_for(leaves[path], heldout.get(path, []), system):
            items.append(it)
            owners.append(path)
    convs = [it["messages"] for it in items]
    base_answers = answer_all(base_dir, convs, config)
    new_answers = answer_all(new_dir, convs, config)
    judged_base = judged_new = [None] * len(items)
    if judge is not None and getattr(judge, "can_judge", False) and items:
        from .judge import judge_answers
        qs, refs = [it["user"] for it in items], [it["reference"] for it in items]
        judged_base = judge_answers(judge, qs, refs, base_answers)
        judged_new = judge_answers(judge, qs, refs, new_answers)
    per_leaf: dict[str, dict] = {}
    for path, it, b, n, jb, jn in zip(owners, items, base_answers, new_answers, judged_base, judged_new):
        leaf = per_leaf.setdefault(path, {"questions": 0, "base": 0.0, "new": 0.0, "f1_new": 0.0,
                                          "rouge_new": 0.0, "examples": [], "_jb": [], "_jn": []})
        if jb is not None and jn is not None:  # only pairs the judge could grade both sides of
            leaf["_jb"].append(jb)
            leaf["_jn"].append(jn)
        leaf["questions"] += 1
        leaf["base"] += score(b, it["reference"])
        leaf["new"] += score(n, it["reference"])
        leaf["f1_new"] += token_f1(n, it["reference"])
        leaf["rouge_new"] += rouge_l(n, it["reference"])
        if len(leaf["examples"]) < 3:
            leaf["examples"].append({"question": it["user"][:300], "expected": it["reference"][:300],
                                     "base": b[:300], "new": n[:300]})
    for path, leaf in per_leaf.items():
        q = max(1, leaf["questions"])
        for k in ("base", "new", "f1_new", "rouge_new"):
            leaf[k] = round(leaf[k] / q, 4)
        jb, jn = leaf.pop("_jb"), leaf.pop("_jn")
        if jb:
            leaf["judge_base"], leaf["judge_new"] = round(sum(jb) / len(jb), 4), round(sum(jn) / len(jn), 4)
            leaf["judged"] = len(jb)
        leaf["class"] = classify(leaf["base"], leaf["new"], path in added, config.change_threshold)
    base_loss, new_loss = replay_loss(base_dir), replay_loss(new_dir)
    forgetting = {"base": round(base_loss, 4), "new": round(new_loss, 4),
                  "threshold": config.forgetting_threshold,
                  "passed": new_loss <= base_loss * (1 + config.forgetting_threshold)}
    return {"leaves": per_leaf, "forgetting": forgetting}
