"""Answer scores against references: token F1 and ROUGE-L (LCS-based F-measure)."""

from __future__ import annotations

from collections import Counter

from ..filter.base import words


def token_f1(prediction: str, reference: str) -> float:
    p, r = words(prediction), words(reference)
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
