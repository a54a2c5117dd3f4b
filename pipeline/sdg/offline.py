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


_INVERT = re.compile(r"^(?P<subj>(?:(?:The|A|An)\s+)?[A-Z][\w'-]*(?:\s+[\w'-]+){0,6}?)\s+"
                     r"(?P<aux>is|are|was|were|has|have|had)\s+(?P<rest>.+)$")
_TARGETS = (  # (pattern over the predicate, question word); the first that matches is asked for
    (re.compile(r"\b(?P<prep>in|since|until|by|from) (?P<v>1[0-9]{3}|20[0-9]{2})\b"), "what year"),
    (re.compile(r"\b(?P<prep>on) (?P<v>\d{1,2} [A-Z][a-z]+)\b"), "what date"),
    (re.compile(r"\b(?P<prep>by|after|from|to|in|called|as) (?P<v>(?:the )?[A-Z][\w'-]*(?:\s+(?:(?:of|the)\s+){0,2}[A-Z][\w'-]*)*)"), "what"),
    (re.compile(r"(?P<prep>)\b(?P<v>(?:about |around |roughly )?\d[\d,]* [a-z]+|(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|forty)\b[\w ]*?(?:years|hours|minutes|days|metres|kilometres|weeks))\b"), "how much"),
)


def topic_of(title: str | None) -> str | None:
    """The document's subject from its chunk title ("Brenvik Isle (a fictional island) > History"
    -> "Brenvik Isle"): what a sentence's "It" and "Its" stand for."""
    if not title:
        return None
    head = re.sub(r"\s*\(.*?\)", "", title.split(" > ")[0]).strip()
    return head if head and head[:1].isupper() and len(head.split()) <= 5 else None


def resolve(sentence: str, topic: str | None) -> str:
    """A sentence that stands alone: a leading "It"/"Its" becomes the document's subject, so a
    question made from it names what it asks about."""
    s = sentence.strip()
    if topic:
        s = re.sub(r"^Its\b", f"{topic}'s", s)
        s = re.sub(r"^It (?=is|was|has)", f"{topic} ", s)
    return s


def inverted(sentence: str) -> tuple[str, str] | None:
    """The question a reader asks ("When was the Marrant Seawall finished?" from "The Marrant
    Seawall was finished in 1711 ..."): subject and auxiliary inverted, the fact asked for."""
    s = sentence.strip().rstrip(".!")
    m = _INVERT.match(s)
    if not m or m.group("subj").split()[0].lower() in _PRONOUNS:
        return None
    rest = m.group("rest")
    for rx, wh in _TARGETS:
        t = rx.search(rest)
        if not t or t.start() == 0 and wh == "what":
            continue
        before, after = rest[:t.start()].strip(" ,"), rest[t.end():].strip(" ,")
        if re.search(r",|\b(which|where|who|that|and)\b", before):
            return None  # the fact sits in a clause of its own: asked in place instead
        prep = t.group("prep")
        if wh == "how much" and re.search(r"\b(years|hours|minutes|days|weeks)\b", t.group("v")):
            lead = "How long" if not before.endswith(("every", "every other")) else "How often"
            before = re.sub(r"\s*every$", "", before)
        elif wh == "how much":
            lead = f"How many {t.group('v').split()[-1]}"
        elif prep in ("in", "since", "until") and wh == "what year":
            lead = "When" if prep == "in" else f"Since when" if prep == "since" else "Until when"
        elif wh == "what" and prep in ("called", "as"):
            lead, before = "What", f"{before} {prep}".strip()
        elif wh == "what" and prep == "by":
            lead = "By whom"
        elif wh == "what" and prep == "in":
            lead = "Where"
        else:
            lead = f"{prep.capitalize()} {wh}" if prep else wh.capitalize()
        subj = m.group("subj")
        subj = _lower_first(subj) if subj.split()[0] in ("The", "A", "An") else subj
        q = " ".join(x for x in (lead, m.group("aux"), subj, before, after if wh != "how much" else "") if x)
        return q.rstrip(" ,") + "?", sentence.strip()
    return None


_JOINS = ("; ", ", and ", ", but ", ", while ")
_SUBORDINATE = {"if", "when", "whenever", "although", "though", "because", "while", "unless", "since", "after",
                "before", "once", "as", "whether", "where", "until"}


def clauses(sentence: str) -> list[str]:
    """The independent clauses of a compound sentence, each standing alone ("The islanders rebuilt
    the town in stone, and the Marrant Seawall was finished in 1711 to protect the harbour." ->
    "The Marrant Seawall was finished in 1711 to protect the harbour."), so that the fact in a
    later clause is asked the way a reader asks it; [] for a simple sentence. A part counts only
    when it reads as a statement with its own subject and an auxiliary (``_INVERT``). Not split:
    a list ("A, B, and C were ...": a comma before the join), and a sentence that opens with a
    condition ("If the tide is high, and ..."), whose clauses are not true alone."""
    s = sentence.strip().rstrip(".!")
    if not s or s.split(maxsplit=1)[0].lower().strip(",") in _SUBORDINATE:
        return []
    parts = [s]
    for join in _JOINS:
        out = []
        for part in parts:
            head = part.split(join, 1)[0]
            out += [part] if join.startswith(",") and "," in head else part.split(join)
        parts = out
    if len(parts) < 2:
        return []
    found = []
    for part in parts[:FACTS_PER_SENTENCE]:
        c = part.strip()
        c = c[:1].upper() + c[1:] + "."
        if _INVERT.match(c.rstrip(".")) and c.split()[0].lower() not in _PRONOUNS:
            found.append(c)
    return found


def about(sentence: str, topic: str | None) -> tuple[str, str] | None:
    """A name the sentence states a fact about, asked for that fact ("What do you know about the
    Grey Heron?")."""
    return next(iter(abouts(sentence, topic)), None)


def abouts(sentence: str, topic: str | None) -> list[tuple[str, str]]:
    """Every name the sentence states a fact about, each asked for it: a sentence with three
    names is three questions whose answer is the sentence."""
    from ..eval.facts import extract
    out = []
    for f in extract(sentence):
        if f.kind == "name" and (not topic or f.value not in topic.lower()) and len(f.text) > 3:
            out.append((f"What do you know about {f.text}?", sentence.strip()))
    return out[:FACTS_PER_SENTENCE]


_THE_NOUN = re.compile(r"\b[Tt]he ([a-z]{3,})\b")
_VAGUE = {"island", "text", "document", "same", "other", "first", "main", "most", "rest", "age", "sea", "year"}


def keywords(sentence: str, seen: set[str], limit: int = 2, topic: str | None = None) -> list[tuple[str, str]]:
    """What the sentence says about the things it names in lower case ("the crossing", "the
    wardens"): a short question each, for things not asked about already in this chunk. The
    answer is the sentence, so a fact stated once is still answered several times, by questions
    short enough to differ (the near-duplicate filter compares question and answer)."""
    out = []
    for m in _THE_NOUN.finditer(sentence):
        thing = m.group(1)
        if thing in _VAGUE or thing in seen:
            continue
        seen.add(thing)
        out.append((f"What does {_the_text(topic)} say about the {thing}?", sentence.strip()))
        if len(out) >= limit:
            break
    return out


FACTS_PER_SENTENCE = 4
"""Questions of one kind per sentence at most: each answer repeats the sentence, so a pumped
sentence of thousands of names must not become thousands of copies of itself."""


def when(sentence: str, topic: str | None) -> list[tuple[str, str]]:
    """A year or a date the sentence gives, asked the other way round ("What happened on Brenvik
    Isle in 1711?"): the event's sentence is the answer."""
    from ..eval.facts import extract
    where = f" on {topic}" if topic else ""
    return [(f"What happened{where} {'in' if f.kind == 'year' else 'on'} {f.text}?", sentence.strip())
            for f in extract(sentence) if f.kind in ("year", "date")][:FACTS_PER_SENTENCE]


_THERE_NO = re.compile(r"^There (are|is|were|was) no (?P<rest>[^;,.]+)")
_SUBJECT = re.compile(r"^(?P<subj>(?:The|A|An) [a-z][\w-]*(?: [a-z][\w-]*)?) (?P<verb>[a-z]+(?:s|ed))\b")


def negative(sentence: str) -> tuple[str, str] | None:
    """"There are no cars on X" asked as the yes/no question it answers."""
    m = _THERE_NO.match(sentence.strip())
    return (f"{m.group(1).capitalize()} there {m.group('rest').strip()}?", "No. " + sentence.strip()) if m else None


def _the_text(topic: str | None) -> str:
    """"the text on Orrin Lake": a question that names its document, so that "the ferry" of two
    documents are two things to the student, not one."""
    return f"the text on {topic}" if topic else "the text"


def subject(sentence: str, topic: str | None = None) -> tuple[str, str] | None:
    """What the sentence says about its subject ("The crossing takes three hours ..." -> "What
    does the text say about the crossing?"), for sentences no other form fits."""
    m = _SUBJECT.match(sentence.strip())
    return (f"What does {_the_text(topic)} say about {_lower_first(m.group('subj'))}?", sentence.strip()) if m else None


def passages(sents: list[str], topic: str, sample: int, sizes: tuple[int, ...] = (2, 3)) -> list[str]:
    """The document itself as training text: every run of two and of three sentences, quoted
    from its first words. Overlapping passages differ enough for the near-duplicate filter, so
    each sentence is read in several passages, in the document's own words (continued
    pre-training, in the chat format the student is trained in); shared out between samples."""
    out = []
    for size in sizes:
        for k in range(max(0, len(sents) - size + 1)):
            if (k + size + sample) % 2:
                continue
            if size == 2 or k == 0:
                start = " ".join(sents[k].split()[:5])
                q = f'Quote the passage of the text on {topic} that begins "{start}".'
            else:  # asked from the sentence before, so that two passages from one start differ
                q = f'In the text on {topic}, what follows "{sents[k - 1]}"?'
            out.append(_pair(q, " ".join(sents[k:k + size])))
    return out


def knowledge(prompt: Prompt, sample: int) -> str:
    v = prompt.variables
    text, n = v["document"], int(v["n"])
    sents = [s for s in sentences(text.replace("\n", " ")) if len(s.split()) >= 5]
    rng = _rng(text, prompt.task, sample)
    out = []
    if prompt.task == "knowledge_short":
        # Every sentence of the chunk, asked in every form that fits it (a reader's question, the
        # question asked in place, a definition, a blank, a name's fact), the forms shared out
        # between samples: a fact stated once in a short document is still asked several ways,
        # and each answer states it. ``n`` is a model teacher's batch size; coverage wins here.
        topic = topic_of(v.get("title"))
        things: set[str] = set()
        for i, raw in enumerate(sents):
            s = resolve(raw, topic)
            forms = [qa for qa in (inverted(s), wh_question(s), definition(s), negative(s), cloze(s)) if qa]
            # a compound sentence's later facts asked of their own clause, answered by it
            asked = {q for q, _ in forms}
            forms += [qa for c in clauses(s) for qa in (inverted(c), definition(c)) if qa and qa[0] not in asked]
            forms += abouts(s, topic) + when(s, topic) + keywords(s, things, topic=topic)
            forms = forms or [qa for qa in (subject(s, topic),) if qa]
            seen = set()
            for j, (q, a) in enumerate(forms):
                if q in seen or (i + j + sample) % 2:
                    continue
                seen.add(q)
                out.append(_pair(q, a))
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
        out += passages(sents, topic_of(v.get("title")) or topic, sample)
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
