"""Semantic rules beyond the JSON Schema; each finding carries a stable rule id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from . import diagnostics as d
from .loader import Loaded
from .schema import yaml_path
from .sources import commit_problem

KNOWN_TREES = ("compositional_skills", "foundational_skills", "knowledge")
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_PATH_STYLE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Limits:
    """Limits InstructLab states in its docs; checked as warnings (errors under --strict)."""

    context_words: int = 500
    """Knowledge: words in one seed example's context."""
    qna_words: int = 250
    """Knowledge: words in one question or one answer."""
    skill_words: int = 2300
    """Skills: words in all questions and answers of a leaf."""
    knowledge_qna_used: int = 3
    """Knowledge: Q&A pairs per seed example that generation uses."""
    token_budget: int = 2048
    """Estimated tokens of context + question + answer in one seed example."""


def words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def words_at_most(text: Any) -> int:
    """An upper bound on ``words(text)`` from C-speed counts; the exact split (which allocates
    every word) runs only when this bound crosses a limit."""
    if not isinstance(text, str):
        return 0
    return text.count(" ") + text.count("\n") + text.count("\t") + 1


def estimate_tokens(text: str) -> int:
    # ~1.33 tokens per English word for Llama/Granite-style BPE vocabularies, plus line breaks.
    return _tokens(words(text), text.count("\n"))


def _tokens(n_words: int, n_lines: int) -> int:
    return int(n_words * 4 / 3) + n_lines


def check_path(rel: str, file: str, strict: bool) -> Iterator[d.Diagnostic]:
    """Layout rules on the taxonomy-relative (posix) path of a leaf."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    name = parts[-1] if parts else ""
    if name == "qna.yml":
        yield d.make(d.LEAF_NAME_YML, file, 1, 1, "the leaf is named qna.yml; InstructLab and "
                     "Sprout read only qna.yaml, so this leaf would be ignored",
                     "Rename the file to qna.yaml.", strict=strict)
        return
    if name != "qna.yaml":
        yield d.make(d.LEAF_NAME, file, 1, 1,
                     f"a leaf file must be named qna.yaml, not {name!r}",
                     "Rename the file to qna.yaml.")
        return
    if not parts or parts[0] not in KNOWN_TREES:
        yield d.make(d.LEAF_TREE, file, 1, 1, "the leaf is not under a known top-level tree "
                     f"({', '.join(KNOWN_TREES)})",
                     "Move the leaf under knowledge/ or compositional_skills/.", strict=strict)
    for part in parts[1:-1]:
        if not _PATH_STYLE.match(part):
            yield d.make(d.LEAF_PATH_STYLE, file, 1, 1,
                         f"folder {part!r} should be lowercase with no spaces",
                         f"Rename it to {re.sub(r'[^a-z0-9_.-]+', '_', part.lower()).strip('_')!r}.",
                         strict=strict)
            break


def check_content(loaded: Loaded, kind: str, version: int, file: str, strict: bool,
                  limits: Limits) -> Iterator[d.Diagnostic]:
    data = loaded.data
    seeds = data.get("seed_examples")
    if not isinstance(seeds, list):
        return

    def warn(rule, path, msg, hint="", key=False):
        line, col = loaded.key_position(path) if key else loaded.position(path)
        return d.make(rule, file, line, col, msg, hint, yaml_path(path), strict=strict)

    seen: dict[str, tuple] = {}

    def question(path, q, context=None):
        if not isinstance(q, str):
            return None
        # Grounded skills legitimately ask the same question of different contexts.
        norm = " ".join(q.casefold().split()), context if isinstance(context, str) else None
        if norm in seen:
            first = loaded.position(seen[norm])[0]
            return warn(d.DUPLICATE_QUESTION, path, f"this question repeats the one on line {first}",
                        "Ask something new: duplicate seeds teach the teacher nothing.")
        seen[norm] = path
        return None

    if kind == "knowledge":
        for i, seed in enumerate(seeds):
            if not isinstance(seed, dict):
                continue
            ctx = seed.get("context")
            n = ctx_words = words_at_most(ctx)
            if n > limits.context_words and words(ctx) > limits.context_words:
                n = words(ctx)
                yield warn(d.CONTEXT_WORDS, ("seed_examples", i, "context"),
                           f"context has {n} words; keep it within {limits.context_words}",
                           "Choose a shorter passage of the document.")
            qas = seed.get("questions_and_answers")
            if not isinstance(qas, list):
                continue
            if len(qas) > limits.knowledge_qna_used:
                yield warn(d.KNOWLEDGE_QNA_COUNT, ("seed_examples", i, "questions_and_answers", limits.knowledge_qna_used),
                           f"{len(qas)} Q&A pairs: only the first {limits.knowledge_qna_used} are "
                           "used for generation; the rest are ignored",
                           "Move the extra pairs to a seed example of their own.")
            for j, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    continue
                base = ("seed_examples", i, "questions_and_answers", j)
                total = ctx_words
                for field in ("question", "answer"):
                    n = words_at_most(qa.get(field))
                    total += n
                    if n > limits.qna_words and words(qa.get(field)) > limits.qna_words:
                        n = words(qa.get(field))
                        yield warn(d.QNA_WORDS, (*base, field),
                                   f"{field} has {n} words; keep it within {limits.qna_words}")
                dup = question((*base, "question"), qa.get("question"))
                if dup:
                    yield dup
                lines = sum(t.count("\n") for t in (ctx, qa.get("question"), qa.get("answer"))
                            if isinstance(t, str))
                if _tokens(total, lines) > limits.token_budget:
                    yield from _budget(warn, base, ctx, qa, limits)
        yield from _document(loaded, file, strict, warn)
        return

    total = 0
    grounded = []
    for i, seed in enumerate(seeds):
        if not isinstance(seed, dict):
            continue
        qa_words = words_at_most(seed.get("question")) + words_at_most(seed.get("answer"))
        total += qa_words
        grounded.append((i, "context" in seed))
        dup = question(("seed_examples", i, "question"), seed.get("question"), seed.get("context"))
        if dup:
            yield dup
        lines = sum(seed[k].count("\n") for k in ("context", "question", "answer")
                    if isinstance(seed.get(k), str))
        if _tokens(qa_words + words_at_most(seed.get("context")), lines) > limits.token_budget:
            yield from _budget(warn, ("seed_examples", i), seed.get("context"), seed, limits)
    if total > limits.skill_words:
        total = sum(words(e.get("question")) + words(e.get("answer")) for e in seeds if isinstance(e, dict))
    if total > limits.skill_words:
        yield warn(d.SKILL_WORDS, ("seed_examples",),
                   f"the questions and answers hold {total} words; keep the leaf within about "
                   f"{limits.skill_words}", "Shorten the examples or split the skill in two.", key=True)
    kinds = {g for _, g in grounded}
    if len(kinds) == 2:
        majority = sum(g for _, g in grounded) * 2 >= len(grounded)
        odd = next(i for i, g in grounded if g != majority)
        yield warn(d.MIXED_GROUNDING, ("seed_examples", odd),
                   "this seed example " + ("has no context" if majority else "has a context") +
                   " while the others " + ("have one" if majority else "do not") +
                   "; a skill is either grounded (all with context) or freeform (none)",
                   "Give every example a context, or none.")


def _budget(warn, base, ctx, qa, limits: Limits):
    text = " ".join(t for t in (ctx, qa.get("question"), qa.get("answer")) if isinstance(t, str))
    tokens = estimate_tokens(text)
    if tokens > limits.token_budget:
        yield warn(d.TOKEN_BUDGET, base, f"context, question and answer come to about {tokens} "
                   f"tokens; the generation budget is {limits.token_budget}",
                   "Shorten the context or the answer so that the teacher prompt fits.")


def _document(loaded: Loaded, file: str, strict: bool, warn) -> Iterator[d.Diagnostic]:
    doc = loaded.data.get("document")
    if not isinstance(doc, dict):
        return
    commit = doc.get("commit")
    unsafe = commit_problem(commit)
    if unsafe:
        line, col = loaded.position(("document", "commit"))
        yield d.make(d.DOCUMENT_COMMIT_UNSAFE, file, line, col, unsafe,
                     "Write the full 40-character commit SHA ('git rev-parse <ref>').", ".document.commit")
    elif isinstance(commit, str) and not _FULL_SHA.match(commit):
        yield warn(d.DOCUMENT_COMMIT, ("document", "commit"),
                   f"commit {commit!r} is not a full SHA; a short or symbolic ref can change "
                   "meaning or become ambiguous", "Write the full 40-character commit SHA "
                   "('git rev-parse <ref>').")
    patterns = doc.get("patterns")
    if isinstance(patterns, list):
        for i, p in enumerate(patterns):
            problem = pattern_problem(p)
            if not problem and isinstance(p, str) and p.startswith("/"):
                line, col = loaded.position(("document", "patterns", i))
                yield d.make(d.DOCUMENT_PATTERN_ROOTED, file, line, col,
                             f"pattern {p!r} starts with '/'; it is read from the repository's root",
                             f"Write it without the leading '/': {p.lstrip('/')!r}.",
                             f".document.patterns[{i}]", strict=strict)
            if problem:
                line, col = loaded.position(("document", "patterns", i))
                yield d.make(d.DOCUMENT_PATTERN, file, line, col, problem,
                             "Patterns are globs relative to the document repository's root, "
                             "such as 'docs/*.md'.", f".document.patterns[{i}]")


MAX_PATTERN_CHARS = 256
"""Longer document patterns are refused: matching costs len(name) * len(pattern) / 64 steps."""
MAX_PATTERN_CLASSES = 16
"""'[...]' classes per pattern: each costs a test per distinct character of a name."""


def pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern.strip():
        return None  # the schema reports these
    # A leading '/' means the repository root (real leaves write it; a warning above).
    if pattern.startswith(("\\", "~")) or re.match(r"^[A-Za-z]:", pattern):
        return f"pattern {pattern!r} is absolute; it must be relative to the repository root"
    if len(pattern) > MAX_PATTERN_CHARS:
        return (f"pattern {pattern[:40]!r}... is {len(pattern)} characters long; a pattern has at "
                f"most {MAX_PATTERN_CHARS}")
    if pattern.count("[") > MAX_PATTERN_CLASSES:
        return f"pattern {pattern[:40]!r}... holds more than {MAX_PATTERN_CLASSES} '[' classes"
    rest = pattern.lstrip("/")
    if "\\" in rest:
        return f"pattern {pattern!r} uses backslashes; use '/' between folders"
    if ".." in rest.split("/"):
        return f"pattern {pattern!r} climbs out of the repository with '..'"
    if rest.startswith(".git/") or rest == ".git":
        return f"pattern {pattern!r} points into git's own data"
    return None
