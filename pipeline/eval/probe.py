"""Forgetting, scored on facts: each item of ``fact_probe.jsonl`` is a plain sentence stem
("Italy's capital city is") with its right ending and same-kind wrong ones (Rome / Paris /
Madrid / Lisbon). The model ranks the endings by likelihood, as plain text (no chat template,
no generation), so answer format cannot move the score: a model knows the fact when the right
ending ranks first.

The new model is compared with the deployed model *and* the original base, so drift cannot build
up across accepted runs. The run fails when, against either, the facts it lost outnumber the
facts it gained beyond chance (exact one-sided sign test on the items that changed, at
``alpha``) and at least ``min_lost`` more were lost than gained, or when the **choice loss**
(-log of the right ending's share of the endings' probability, averaged) rose more than
``loss_limit`` (a destroyed model). The plain text loss of the right endings is reported but
never decides: chat fine-tuning shifts it by ~10% with every fact still ranked the same (measured
on the demo model: text loss 2.264 -> 2.517, choice loss 0.576 -> 0.587, 47 -> 47 facts). The probe is written in a
style (sentence stems, no questions) and on facts that the replay files do not share
(tests/test_heldout_eval.py checks templates, not only strings).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..package_data import local_path
from .stats import sign_flip_p

PROBE = local_path("probe")


@dataclass(frozen=True)
class ProbeConfig:
    alpha: float = 0.05
    min_lost: int = 3
    """Net facts lost (lost - gained) that a failure needs besides significance."""
    loss_limit: float = 0.10
    """Relative rise of the mean choice loss that fails the run."""
    items: int | None = None
    """Only the first N items (smoke runs); None: all."""


def read_probe(path: Path = PROBE, items: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:items] if items else rows


def score_model(model_dir: Path, rows: list[dict], batch_size: int = 32) -> dict:
    """Per item: which ending ranks first (``right``), the choice loss (``loss``: -log of the right
    ending's probability share among the endings) and the right ending's mean token loss as
    plain text (``text_loss``)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pairs = []  # (item, option, prefix ids, option ids)
    for i, r in enumerate(rows):
        prefix = tok(r["text"], add_special_tokens=False)["input_ids"]
        for j, opt in enumerate([r["answer"], *r["distractors"]]):
            full = tok(r["text"] + " " + opt, add_special_tokens=False)["input_ids"]
            pairs.append((i, j, full, len(prefix)))
    logprob = {}
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.no_grad():
        for b in range(0, len(pairs), batch_size):
            chunk = pairs[b:b + batch_size]
            width = max(len(p[2]) for p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, (_, _, full, _) in enumerate(chunk):
                ids[k, :len(full)] = torch.tensor(full)
                mask[k, :len(full)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logp = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            for k, (i, j, full, start) in enumerate(chunk):
                span = logp[k, max(0, start - 1):len(full) - 1]
                logprob[(i, j)] = (float(span.sum()), int(span.numel()))
    right, loss, text_loss = [], [], []
    for i, r in enumerate(rows):
        scores = [logprob[(i, j)][0] for j in range(1 + len(r["distractors"]))]
        right.append(1.0 if scores[0] > max(scores[1:]) else 0.0)
        top = max(scores)
        loss.append(-(scores[0] - top - math.log(sum(math.exp(x - top) for x in scores))))
        total, n = logprob[(i, 0)]
        text_loss.append(-total / max(1, n))
    return {"right": right, "loss": loss, "text_loss": text_loss}


def compare(new: dict, reference: dict, config: ProbeConfig = ProbeConfig()) -> dict:
    gains = [n - r for n, r in zip(new["right"], reference["right"])]
    lost, gained = sum(g < 0 for g in gains), sum(g > 0 for g in gains)
    p = sign_flip_p(gains, "less")
    mean_loss = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    loss_ref, loss_new = mean_loss(reference["loss"]), mean_loss(new["loss"])
    text_ref, text_new = mean_loss(reference.get("text_loss", [])), mean_loss(new.get("text_loss", []))
    facts_failed = p <= config.alpha and lost - gained >= config.min_lost
    loss_failed = loss_new > loss_ref * (1 + config.loss_limit)
    return {"right": int(sum(reference["right"])), "right_new": int(sum(new["right"])), "lost": lost,
            "gained": gained, "p": round(p, 4), "loss": round(loss_ref, 4), "loss_new": round(loss_new, 4),
            "text_loss": round(text_ref, 4), "text_loss_new": round(text_new, 4),
            "facts_passed": not facts_failed, "loss_passed": not loss_failed}


def forgetting(models: dict[str, Path], config: ProbeConfig = ProbeConfig(), probe: Path = PROBE,
               log=print) -> dict:
    """``models``: 'deployed', 'new' and, when it differs from the deployed one, 'base'."""
    rows = read_probe(probe, config.items)
    scored = {}
    for name, folder in models.items():
        log(f"[evaluate] {name} model ranks the endings of {len(rows)} probe facts")
        scored[name] = score_model(folder, rows)
    against = {"deployed": compare(scored["new"], scored["deployed"], config)}
    if "base" in scored:
        against["original_base"] = compare(scored["new"], scored["base"], config)
    passed = all(c["facts_passed"] and c["loss_passed"] for c in against.values())
    d = against["deployed"]
    return {"probe": probe.name, "questions": len(rows), "kind": "fact ranking",
            # the fields reports already read: the deployed/new mean choice loss
            "base": d["loss"], "new": d["loss_new"], "threshold": config.loss_limit,
            "facts_deployed": d["right"], "facts_new": d["right_new"], "against": against,
            "alpha": config.alpha, "min_lost": config.min_lost,
            "loss_passed": all(c["loss_passed"] for c in against.values()),
            "facts_passed": all(c["facts_passed"] for c in against.values()), "passed": passed,
            "items": [{"text": r["text"], "answer": r["answer"],
                       **{f"right_{m}": bool(s["right"][i]) for m, s in scored.items()}} for i, r in enumerate(rows)]}
