"""Near duplicates with MinHash LSH: sub-linear, unlike pairwise ROUGE-L.

Written on numpy rather than datasketch: the same algorithm, but importing datasketch pulls in
scipy.integrate (~1 s), which was most of a one-leaf rerun's filter stage."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

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


class MinHasher:
    """MinHash signatures of shingle sets (Broder): the minimum over shingles of
    (a·h(s) + b) mod p for ``num_perm`` random (a, b), computed with numpy per sample."""

    PRIME = np.uint64((1 << 61) - 1)
    MASK = np.uint64((1 << 32) - 1)

    def __init__(self, num_perm: int, seed: int):
        rng = np.random.RandomState(seed)
        self.a = rng.randint(1, int(self.PRIME), num_perm, dtype=np.uint64)
        self.b = rng.randint(0, int(self.PRIME), num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signature(self, sh: set[bytes]) -> np.ndarray:
        if not sh:
            return np.full(self.num_perm, self.MASK, dtype=np.uint64)
        h = np.fromiter((zlib.crc32(s) for s in sh), dtype=np.uint64, count=len(sh))
        with np.errstate(over="ignore"):  # the products wrap mod 2^64, as in datasketch
            return (((h[:, None] * self.a + self.b) % self.PRIME) & self.MASK).min(axis=0)


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """Bands × rows minimising the weighted chance of false positives and false negatives at
    ``threshold`` (the standard S-curve 1 - (1 - s^r)^b, integrated numerically)."""
    best, best_err = (1, num_perm), float("inf")
    lo, hi = np.linspace(0, threshold, 200), np.linspace(threshold, 1, 200)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - lo ** r) ** b, lo)
            fn = np.trapezoid((1 - hi ** r) ** b, hi)
            err = fp_weight * fp + (1 - fp_weight) * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


class LSHIndex:
    """Banded LSH over MinHash signatures: candidates share at least one band."""

    def __init__(self, threshold: float, num_perm: int):
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self.tables: list[dict[bytes, list[str]]] = [{} for _ in range(self.bands)]

    def _keys(self, sig: np.ndarray):
        r = self.rows
        return (sig[i * r:(i + 1) * r].tobytes() for i in range(self.bands))

    def query(self, sig: np.ndarray) -> list[str]:
        seen: dict[str, None] = {}
        for table, k in zip(self.tables, self._keys(sig)):
            for key in table.get(k, ()):
                seen.setdefault(key)
        return list(seen)

    def insert(self, key: str, sig: np.ndarray) -> None:
        for table, k in zip(self.tables, self._keys(sig)):
            table.setdefault(k, []).append(key)


def near_dedup(records: list[dict], config: MinHashConfig = MinHashConfig()) -> FilterResult:
    out = FilterResult("near_dedup")
    hasher = MinHasher(config.num_perm, config.seed)
    lsh = LSHIndex(config.threshold, config.num_perm)
    kept_sets: dict[str, set] = {}
    for i, r in enumerate(records):
        sh = shingles(words(_text(r, config.field)), config.shingle)
        sig = hasher.signature(sh)
        # LSH gives candidates; the exact Jaccard on shingles confirms (no false drops).
        dup = None
        for cand in lsh.query(sig):
            other = kept_sets[cand]
            inter = len(sh & other)
            if sh and inter / len(sh | other) >= config.threshold:
                dup = cand
                break
        if dup is not None:
            out.drop(r, f"near duplicate of {dup.split('#', 1)[1]}")
            continue
        key = f"{i}#{r.get('id', i)}"
        lsh.insert(key, sig)
        kept_sets[key] = sh
        out.kept.append(r)
    return out
