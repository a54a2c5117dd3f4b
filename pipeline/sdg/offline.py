"""The offline teacher: a deterministic, document-grounded generator that needs no model.

It is a smoke-level teacher: it writes definition, fill-in-the-blank and explanation questions
from a chunk's own sentences (so every answer is grounded by construction), and varies skill
seeds by rephrasing their instructions. Good enough for the pipeline downstream to mean
something on a laptop; use a real model (OpenAI-compatible endpoint or a local HF model) for
data worth training on.
"""

from __future__ import annotations

import hashlib
import random
import re

from .chunking import sentences
from .prompts import Prompt

_COPULA = re.compile(r"^(?P<subj>(?:(?:The|A|An)\s+)?[A-Za-z][\w'-]*(?:\s+[\w'-]+){0,6}?)\s+"
                     r"(?P<verb>is|are|was|were)\s+(?P<rest>.{12,})$")
_PRONOUNS = {"it", "this", "that", "these", "those", "they", "he", "she", "there", "here", "what",
             "which", "who", "one", "each", "most", "some", "all"}
_NUMBER = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
_ENTITY = re.compile(r"(?<!^)(?<![.!?]\s)\b([A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)+)\b")
_REPHRASE = ["{q}", "Please help with this: {q}", "{q} Take care to get it right.",
             "Here is a task for you. {q}", "Could you do the following? {q}", "{q} Answer carefully."]


def _rng(*parts) -> random.Random:
    return random.Random(int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _pair(q: str, a: str, context: str | None = None) -> str:
    return (f"[Context]\n{context}\n" if context else "") + f"[Question]\n{q}\n[Answer]\n{a}\n[End]"


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


def definition(sentence: str) -> tuple[str, str] | None:
    m = _COPULA.match(sentence.strip())
    if not m:
        return None
    subj = m.group("subj").strip()
    first_of_rest = m.group("rest").split()[0].lower()
    if subj.split()[0].lower() in _PRONOUNS or len(subj) < 3:
        return None
    # "X is driven by ..." is a passive statement, not a definition of X
    if first_of_rest.endswith(("ed", "en")) or first_of_rest in {"also", "not", "often", "usually", "simply"}:
        return None
    return f"What {m.group('verb')} {_lower_first(subj)}?", sentence.strip()


def cloze(sentence: str) -> tuple[str, str] | None:
    for rx, what in ((_NUMBER, "number"), (_ENTITY, "name")):
        hits = list(rx.finditer(sentence))
        if hits:
            m = hits[0]
            blanked = sentence[:m.start()] + "____" + sentence[m.end():]
            return f"Fill in the blank: {blanked}", sentence.strip()
    return None


_YEAR = re.compile(r"\b(in|since|until|by|from|of) (1[0-9]{3}|20[0-9]{2})\b")
_COUNT = re.compile(r"\b(?:about |around |nearly |over )?(\d[\d,.]*) ([a-z]+)\b")
_RUN = re.compile(r"[\d,.]+")
_PREFIXES = ("about ", "around ", "nearly ", "over ")
_LED_BY = re.compile(r"\b(by|led by|named after|called|known as) ((?:the )?[A-Z][\w'-]*(?:\s+(?:(?:of|the)\s+)*[A-Z][\w'-]*)*)")


def search_count(s: str) -> re.Match | None:
    """``_COUNT.search(s)`` in linear time. Searched plainly, the regex restarts at every digit of
    "1.1.1.1..." and rescans the rest of the run (quadratic); a match depends only on what follows
    its run of digits, commas and dots, so trying the first possible start of each run is enough."""
    for run in _RUN.finditer(s):
        q = next((i for i in range(run.start(), run.end())
                  if s[i].isdecimal() and (i == 0 or not _is_word(s[i - 1]))), None)
        if q is None:
            continue
        for prefix in _PREFIXES:
            if q >= len(prefix) and s.startswith(prefix, q - len(prefix)):
                m = _COUNT.match(s, q - len(prefix))
                if m:
                    return m
        m = _COUNT.match(s, q)
        if m:
            return m
    return None


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def wh_question(sentence: str) -> tuple[str, str] | None:
    """A question asked in place ("Brenvik Isle was first settled in what year by ...?"), the way
    a quiz master asks it: the fact the sentence states is what it asks for. The answer is the
    sentence, so the model learns to say the fact when asked for it, not only to continue it."""
    s = sentence.strip().rstrip(".!")
    for rx, make in ((_YEAR, lambda m: f"{m.group(1)} what year"),
                     (_LED_BY, lambda m: f"{m.group(1)} whom" if m.group(1).endswith("by") else f"{m.group(1)} what"),
                     (search_count, lambda m: f"how many {m.group(2)}")):
        m = rx(s) if callable(rx) else rx.search(s)
        if m and m.start() > 0:
            q = s[:m.start()] + make(m) + s[m.end():]
            return q[:1].upper() + q[1:] + "?", sentence.strip()
    return None


def knowledge(prompt: Prompt, sample: int) -> str:
    v = prompt.variables
    text, n = v["document"], int(v["n"])
    sents = [s for s in sentences(text.replace("\n", " ")) if len(s.split()) >= 5]
    rng = _rng(text, prompt.task, sample)
    out = []
    if prompt.task == "knowledge_short":
        # One order per chunk, and each sample continues where the previous one stopped: samples
        # cover different sentences instead of drawing the same ones again (near duplicates).
        order = sents[:]
        _rng(text, prompt.task).shuffle(order)
        k = (sample * n) % max(1, len(order))
        order = order[k:] + order[:k]
        makers = [(definition, wh_question, cloze), (wh_question, cloze, definition), (cloze, wh_question, definition)]
        for s in order:
            for make in makers[rng.randrange(len(makers))]:
                qa = make(s)
                if qa:
                    out.append(_pair(*qa))
                    break
            if len(out) >= n:
                break
    else:
        title = v.get("title") or v.get("domain") or "the document"
        topic = title.split(" > ")[-1]
        subjects = [definition(s)[0][len("What is "):].rstrip("?") for s in sents if definition(s)]
        questions = [f"Explain what the material on {_lower_first(topic)} says.",
                     f"Describe in detail: {topic}.",
                     f"Summarise the main points about {_lower_first(topic)}."]
        questions += [f"Explain {s} and why it matters, using the text." for s in subjects]
        rng.shuffle(questions)
        for i, q in enumerate(questions[:n]):
            start = (i * 2 + sample) % max(1, len(sents))
            answer = " ".join((sents[start:] + sents[:start])[:max(3, min(6, len(sents)))])
            out.append(_pair(q, answer))
    return "\n\n".join(out)


def skill(prompt: Prompt, sample: int) -> str:
    v = prompt.variables
    seeds = v["seeds"]  # list of (context, question, answer)
    n = int(v["n"])
    rng = _rng(prompt.task, sample, *(q for _, q, _ in seeds))
    out = []
    for i in range(n):
        context, q, a = seeds[rng.randrange(len(seeds))]
        pattern = _REPHRASE[(i + sample) % len(_REPHRASE)]
        out.append(_pair(pattern.format(q=q.strip()), a.strip(), context.strip() if context else None))
    return "\n\n".join(out)


def judge(prompt: Prompt) -> str:
    raise NotImplementedError("the offline teacher does not judge")


def complete(prompt: Prompt, sample: int) -> str:
    if prompt.task.startswith("knowledge"):
        return knowledge(prompt, sample)
    if prompt.task.startswith("skill"):
        return skill(prompt, sample)
    return judge(prompt)
