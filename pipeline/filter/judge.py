"""Optional LLM judge, when the teacher is a real model. Defaults follow InstructLab's full
pipeline: knowledge kept when faithful, relevance 2/2 and question 1/1; skills when question 1/1
and answer >= 2/3."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..sdg import prompts
from .base import FilterResult


@dataclass(frozen=True)
class JudgeConfig:
    knowledge_min_relevance: int = 2
    knowledge_min_question: int = 1
    knowledge_require_faithful: bool = True
    skill_min_question: int = 1
    skill_min_answer: int = 2
    max_tokens: int = 64
    """The reply is four short lines: a bound keeps a rambling judge from costing 1,024 tokens a pair."""


def parse_scores(text: str) -> dict[str, int]:
    scores = {}
    for key in ("faithful", "relevance", "question", "answer"):
        # [^\w\n]*, not \W*: a \W* run could cross newlines, rescanning every blank line (quadratic)
        m = re.search(rf"(?im)^[^\w\n]*{key}\W*[:=]\s*(\d)", text or "")
        if m:
            scores[key] = int(m.group(1))
    return scores


def judge_filter(records: list[dict], teacher, config: JudgeConfig = JudgeConfig()) -> FilterResult:
    out = FilterResult("judge")
    if not getattr(teacher, "can_judge", False):
        out.kept = list(records)
        out.skipped = "the offline teacher cannot judge; use a model teacher to enable the judge"
        return out
    batch = [prompts.render("judge", source=r.get("source_chunk") or r.get("context") or "(none)",
                            question=r["question"], answer=r["answer"]) for r in records]
    from ..sdg.teachers import GenParams
    replies = teacher.complete(batch, 1, GenParams(temperature=0.0, max_tokens=config.max_tokens)) if batch else []
    for r, reply in zip(records, replies):
        s = parse_scores(reply[0] if reply else "")
        if len(s) < 3:
            out.drop(r, "judge reply unreadable")
            continue
        if r.get("kind") == "knowledge":
            ok = (s.get("faithful", 0) >= 1 or not config.knowledge_require_faithful) and \
                s.get("relevance", 0) >= config.knowledge_min_relevance and s.get("question", 0) >= config.knowledge_min_question
        else:
            ok = s.get("question", 0) >= config.skill_min_question and s.get("answer", 0) >= config.skill_min_answer
        if ok:
            out.kept.append({**r, "judge": s})
        else:
            out.drop(r, f"judge scores below the thresholds ({s})")
    return out
