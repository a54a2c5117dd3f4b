"""Key facts: what a reference answer adds to its question, and whether an answer carries it.

Word overlap rewards wording ("The Marrant Seawall was finished in 1805." scores 0.80 against
"... in 1711."). A key fact is a value a reader would check: a number with its unit (digits or
number words; lengths to metres, durations to minutes), a year, a day and month, a proper name
(one or more capitalised words, "Council of Nine Wardens"), or the polarity of a yes/no answer.
Only values the question does not already hold count: restating the question earns nothing.

An answer is a **hit** when it carries every key fact and no contradicting value of the same
kind (another year, another number of the same unit, another name); a contradiction is a
**wrong fact**. Names contradict only names; the question's own values never do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {  # unit word -> (dimension, factor to the base unit)
    "metre": ("length", 1.0), "metres": ("length", 1.0), "meter": ("length", 1.0), "meters": ("length", 1.0),
    "m": ("length", 1.0), "kilometre": ("length", 1000.0), "kilometres": ("length", 1000.0),
    "kilometer": ("length", 1000.0), "kilometers": ("length", 1000.0), "km": ("length", 1000.0),
    "mile": ("length", 1609.344), "miles": ("length", 1609.344),
    "centimetre": ("length", 0.01), "centimetres": ("length", 0.01), "cm": ("length", 0.01),
    "second": ("time", 1 / 60), "seconds": ("time", 1 / 60), "minute": ("time", 1.0), "minutes": ("time", 1.0),
    "min": ("time", 1.0), "hour": ("time", 60.0), "hours": ("time", 60.0), "h": ("time", 60.0),
    "day": ("time", 1440.0), "days": ("time", 1440.0), "week": ("time", 10080.0), "weeks": ("time", 10080.0),
    "year": ("time", 525600.0), "years": ("time", 525600.0),
    "percent": ("percent", 1.0), "per cent": ("percent", 1.0), "%": ("percent", 1.0),
}
SMALL = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
         "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
         "once": 1, "twice": 2, "thrice": 3, "half": 0.5, "dozen": 12}
SCALE = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
NUMBER_WORD = "|".join(sorted(list(SMALL) + list(SCALE), key=len, reverse=True))
UNIT_WORD = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
MONTH = "|".join(m.capitalize() for m in MONTHS)

_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({MONTH})\b|\b({MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b")
_YEAR = re.compile(r"(?<![\d,.])\b(1[0-9]{3}|20[0-9]{2})\b(?![\d,]\d)(?!\s*(?:" + UNIT_WORD + r")\b)")
_DIGITS = r"\d+(?:,\d{3})*(?:\.\d+)?"
_WORDS = rf"(?:(?:{NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{NUMBER_WORD}))*)"
_QUANTITY = re.compile(rf"(?<![\w.-])({_DIGITS}|{_WORDS})\b\s*({UNIT_WORD})?(?![\w])", re.IGNORECASE)
# A name: capitalised words, joined by at most a few lowercase particles ("Council of Nine Wardens")
_NAME = re.compile(r"\b([A-Z][\w'.-]*(?:\s+(?:(?:of|the|de|da|van|von)\s+){0,2}[A-Z][\w'.-]*)*)")
# Capitalised only because they start a sentence or are common words, never names by themselves
_NOT_NAMES = set("""a an the it its it's this that these those there their they he she her his in on at
by for from of to and or but yes no not when where which who whom whose what why how most many some
every each one after before during since until because if as with without about around roughly nearly
approximately over under i we you our your is are was were be been has have had do does did can will""".split())
_YES_NO = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|may|must)\b", re.I)
_NEGATIVE = re.compile(r"\b(no|not|never|none|nobody|nothing|neither|nor)\b|n't\b", re.I)
_AFFIRMATIVE = re.compile(r"^\W*(yes|yeah|correct|true|indeed)\b", re.I)


@dataclass(frozen=True)
class Fact:
    kind: str
    """'number' (value and dimension), 'year', 'date' (month-day), 'name' or 'polarity'."""
    value: str
    """Normalised: '2340', '220 time', '1711', '03-14', 'council of nine wardens', 'no'."""
    text: str
    """As the reference says it."""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "text": self.text}


def _word_number(text: str) -> float | None:
    total, current, seen = 0.0, 0.0, False
    for w in re.split(r"[\s-]+", text.lower()):
        if w in ("and", ""):
            continue
        if w in SMALL:
            current += SMALL[w]
            seen = True
        elif w in SCALE:
            current = max(current, 1) * SCALE[w]
            if SCALE[w] >= 1000:
                total, current = total + current, 0.0
            seen = True
        else:
            return None
    return total + current if seen else None


def _number(text: str) -> float | None:
    if re.fullmatch(_DIGITS, text):
        return float(text.replace(",", ""))
    return _word_number(text)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# Held-out references and answers are a sentence or two; a leaf is written by whoever opens the
# pull request, so only this much of any text is read for facts (the per-fact lookups below are
# linear each, quadratic over a 100 KB answer: 136 s for "1711 " * 20000).
MAX_CHARS = 4000


def _bounded(text: str | None) -> str:
    return " ".join((text or "")[:MAX_CHARS].split())


def _spans_overlap(a: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(a[0] < e and s < a[1] for s, e in spans)


def _after_sentence_end(text: str, start: int) -> bool:
    """Whether only whitespace, after nothing or after a sentence end, precedes ``start``. Looks
    back over that whitespace only (a regex over ``text[:start]`` per name was quadratic)."""
    j = start - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    return j < 0 or text[j] in '.!?:;"'


def extract(text: str) -> list[Fact]:
    """Every value in ``text`` (no polarity: that needs the question)."""
    text = _bounded(text)
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []
    for m in _DAY_MONTH.finditer(text):
        day, month = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        facts.append(Fact("date", f"{MONTHS[month.lower()]:02d}-{int(day):02d}", m.group(0)))
        taken.append(m.span())
    for m in _YEAR.finditer(text):
        if not _spans_overlap(m.span(), taken):
            facts.append(Fact("year", m.group(1), m.group(0)))
            taken.append(m.span())
    # Names before quantities: "Council of Nine Wardens" is a name, not the number nine.
    for m in _NAME.finditer(text):
        words = m.group(1).split()
        lead = 0
        while words and words[0].lower().strip(".,") in _NOT_NAMES | set(MONTHS):
            lead += 1
            words = words[1:]
        while words and words[-1].lower() in ("of", "the", "de", "da", "van", "von"):
            words = words[:-1]
        if not words:
            continue
        name = " ".join(words).rstrip(".,'")
        start = m.start(1) + m.group(1).find(words[0])
        at_sentence_start = _after_sentence_end(text, start)
        if len(words) == 1 and (at_sentence_start or len(name) < 2):
            continue  # "Fog is ...", "Creating a branch ...": capitalised by position, not a name
        if _spans_overlap((start, start + len(name)), taken) or not re.search(r"[A-Za-z]", name):
            continue
        facts.append(Fact("name", name.lower().replace("'s", ""), name))
        taken.append((start, start + len(name)))
    # Quantities; consecutive durations ("three hours and forty minutes") add up to one value.
    pending: tuple[float, str, str, tuple[int, int]] | None = None
    quantities: list[tuple[float, str, str, tuple[int, int]]] = []
    for m in _QUANTITY.finditer(text):
        if _spans_overlap(m.span(), taken):
            continue
        value = _number(m.group(1).strip())
        if value is None:
            continue
        unit = (m.group(2) or "").lower()
        dim, factor = UNITS.get(unit, ("count", 1.0))
        if unit == "m" and not re.match(r"\d", m.group(1)):
            dim, factor = "count", 1.0  # "one m..." is not a length
        if dim == "count" and m.group(1).strip().lower() in ("one", "once"):
            continue  # "in one part", "when one branch": an article more often than a count
        q = (value * factor, dim, m.group(0).strip(), m.span())
        if pending and dim == "time" and pending[1] == "time" and \
                re.fullmatch(r"[\s,]*(and)?\s*", text[pending[3][1]:m.start()]):
            pending = (pending[0] + q[0], "time", text[pending[3][0]:m.end()], (pending[3][0], m.end()))
            quantities[-1] = pending
            continue
        quantities.append(q)
        pending = q
    for value, dim, raw, span in quantities:
        facts.append(Fact("number", f"{_fmt(value)} {dim}", raw))
    return facts


def polarity(text: str) -> str:
    return "no" if _NEGATIVE.search(text or "") else "yes"


def key_facts(question: str, reference: str) -> list[Fact]:
    """The facts the reference adds to the question: its values that the question does not hold,
    plus the answer's polarity when the question is a yes/no question."""
    question, reference = _bounded(question), _bounded(reference)
    asked = {(f.kind, f.value) for f in extract(question)}
    asked_names = {f.value for f in extract(question) if f.kind == "name"}
    out: list[Fact] = []
    if _YES_NO.match(question or "") and not re.search(r"\bor\b", question or ""):
        out.append(Fact("polarity", polarity(reference), "no" if polarity(reference) == "no" else "yes"))
    seen = set()
    for f in extract(reference):
        if (f.kind, f.value) in asked or (f.kind, f.value) in seen:
            continue
        if f.kind == "name" and (any(f.value in n or n in f.value for n in asked_names)
                                 or re.search(r"\b" + re.escape(f.value) + r"\b", (question or "").lower())):
            continue  # "Brenvik" when the question says "Brenvik Isle", or the other way round
        seen.add((f.kind, f.value))
        out.append(f)
    return out


def _has_name(name: str, answer_names: set[str], answer_text: str) -> bool:
    if name in answer_names:
        return True
    words = [w for w in name.split() if w not in ("the", "of")]
    return bool(words) and re.search(r"\b" + r"\W+(?:(?:of|the)\W+)*".join(map(re.escape, words)) + r"\b",
                                     answer_text.lower()) is not None


def check(answer: str, facts: list[Fact] | list[dict], question: str = "") -> dict:
    """{hit, found, wrong}: which key facts the answer carries (``found``: list of values) and
    which of its values contradict one (same kind, not a key fact, not in the question)."""
    facts = [f if isinstance(f, Fact) else Fact(**f) for f in facts]
    answer, question = _bounded(answer), _bounded(question)
    values = extract(answer)
    asked = {(f.kind, f.value) for f in extract(question)}
    asked_names = {f.value for f in extract(question) if f.kind == "name"}
    names = {f.value for f in values if f.kind == "name"}
    found, wrong = [], []
    for f in facts:
        if f.kind == "polarity":
            said = polarity(answer)
            if said == f.value and (said == "no" or _AFFIRMATIVE.search(answer)):
                found.append(f.value)
            elif said != f.value and (said == "no" or _AFFIRMATIVE.search(answer)):
                wrong.append(f"polarity {said}")
        elif f.kind == "name":
            if _has_name(f.value, names, answer):
                found.append(f.value)
        elif any(v.kind == f.kind and v.value == f.value for v in values):
            found.append(f.value)
    expected = {(f.kind, f.value) for f in facts}
    kinds = {f.kind for f in facts}
    dims = {f.value.split(" ", 1)[1] for f in facts if f.kind == "number"}
    fact_names = [f.value for f in facts if f.kind == "name"]
    for v in values:
        if v.kind not in kinds or (v.kind, v.value) in expected or (v.kind, v.value) in asked:
            continue
        if v.kind == "number" and v.value.split(" ", 1)[1] not in dims:
            continue  # another unit is another slot
        if v.kind == "name" and (any(v.value in n for n in fact_names) or any(v.value in n for n in asked_names)
                                 or re.search(r"\b" + re.escape(v.value) + r"\b", question.lower())):
            continue  # a part of a key name ("Babbage" for "Charles Babbage") or of the question's, or a
            # phrase of the question capitalised ("the Brenvik Council" for "the Brenvik council"; its
            # words scattered over the question are another name: "Oda Kell" for "Oda Marrant ... James Kell")
            # (but "James Amberlow" for the founder of Amberlow is another name)
        wrong.append(f"{v.kind} {v.text}")
    return {"hit": bool(facts) and len(found) == len(facts) and not wrong, "found": found, "wrong": wrong}


def restate(question: str) -> str:
    """The question turned into a statement that adds no fact: the baseline every knowledge
    answer must beat ("When was the Marrant Seawall finished?" -> "The Marrant Seawall was
    finished."). Word-overlap scores rate this highly; key facts give it nothing."""
    q = _bounded(question).rstrip("?").strip()
    q = re.sub(r"^(?:what|which|who|whom|whose|when|where|why|how(?: many| much| long| often| old)?|roughly what"
               r"(?: share)?|in which|since when|name)\s+", "", q, flags=re.I)
    m = re.match(r"^(is|are|was|were|do|does|did|can|has|have|had)\s+(.*)$", q, flags=re.I)
    if m:
        q = f"{m.group(2)} {m.group(1).lower()}" if m.group(1).lower() in ("is", "are", "was", "were") else m.group(2)
    q = q.strip()
    return (q[:1].upper() + q[1:] + ".") if q else ""
