"""Mix filtered samples into the phase datasets, following an explicit recipe.

Every cap and ratio is in the recipe and written back beside the data with what it did to
each leaf (InstructLab's hidden 30-samples-per-skill cap confused its users)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from .sdg.generate import read_jsonl, write_jsonl

SYSTEM = "You are a helpful, careful assistant. Answer accurately and concisely."


@dataclass(frozen=True)
class Recipe:
    max_per_leaf: int = 300
    """Cap: a leaf with more samples is sampled down to this many."""
    min_per_leaf: int = 30
    """Floor: a leaf with fewer samples is upsampled (repeated) to this many, so no leaf vanishes
    next to a large one."""
    replay_ratio: float = 0.2
    """Share of each phase's final dataset drawn from the replay sources (when any)."""
    replay_sources: tuple[str, ...] = ()
    """Messages JSONL files: the previous run's training data, general instruction datasets."""
    knowledge_replay: float = 0.3
    """Share of the knowledge samples repeated in phase 2, so skills training does not erase them."""
    reading_comprehension: bool = True
    """Phase 2 also gets knowledge in reading-comprehension form: the source chunk and
    distractor chunks in the context, as InstructLab's phase-2 knowledge data does."""
    distractors: int = 2
    reading_comprehension_per_chunk: int = 2
    """At most this many reading-comprehension samples per source chunk (0: no cap). Each holds
    three chunks, so one per replayed sample was ~70% of phase 2's tokens on the sample taxonomy;
    a few per chunk keep the form and its open-book questions."""
    system_prompt: str = SYSTEM
    seed: int = 42

    @classmethod
    def load(cls, path: Path) -> "Recipe":
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown recipe keys: {', '.join(sorted(unknown))}")
        if "replay_sources" in data:
            data["replay_sources"] = tuple(data["replay_sources"])
        return cls(**data)


def to_messages(r: dict, system: str, user: str | None = None) -> dict:
    if user is None:
        user = f"{r['context'].strip()}\n\n{r['question']}" if r.get("context") else r["question"]
    meta = {k: r.get(k) for k in ("id", "leaf", "kind", "shape", "chunk_id", "teacher", "judge", "scrubbed") if r.get(k) is not None}
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": r["answer"]}], "metadata": meta}


def balance(records: list[dict], recipe: Recipe, rng: random.Random) -> tuple[list[dict], dict]:
    by_leaf: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_leaf[r["leaf"]].append(r)
    out, notes = [], {}
    for leaf in sorted(by_leaf):
        rows = by_leaf[leaf]
        n = len(rows)
        if n > recipe.max_per_leaf:
            rows = rng.sample(rows, recipe.max_per_leaf)
            action = f"capped {n} -> {recipe.max_per_leaf}"
        elif n < recipe.min_per_leaf:
            rows = rows + [rows[i % n] for i in range(recipe.min_per_leaf - n)]
            action = f"upsampled {n} -> {recipe.min_per_leaf}"
        else:
            action = "kept as is"
        # how many times each sample is seen per epoch: a skill of 2 samples floored to 30 is
        # the same 2 answers 15 times, which the report must say
        notes[leaf] = {"available": n, "used": len(rows), "action": action, "repetition": round(len(rows) / n, 1)}
        out.extend(rows)
    return out, notes


def reading_comprehension(r: dict, chunks: list[dict], recipe: Recipe, rng: random.Random) -> dict:
    others = [c["text"] for c in chunks if c["id"] != r.get("chunk_id")]
    docs = [r["source_chunk"]] + rng.sample(others, min(recipe.distractors, len(others)))
    rng.shuffle(docs)
    body = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(docs))
    user = f"Answer the question using the documents below.\n\n{body}\n\nQuestion: {r['question']}"
    m = to_messages(r, recipe.system_prompt, user)
    m["metadata"]["form"] = "reading_comprehension"
    return m


def _replay(recipe: Recipe, size: int, rng: random.Random) -> list[dict]:
    if not recipe.replay_sources or recipe.replay_ratio <= 0 or size == 0:
        return []
    pool = []
    for src in recipe.replay_sources:
        for row in read_jsonl(Path(src)):
            if isinstance(row.get("messages"), list) and row["messages"]:
                row.setdefault("metadata", {})["replay"] = Path(src).name
                pool.append(row)
    if not pool:
        return []
    ratio = min(recipe.replay_ratio, 0.95)
    want = int(round(size * ratio / (1 - ratio)))  # replay / (replay + size) == ratio
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(want)]


def mix(records: list[dict], leaves: dict[str, dict], out_dir: Path, recipe: Recipe = Recipe()) -> dict:
    rng = random.Random(recipe.seed)
    balanced, notes = balance(records, recipe, rng)
    knowledge = [r for r in balanced if r["kind"] == "knowledge"]
    skills = [r for r in balanced if r["kind"] != "knowledge"]
    phase1 = [to_messages(r, recipe.system_prompt) for r in knowledge]
    phase2 = [to_messages(r, recipe.system_prompt) for r in skills]
    kr = rng.sample(knowledge, int(len(knowledge) * recipe.knowledge_replay)) if knowledge else []
    phase2 += [to_messages(r, recipe.system_prompt) for r in kr]
    rc = 0
    per_chunk: dict = defaultdict(int)
    if recipe.reading_comprehension:
        for r in kr:
            if r.get("source_chunk"):
                key = (r["leaf"], r.get("chunk_id"))
                if recipe.reading_comprehension_per_chunk and per_chunk[key] >= recipe.reading_comprehension_per_chunk:
                    continue
                per_chunk[key] += 1
                phase2.append(reading_comprehension(r, leaves.get(r["leaf"], {}).get("chunks", []), recipe, rng))
                rc += 1
    replay1, replay2 = _replay(recipe, len(phase1), rng), _replay(recipe, len(phase2), rng)
    phase1 += replay1
    phase2 += replay2
    rng.shuffle(phase1)
    rng.shuffle(phase2)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "phase1.jsonl", phase1)
    write_jsonl(out_dir / "phase2.jsonl", phase2)
    summary = {"recipe": {**asdict(recipe), "replay_sources": list(recipe.replay_sources)},
               "leaves": notes,
               "phase1": {"samples": len(phase1), "knowledge": len(knowledge), "replay": len(replay1)},
               "phase2": {"samples": len(phase2), "skills": len(skills), "knowledge_replay": len(kr),
                          "reading_comprehension": rc, "replay": len(replay2)}}
    (out_dir / "recipe.json").write_text(json.dumps(summary, indent=2))
    return summary
