"""Semantic duplicates (paraphrases) and off-topic samples, with sentence embeddings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .base import FilterResult


@dataclass(frozen=True)
class SemanticConfig:
    duplicate_threshold: float = 0.92
    """Cosine similarity of two questions (same leaf, same context) above which the later one
    is a paraphrase and is dropped."""
    topic_threshold: float = 0.2
    """Cosine similarity between a sample and its leaf's centroid (seeds and document chunks)
    below which the sample is off-topic."""


def _question_text(r: dict) -> str:
    return r.get("question") or ""


def semantic_filter(records: list[dict], leaves: dict[str, dict], embedder,
                    config: SemanticConfig = SemanticConfig()) -> tuple[FilterResult, FilterResult]:
    """(paraphrase result, off-topic result); off-topic runs on what paraphrase kept."""
    dup, topic = FilterResult("semantic_dedup"), FilterResult("off_topic")
    by_leaf: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_leaf[r["leaf"]].append(r)
    for leaf, rows in by_leaf.items():
        q = embedder.encode([_question_text(r) for r in rows])
        kept_idx: list[int] = []
        for i, r in enumerate(rows):
            if kept_idx:
                peers = [j for j in kept_idx if rows[j].get("context") == r.get("context")]
                if peers:
                    sims = q[peers] @ q[i]
                    best = int(np.argmax(sims))
                    if sims[best] >= config.duplicate_threshold:
                        dup.drop(r, f"paraphrase of {rows[peers[best]].get('id')} (cosine {sims[best]:.2f})")
                        continue
            kept_idx.append(i)
            dup.kept.append(r)
        info = leaves.get(leaf) or {}
        anchors = [f"{s.get('question', '')} {s.get('answer', '')}" for s in info.get("seeds", [])]
        anchors += [c["text"] for c in info.get("chunks", [])]
        kept_rows = [rows[i] for i in kept_idx]
        if not anchors:
            topic.kept.extend(kept_rows)
            continue
        centre = embedder.encode(anchors)
        sample = embedder.encode([f"{r.get('question', '')} {r.get('answer', '')}" for r in kept_rows])
        sims = sample @ centre.T  # closest anchor, not the mean: a leaf may cover several topics
        best = sims.max(axis=1) if len(kept_rows) else np.zeros(0)
        for r, s in zip(kept_rows, best):
            if s < config.topic_threshold:
                topic.drop(r, f"off-topic for its leaf (best similarity {s:.2f} < {config.topic_threshold})")
            else:
                topic.kept.append(r)
    return dup, topic
