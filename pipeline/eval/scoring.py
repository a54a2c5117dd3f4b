"""Answer scores against references: token F1 over content words (no stopwords, no
punctuation: "the the is of a" earns nothing) and ROUGE-L (LCS-based F-measure over words)."""

from __future__ import annotations

from collections import Counter

from ..filter.base import words


STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also may might must shall s t""".split())


def content_words(text: str | None) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def token_f1(prediction: str, reference: str) -> float:
    p, r = content_words(prediction), content_words(reference)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    p, r = words(prediction), words(reference)
    if not p or not r:
        return float(p == r)
    prev = [0] * (len(r) + 1)
    for a in p:  # LCS by dynamic programming, one row at a time
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def score(prediction: str, reference: str) -> float:
    """The per-question score the report uses: the mean of token F1 and ROUGE-L."""
    return (token_f1(prediction, reference) + rouge_l(prediction, reference)) / 2
