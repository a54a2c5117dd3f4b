"""Grounding: a knowledge answer must be supported by the chunk it was generated from."""

from __future__ import annotations

from dataclasses import dataclass

from .base import FilterResult, words

STOPWORDS = frozenset("""a an the and or but if then of to in on at by for with from as is are was were be been
being it its this that these those there here which who whom whose what when where why how not no do does did
has have had can could should would may might will shall must so such than too very also about into over
under between through during before after above below up down out off again further once only own same other
some any each few more most all both i you he she we they me him her us them my your his our their""".split())


@dataclass(frozen=True)
class GroundingConfig:
    min_support: float = 0.6
    """Share of the answer's content words that must appear in the source chunk."""


def support(answer: str, source: str) -> float:
    content = [w for w in words(answer) if w not in STOPWORDS]
    if not content:
        return 1.0
    src = set(words(source))
    return sum(w in src for w in content) / len(content)


def grounding_filter(records: list[dict], config: GroundingConfig = GroundingConfig()) -> FilterResult:
    out = FilterResult("grounding")
    for r in records:
        source = r.get("source_chunk")
        if r.get("kind") != "knowledge" or not source:
            out.kept.append(r)
            continue
        s = support(r.get("answer", ""), source)
        if s < config.min_support:
            out.drop(r, f"answer not supported by its source chunk ({s:.0%} of content words found, "
                        f"< {config.min_support:.0%})")
        else:
            out.kept.append(r)
    return out
