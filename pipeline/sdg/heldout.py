"""Held out at the source: a seeded share of each leaf's seed material that never reaches a
teacher prompt, training data, replay or a reading-comprehension turn, and is what evaluation
asks. Held out after generation, a question is only a paraphrase away from a training turn
(the teacher saw its seed); held out before, the model can only answer it by having learnt the
leaf's knowledge or skill.

- knowledge: two of the three question/answer pairs of every seed example (at least one stays
  for the teacher prompts), pairs whose answer carries a key fact (``eval/facts.py``) first, so
  a leaf of five examples has ten items to score; the seed's context and the document stay,
  since learning from the document is the point.
- skills: 30% of the seed examples (at least one, and at least one stays for the teacher).

Which items are held out depends on each item's own text and the seed, not on its position, and
each seed example is split on its own, so adding or editing a seed example elsewhere in the leaf
does not move the rest of the split. A model's lineage may still have trained on an item that is
held out today (an edit within an example moves that example's choice): ``trained`` excludes
such items here, and evaluation drops and reports any it finds (``ledger``)."""

from __future__ import annotations

import copy
import hashlib
import math

from ..filter.base import words

KNOWLEDGE_SHARE = 2 / 3
SKILL_SHARE = 0.3


def _rank(path: str, seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{path}\0{text}".encode()).hexdigest()


def _take(n: int, share: float, keep_at_least: int = 1) -> int:
    return max(1, min(n - keep_at_least, math.floor(n * share + 0.5))) if n > keep_at_least else 0


def _has_facts(qa: dict) -> bool:
    from ..eval.facts import key_facts
    return bool(key_facts(qa.get("question", ""), qa.get("answer", "")))


def split_leaf(data: dict, kind: str, path: str, seed: int = 0,
               trained: frozenset[str] = frozenset()) -> tuple[dict, list[dict]]:
    """(a copy of the leaf's data without the held-out items, the held-out items as
    {question, answer, context, seed_example, facts}). ``trained``: normalised questions the
    model's lineage has trained on, never held out again."""
    from ..eval.facts import key_facts
    train = copy.deepcopy(data)
    held: list[dict] = []
    examples = train.get("seed_examples") or []
    if kind == "knowledge":
        for i, ex in enumerate(examples):
            qas = ex.get("questions_and_answers") or []
            eligible = [j for j in range(len(qas)) if norm(qas[j].get("question")) not in trained]
            k = min(_take(len(qas), KNOWLEDGE_SHARE), len(eligible))
            out = set(sorted(eligible, key=lambda j: (not _has_facts(qas[j]),
                                                      _rank(path, seed, qas[j].get("question", ""))))[:k])
            held += [{"kind": "knowledge", "question": qas[j]["question"], "answer": qas[j]["answer"],
                      "context": ex.get("context"), "seed_example": i,
                      "facts": [f.as_dict() for f in key_facts(qas[j]["question"], qas[j]["answer"])]}
                     for j in sorted(out)]
            ex["questions_and_answers"] = [qa for j, qa in enumerate(qas) if j not in out]
    else:
        eligible = [j for j in range(len(examples)) if norm(examples[j].get("question")) not in trained]
        k = min(_take(len(examples), SKILL_SHARE), len(eligible))
        out = set(sorted(eligible, key=lambda j: _rank(path, seed, examples[j].get("question", "")))[:k])
        held = [{"kind": "skill", "question": examples[j]["question"], "answer": examples[j]["answer"],
                 "context": examples[j].get("context"), "seed_example": j} for j in sorted(out)]
        train["seed_examples"] = [ex for j, ex in enumerate(examples) if j not in out]
    return train, held


def norm(text: str | None) -> str:
    return " ".join(words(text))


def _own_context(h: dict) -> str:
    """A skill item's context is part of what is held out (grounded skills often share one
    question, "Summarise the text", across seeds); a knowledge item's context is the document,
    which stays."""
    return norm(h.get("context")) if h.get("kind") == "skill" else ""


def _asks(h: dict, user_text: str) -> bool:
    q, ctx = norm(h["question"]), _own_context(h)
    return bool(q) and q in user_text and (not ctx or ctx in user_text)


def decontaminate(records: list[dict], heldout: list[dict]) -> tuple[list[dict], list[dict]]:
    """Drop generated records that carry a held-out item: its question (with its own context,
    for a grounded skill) inside the record's prompt, or its answer as the record's answer
    (normalised text). A teacher can write a held-out pair back from the document it was drawn
    from; such a record would turn the evaluation into a memory test. Returns (kept, dropped)."""
    answers = {norm(h["answer"]) for h in heldout} - {""}
    kept, dropped = [], []
    for r in records:
        user = norm(f"{r.get('context') or ''} {r.get('question') or ''}")
        if norm(r.get("answer")) in answers or any(_asks(h, user) for h in heldout):
            dropped.append(r)
        else:
            kept.append(r)
    return kept, dropped


def training_turns(rows: list[dict]) -> list[tuple[str, str]]:
    """(role, normalised text) of every user and assistant turn in messages rows."""
    return [(m["role"], norm(m["content"])) for row in rows for m in row.get("messages", [])
            if m.get("role") in ("user", "assistant")]


def leaks(heldout: list[dict], rows: list[dict], near: float = 0.8) -> dict:
    """Where held-out items meet training turns: ``exact`` (a held-out question inside a user
    turn, or a held-out answer as a whole assistant turn) must be empty; ``near`` lists
    assistant turns whose word-shingle Jaccard with a held-out answer is at least ``near``
    (reported, for a reviewer to read)."""
    from ..filter.minhash import shingles
    turns = training_turns(rows)
    exact, close = [], []
    answer_sets = [(h, shingles(norm(h["answer"]).split(), 2)) for h in heldout]
    for h in heldout:
        a = norm(h["answer"])
        for role, text in turns:
            if (role == "user" and _asks(h, text)) or (role == "assistant" and a and a == text):
                exact.append({"question": h["question"], "turn": text[:200]})
    seen = set()
    for role, text in turns:
        if role != "assistant" or text in seen:
            continue
        seen.add(text)
        sh = shingles(text.split(), 2)
        for h, hs in answer_sets:
            if hs and sh and len(hs & sh) / len(hs | sh) >= near:
                close.append({"question": h["question"], "answer": h["answer"], "turn": text[:200]})
    return {"exact": exact, "near": close}
