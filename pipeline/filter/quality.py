"""Format and length checks, and exact duplicates (normalised text hash)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .base import FilterResult, normalize

_LEFTOVERS = ("[question]", "[answer]", "[end]", "[context]", "as an ai", "i cannot", "i'm sorry")


@dataclass(frozen=True)
class FormatConfig:
    min_question_words: int = 3
    """Shorter questions are dropped."""
    min_answer_words: int = 1
    max_question_words: int = 250
    max_answer_words: int = 600
    """Longer answers are dropped: usually a run-on completion."""
    min_long_answer_words: int = 25
    """Long-shape knowledge answers must be at least this long, unless they quote two or more
    whole sentences of their source chunk word for word (a passage of the document is complete
    by construction: the short ones carried a fact each, 21 were dropped in one demo run)."""


def _sentence_ends(text: str) -> int:
    """Sentence ends ('.', '!' or '?' before a space or the end), in one pass."""
    return sum(1 for i, c in enumerate(text) if c in ".!?" and (i + 1 == len(text) or text[i + 1].isspace()))


def quotes_source(r: dict) -> bool:
    """The answer is two or more sentences copied word for word from the record's source chunk."""
    a, chunk = (r.get("answer") or "").strip(), r.get("source_chunk") or ""
    return _sentence_ends(a) >= 2 and f" {normalize(a)} " in f" {normalize(chunk)} "


def format_filter(records: list[dict], config: FormatConfig = FormatConfig()) -> FilterResult:
    out = FilterResult("format")
    for r in records:
        q, a = (r.get("question") or "").strip(), (r.get("answer") or "").strip()
        qw, aw = len(q.split()), len(a.split())
        low = (q + " " + a).lower()
        if not q or not a:
            out.drop(r, "empty question or answer")
        elif qw < config.min_question_words:
            out.drop(r, f"question has {qw} words (< {config.min_question_words})")
        elif aw < config.min_answer_words:
            out.drop(r, "empty answer")
        elif qw > config.max_question_words:
            out.drop(r, f"question has {qw} words (> {config.max_question_words})")
        elif aw > config.max_answer_words:
            out.drop(r, f"answer has {aw} words (> {config.max_answer_words})")
        elif r.get("shape") == "long" and aw < config.min_long_answer_words and not quotes_source(r):
            out.drop(r, f"long answer has only {aw} words (< {config.min_long_answer_words})")
        elif normalize(q) == normalize(a):
            out.drop(r, "answer repeats the question")
        elif any(x in low for x in _LEFTOVERS):
            out.drop(r, "template marker or refusal left in the text")
        elif r.get("kind") == "skill" and r.get("context") is not None and not r["context"].strip():
            out.drop(r, "grounded task with an empty context")
        else:
            out.kept.append(r)
    return out


def exact_dedup(records: list[dict], key: str = "qa") -> FilterResult:
    """Drop records whose normalised question+answer (or question) was seen before."""
    out = FilterResult("exact_dedup")
    seen: dict[str, str] = {}
    for r in records:
        text = normalize(r.get("question")) + ("\0" + normalize(r.get("answer")) if key == "qa" else "")
        if r.get("context"):
            text += "\0" + normalize(r["context"])
        h = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        if h in seen:
            out.drop(r, f"exact duplicate of {seen[h]}")
        else:
            seen[h] = r.get("id", "?")
            out.kept.append(r)
    return out
