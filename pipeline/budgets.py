"""What one pull request may make the cluster spend, checked before the teacher is called.

Without caps a 5 MB document became ~3,800 chunks and ~15,000 teacher completions, and 60
patterns matching one 1 MB file meant 60 reads. Each budget is a setting (environment variable,
read when a run starts); exceeding one stops generation with a message naming the leaf, the
figure, the limit and the setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


class BudgetError(Exception):
    """A pull request asks for more than a budget allows; the message says which and how to raise it."""


@dataclass(frozen=True)
class Budgets:
    leaves: int = 1_000
    """Leaves generated (not from cache) in one run: ``SPROUT_MAX_LEAVES``."""
    patterns: int = 20
    """Document patterns per leaf: ``SPROUT_MAX_PATTERNS``."""
    document_file_bytes: int = 5_000_000
    """Bytes of one document file, checked with ``git cat-file -s`` before it is read:
    ``SPROUT_MAX_DOCUMENT_FILE_BYTES``."""
    document_bytes: int = 20_000_000
    """Bytes of all documents of one leaf: ``SPROUT_MAX_DOCUMENT_BYTES``."""
    chunks: int = 500
    """Document chunks per leaf: ``SPROUT_MAX_CHUNKS``."""
    completions_per_leaf: int = 3_000
    """Teacher completions for one leaf: ``SPROUT_MAX_COMPLETIONS_PER_LEAF``."""
    completions_per_run: int = 100_000
    """Teacher completions in one run: ``SPROUT_MAX_COMPLETIONS``."""

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Budgets":
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            name = ENV[f.name]
            raw = env.get(name)
            if raw:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise BudgetError(f"{name}={raw!r} is not a whole number") from None
                if values[f.name] < 1:
                    raise BudgetError(f"{name}={raw!r} must be at least 1")
        return cls(**values)


ENV = {"leaves": "SPROUT_MAX_LEAVES", "patterns": "SPROUT_MAX_PATTERNS",
       "document_file_bytes": "SPROUT_MAX_DOCUMENT_FILE_BYTES", "document_bytes": "SPROUT_MAX_DOCUMENT_BYTES",
       "chunks": "SPROUT_MAX_CHUNKS", "completions_per_leaf": "SPROUT_MAX_COMPLETIONS_PER_LEAF",
       "completions_per_run": "SPROUT_MAX_COMPLETIONS"}


def over(what: str, figure: int, field: str, budgets: Budgets, leaf: str | None = None) -> BudgetError:
    limit = getattr(budgets, field)
    where = f"{leaf}: " if leaf else ""
    return BudgetError(f"{where}{what} is {figure:,}, over the budget of {limit:,} per "
                       f"{'run' if field in ('leaves', 'completions_per_run') else 'leaf' if field != 'document_file_bytes' else 'file'}"
                       f" ({ENV[field]} raises it)")


def check(figure: int, field: str, what: str, budgets: Budgets, leaf: str | None = None) -> None:
    if figure > getattr(budgets, field):
        raise over(what, figure, field, budgets, leaf)


def plan_generation(missing: list, taxonomy_root, config) -> dict:
    """Check every budget for the leaves about to be generated, before any teacher call: leaves in
    the run, and per leaf its patterns, document bytes, chunks and completions, and the run's
    completions in all. Returns the planned completions per leaf path."""
    from .sdg.chunking import chunk_markdown
    from .sdg.documents import fetch
    from .sdg.generate import skill_prompts
    budgets = Budgets.from_env()
    check(len(missing), "leaves", "the number of leaves to generate", budgets)
    planned, total = {}, 0
    for leaf, _key in missing:
        if leaf.kind == "knowledge":
            docs = fetch(leaf.data["document"], taxonomy_root, budgets=budgets, leaf=leaf.path)
            chunks = sum(len(chunk_markdown(text, name, config.chunk_tokens)) for name, text in docs)
            check(chunks, "chunks", "the number of document chunks", budgets, leaf.path)
            shapes = sum(1 for n in (config.short_pairs, config.long_pairs) if n)
            completions = chunks * shapes * config.samples
        else:
            completions = len(skill_prompts(leaf, config)) * config.samples
        check(completions, "completions_per_leaf", "the number of teacher completions", budgets, leaf.path)
        planned[leaf.path] = completions
        total += completions
    check(total, "completions_per_run", "the number of teacher completions", budgets)
    return planned
