"""A judge score for evaluation answers, when the teacher is a real model (MT-Bench style: the
judge grades the answer against the reference on 1-5; reported scaled to 0-1)."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

PROMPT = Template((Path(__file__).parent / "judge_prompt.txt").read_text(encoding="utf-8"))


def parse_score(text: str | None) -> float | None:
    """'score: 4' -> 0.75; None when the reply has no readable score."""
    m = re.search(r"(?im)^\W*score\W*[:=]\s*([1-5])\b", text or "")
    return (int(m.group(1)) - 1) / 4 if m else None


def judge_answers(teacher, questions: list[str], references: list[str], answers: list[str]) -> list[float | None]:
    from ..sdg.prompts import Prompt
    from ..sdg.teachers import GenParams
    prompts = [Prompt("eval_judge", {"question": q, "reference": r, "answer": a},
                      ({"role": "user", "content": PROMPT.safe_substitute(question=q, reference=r,
                                                                           answer=a or "(no answer)")},))
               for q, r, a in zip(questions, references, answers)]
    if not prompts:
        return []
    replies = teacher.complete(prompts, 1, GenParams(temperature=0.0, max_tokens=16, seed=0))
    return [parse_score(r[0] if r else None) for r in replies]
