"""Parse teacher output in the [Question]/[Answer]/[End] format, tolerating real-model drift."""

from __future__ import annotations

import re

# "\s*\[?\s*" would try every split of a line of spaces between its two \s* (quadratic).
# "[Question 2]" / "[Answer2]": numbered tags are how SmolLM2-135M drifts (tests/sdg/test_real_teacher.py)
_TAG = re.compile(r"^\s*(?:\[\s*)?(context|question|answer|end)\s*(?:\d+\s*)?\]?\s*:?\s*(.*)$", re.I)


def parse_pairs(text: str) -> tuple[list[dict], int]:
    """(pairs, malformed blocks). A pair needs a question and an answer; an unterminated last
    pair (a truncated completion) counts as malformed."""
    pairs, malformed = [], 0
    current: dict | None = None
    field = None
    for line in (text or "").splitlines():
        m = _TAG.match(line)
        tag = m.group(1).lower() if m and (line.strip().startswith("[") or line.strip().lower().startswith(
            ("question:", "answer:", "context:"))) else None
        if tag:
            rest = m.group(2).strip()
            if tag == "end":
                if current is not None:
                    if current.get("question", "").strip() and current.get("answer", "").strip():
                        pairs.append({k: v.strip() for k, v in current.items()})
                    else:
                        malformed += 1
                current, field = None, None
                continue
            if current is None or (tag in ("context", "question") and current.get("answer")):
                if current is not None:  # a new pair started without [End]
                    if current.get("question") and current.get("answer"):
                        pairs.append({k: v.strip() for k, v in current.items()})
                    else:
                        malformed += 1
                current = {}
            field = tag
            current[field] = rest
            continue
        if current is not None and field:
            current[field] = (current[field] + "\n" + line) if current[field] else line
    if current is not None:
        malformed += 1  # truncated: no [End]
    return pairs, malformed


FUNNEL = ("parsed", "empty", "truncated", "refused", "unparsable")
"""What became of each completion: at least one pair parsed, or the reason none did."""

_REFUSAL = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i'?m unable|i am unable|"
                      r"i won'?t|as an ai)\b", re.I)


def classify(text: str, pairs: int, finish: str | None = None) -> str:
    """One of FUNNEL. A truncated completion that still gave pairs counts as parsed (its last,
    unterminated block is a malformed block)."""
    if pairs:
        return "parsed"
    if not (text or "").strip():
        return "empty"
    if finish == "length":
        return "truncated"
    if _REFUSAL.search(text):
        return "refused"
    return "unparsable"
