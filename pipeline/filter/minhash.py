"""Near duplicates with MinHash LSH (datasketch): sub-linear, unlike pairwise ROUGE-L."""

from __future__ import annotations

from dataclasses import dataclass


from .base import FilterResult, words


@dataclass(frozen=True)
class MinHashConfig:
    threshold: float = 0.7
    """Estimated Jaccard similarity of word shingles above which a sample is a near duplicate."""
    num_perm: int = 64
    shingle: int = 2
    """Words per shingle."""
    field: str = "question+answer"
    seed: int = 1


def shingles(text_words: list[str], k: int) -> set[bytes]:
    if len(text_words) < k:
        return {" ".join(text_words).encode()} if text_words else set()
    return {" ".join(text_words[i:i + k]).encode() for i in range(len(text_words) - k + 1)}


def _text(r: dict, field: str) -> str:
    parts = [r.get(p) or "" for p in field.split("+")]
    if r.get("context"):
        parts.append(r["context"])
    return " ".join(parts)


def near_dedup(records: list[dict], config: MinHashConfig = MinHashConfig()) -> FilterResult:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    out = FilterResult("near_dedup")
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    template = MinHash(num_perm=config.num_perm, seed=config.seed)
    kept_sets: dict[str, set] = {}
    for i, r in enumerate(records):
        sh = shingles(words(_text(r, config.field)), config.shingle)
        m = template.copy()
        if sh:
            m.update_batch(list(sh))
        # LSH gives candidates; the exact Jaccard on shingles confirms (no false drops).
        dup = None
        for cand in lsh.query(m):
            other = kept_sets[cand]
            inter = len(sh & other)
            if sh and inter / len(sh | other) >= config.threshold:
                dup = cand
                break
        if dup is not None:
            out.drop(r, f"near duplicate of {dup.split('#', 1)[1]}")
            continue
        key = f"{i}#{r.get('id', i)}"
        lsh.insert(key, LeanMinHash(m))
        kept_sets[key] = sh
        out.kept.append(r)
    return out
