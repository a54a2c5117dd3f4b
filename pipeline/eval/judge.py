"""A judge score for evaluation answers, when the teacher is a real model (MT-Bench style: the
judge grades the answer against the reference on 1-5; reported scaled to 0-1)."""

from __future__ import annotations

import re
from string import Template

from ..package_data import resource

PROMPT = Template(resource("judge_prompt").read_text(encoding="utf-8"))


# Shapes judges really answer in: "score: 4", "**Score:** 4", "Rating: 5", "Grade - 3",
# "Score: [[4]]", "4/5", "4 out of 5". The last match wins: a judge reasons first and may quote
# the scale ("1 (wrong) ... 5 (fully right)") before its verdict.
_LABELLED = re.compile(r"(?i)\b(?:score|rating|grade|verdict)\b\W{0,6}(?:is\W{0,3})?\[*\s*([1-5])(?:\s*(?:/|out of)\s*5)?\b(?![.,]\d)")
_FRACTION = re.compile(r"(?i)(?<![\d.])([1-5])\s*(?:/|out of)\s*5\b")


def parse_score(text: str | None) -> float | None:
    """'Score: 4' -> 0.75 (1-5 scaled to 0-1); None when the reply has no readable score."""
    text = text or ""
    hits = list(_LABELLED.finditer(text)) or list(_FRACTION.finditer(text))
    return (int(hits[-1].group(1)) - 1) / 4 if hits else None


def judge_answers(teacher, questions: list[str], references: list[str], answers: list[str]) -> list[float | None]:
    from ..sdg.prompts import Prompt
    from ..sdg.teachers import GenParams
    prompts = [Prompt("eval_judge", {"question": q, "reference": r, "answer": a},
                      ({"role": "user", "content": PROMPT.safe_substitute(question=q, reference=r,
                                                                           answer=a or "(no answer)")},))
               for q, r, a in zip(questions, references, answers)]
    if not prompts:
        return []
    # room to reason: the prompt asks for a few sentences before the score
    replies = teacher.complete(prompts, 1, GenParams(temperature=0.0, max_tokens=256, seed=0))
    return [parse_score(r[0] if r else None) for r in replies]
