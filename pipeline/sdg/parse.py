"""Parse teacher output in the [Question]/[Answer]/[End] format, tolerating real-model drift."""

from __future__ import annotations

import re

# One label at the start of a line, in the forms real models write it (tests/sdg/test_real_teacher.py,
# SmolLM2-135M): "[Question]", "[Question 2]", "Question:", "Q:", "**Question:**", "### Question",
# "The answer:", "Question 1:". Each optional piece is a bounded run of one character class and the
# text after the label is ".*": no two adjacent optional runs can trade characters (linear).
_TAG = re.compile(r"^[ \t]*(#{1,6}[ \t]*|[*_]{1,2}|\[[ \t]*)?(the[ \t]+)?(context|question|answer|end|q|a)(?![a-z])"
                  r"(?:[ \t]*\d{1,3})?[ \t]*(\])?[*_]{0,2}(:)?[*_]{0,2}(.*)$", re.I)
_ALIAS = {"q": "question", "a": "answer"}
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")


def _tag(line: str) -> tuple[str, str] | None:
    """(field, text after the label) when the line is a label, else None. A bare word is a label
    only in brackets, after a colon, as a heading, or alone on its line: "A dog ran" is text."""
    m = _TAG.match(line)
    if not m:
        return None
    lead, the, word, bracket, colon, rest = m.groups()
    word = word.lower()
    bracketed = bool(lead and lead.strip().startswith("[") and bracket)
    if not bracketed and lead and lead.strip().startswith("["):
        return None
    if word in _ALIAS or the:  # "Q:", "The answer:": only with their colon
        return (_ALIAS.get(word, word), rest.strip()) if colon else None
    heading = bool(lead and lead.lstrip().startswith("#"))
    alone = not rest.strip().strip("*_")
    if word == "end":
        return ("end", "") if (bracketed or heading) and alone else None
    if bracketed or colon or heading or alone:
        return word, rest.strip()
    return None


def parse_pairs(text: str, finished: bool = False) -> tuple[list[dict], int]:
    """(pairs, malformed blocks). A pair needs a question and an answer. A pair closes at
    "[End]", at the next pair's label, at a second answer label, or at a Markdown heading that is
    not a label ("### Task": the model moved on). An unterminated last pair is kept when the
    completion ``finished`` on its own (stop, not the length limit: small models often leave out
    "[End]"), else counted as malformed (a truncated completion's last answer may be cut)."""
    pairs, malformed = [], 0
    current: dict | None = None
    field = None

    def close() -> None:
        nonlocal current, field, malformed
        if current is not None:
            if current.get("question", "").strip() and current.get("answer", "").strip():
                pairs.append({k: v.strip() for k, v in current.items()})
            else:
                malformed += 1
        current, field = None, None

    for line in (text or "").splitlines():
        found = _tag(line)
        if found is None:
            if _HEADING.match(line):  # some other section: whatever was open ends here
                if current is not None:
                    close()
                continue
            if current is not None and field:
                current[field] = (current[field] + "\n" + line) if current[field] else line
            continue
        tag, rest = found
        if tag == "end":
            close()
            continue
        if current is not None and tag == "answer" and current.get("answer", "").strip():
            close()  # the answer said twice: keep the first, ignore what follows until a new pair
            continue
        if current is None or (tag in ("context", "question") and current.get("answer")):
            close()
            current = {}
        field = tag
        current[field] = rest
    if current is not None:
        if finished:
            close()
        else:
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
