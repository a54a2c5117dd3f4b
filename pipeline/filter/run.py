"""Run the filters in order, per leaf, and report what each dropped and why."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import FilterResult
from .grounding import GroundingConfig, grounding_filter
from .judge import JudgeConfig, judge_filter
from .minhash import MinHashConfig, near_dedup
from .quality import FormatConfig, exact_dedup, format_filter
from .safety import SafetyConfig, safety_filter
from .semantic import SemanticConfig, semantic_filter

ORDER = ("format", "safety", "exact_dedup", "near_dedup", "grounding", "semantic_dedup", "off_topic", "judge")


@dataclass(frozen=True)
class FilterConfig:
    format: FormatConfig = field(default_factory=FormatConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    use_embeddings: bool = True
    """Semantic duplicates and off-topic checks (needs the embedding model)."""
    embedding_model: str | None = None
    examples_per_filter: int = 3


def screen(record: dict, config: FilterConfig = FilterConfig()) -> dict | None:
    """The record as the judge will see it, or None when a filter that looks at one record alone
    (format, safety, grounding) drops it: generation asks the judge ahead for these only. The
    duplicate and embedding filters need the whole leaf, so a pair they drop was judged for nothing."""
    for step in (lambda rs: format_filter(rs, config.format), lambda rs: safety_filter(rs, config.safety),
                 lambda rs: grounding_filter(rs, config.grounding)):
        kept = step([record]).kept
        if not kept:
            return None
        record = kept[0]
    return record


def read_replies(data_dir: Path) -> dict[str, str]:
    """The judge replies generation asked ahead (``judge_replies.jsonl``), by request key; {} if none."""
    path = Path(data_dir) / "judge_replies.jsonl"
    if not path.exists():
        return {}
    from ..sdg.generate import read_jsonl
    return {row["key"]: row["reply"] for row in read_jsonl(path)}


def run_filters(records: list[dict], leaves: dict[str, dict], config: FilterConfig = FilterConfig(),
                teacher=None, embedder=None, progress: Callable[[str], None] | None = None,
                replies: dict[str, str] | None = None) -> tuple[list[dict], dict]:
    """``replies``: judge replies asked ahead, by request key (``read_replies``)."""
    steps: list[FilterResult] = []
    current = records

    def step(result: FilterResult) -> None:
        nonlocal current
        steps.append(result)
        current = result.kept
        if progress:
            progress(result.name)

    step(format_filter(current, config.format))
    step(safety_filter(current, config.safety))
    step(exact_dedup(current))
    step(near_dedup(current, config.minhash))
    step(grounding_filter(current, config.grounding))
    if config.use_embeddings:
        if embedder is None:
            from .embed import shared
            embedder = shared(config.embedding_model)
        dup, topic = semantic_filter(current, leaves, embedder, config.semantic)
        step(dup)
        step(topic)
    else:
        for name in ("semantic_dedup", "off_topic"):
            steps.append(FilterResult(name, kept=list(current), skipped="embeddings disabled"))
    step(judge_filter(current, teacher, config.judge, replies))
    return current, report(records, steps, leaves, config.examples_per_filter)


def report(records: list[dict], steps: list[FilterResult], leaves: dict[str, dict], examples: int) -> dict:
    leaf_paths = sorted(set(leaves) | {r["leaf"] for r in records})
    per_leaf = {p: {"in": 0, "out": 0, "filters": {}} for p in leaf_paths}
    for r in records:
        per_leaf[r["leaf"]]["in"] += 1
    remaining = Counter(r["leaf"] for r in records)
    for s in steps:
        drops = defaultdict(list)
        for rec, reason in s.dropped:
            drops[rec["leaf"]].append((rec, reason))
        for p in leaf_paths:
            before = remaining[p]
            lost = len(drops[p])
            entry = {"in": before, "out": before - lost, "dropped": lost,
                     "examples": [{"question": rec["question"][:200], "answer": rec["answer"][:200], "reason": why}
                                  for rec, why in drops[p][:examples]]}
            if s.skipped:
                entry["skipped"] = s.skipped
            per_leaf[p]["filters"][s.name] = entry
            remaining[p] = before - lost
            if before and not remaining[p] and "emptied_by" not in per_leaf[p]:
                reasons = Counter(why.split(" (")[0] for _, why in drops[p]).most_common(2)
                per_leaf[p]["emptied_by"] = {"filter": s.name, "reasons": [f"{r} ({n}x)" for r, n in reasons]}
    for p in leaf_paths:
        per_leaf[p]["out"] = remaining[p]
    totals = {"in": len(records), "out": sum(remaining.values()),
              "filters": {s.name: {"dropped": len(s.dropped), "modified": s.modified,
                                   "reasons": dict(Counter(why.split(" (")[0] for _, why in s.dropped)),
                                   **({"skipped": s.skipped} if s.skipped else {}),
                                   **({"asked": s.asked} if s.asked is not None else {})} for s in steps}}
    return {"totals": totals, "leaves": per_leaf}


def report_markdown(rep: dict) -> str:
    t = rep["totals"]
    lines = [f"## Filter report: {t['in']} samples in, {t['out']} kept", "",
             "| filter | dropped | note |", "|---|---:|---|"]
    for name, f in t["filters"].items():
        note = f.get("skipped") or (f"{f['modified']} scrubbed" if f.get("modified") else "")
        lines.append(f"| {name} | {f['dropped']} | {note} |")
    lines += ["", "| leaf | in | kept | emptied by |", "|---|---:|---:|---|"]
    for p, leaf in rep["leaves"].items():
        emptied = leaf.get("emptied_by")
        e = f"**{emptied['filter']}**: {'; '.join(emptied['reasons'])}" if emptied else ""
        lines.append(f"| `{p}` | {leaf['in']} | {leaf['out']} | {e} |")
    for p, leaf in rep["leaves"].items():
        shown = [(n, f) for n, f in leaf["filters"].items() if f["examples"]]
        if shown:
            lines += ["", f"### `{p}`"]
            for n, f in shown:
                for ex in f["examples"]:
                    lines.append(f"- **{n}**: {ex['reason']} — _{ex['question'][:100]}_")
    return "\n".join(lines) + "\n"


def write_report(rep: dict, out_dir: Path) -> None:
    (out_dir / "filter_report.json").write_text(json.dumps(rep, indent=2, ensure_ascii=False))
    (out_dir / "filter_report.md").write_text(report_markdown(rep))


def group_by_leaf(records: list[dict], leaves: dict[str, dict]) -> dict[str, list[dict]]:
    """Records per leaf, in leaf order; leaves with no records get an empty list."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["leaf"]].append(r)
    return {p: groups.get(p, []) for p in sorted(set(groups) | set(leaves))}


def merge_results(results: list[tuple[list[dict], dict]]) -> tuple[list[dict], dict]:
    """One (kept, report) from per-leaf ones."""
    kept, merged = [], {"totals": {"in": 0, "out": 0, "filters": {}}, "leaves": {}}
    for rows, rep in results:
        kept.extend(rows)
        merged["leaves"].update(rep["leaves"])
        merged["totals"]["in"] += rep["totals"]["in"]
        merged["totals"]["out"] += rep["totals"]["out"]
        for name, f in rep["totals"]["filters"].items():
            agg = merged["totals"]["filters"].setdefault(name, {"dropped": 0, "modified": 0})
            agg["dropped"] += f["dropped"]
            agg["modified"] += f.get("modified", 0)
            if "asked" in f:
                agg["asked"] = agg.get("asked", 0) + f["asked"]
            for why, n in f.get("reasons", {}).items():
                agg.setdefault("reasons", {})[why] = agg.setdefault("reasons", {}).get(why, 0) + n
            if f.get("skipped"):
                agg["skipped"] = f["skipped"]
    return kept, merged


def run_filters_by_leaf(records: list[dict], leaves: dict[str, dict], config: FilterConfig = FilterConfig(),
                        teacher=None, runner=None, replies: dict[str, str] | None = None) -> tuple[list[dict], dict]:
    """The same filters, leaf by leaf (duplicates are judged within a leaf), so that leaves can
    run in parallel: ``runner(items, fn)`` distributes them (e.g. ``pipeline.distributed.ray_map``)."""
    groups = group_by_leaf(records, leaves)
    items = [(p, rows, {p: leaves.get(p, {})}) for p, rows in groups.items()]

    def one(item):
        path, rows, info = item
        return run_filters(rows, info, config, teacher=teacher, replies=replies)

    results = list(runner(items, one)) if runner else [one(i) for i in items]
    return merge_results(results)


def code_digest() -> str:
    """The filters' own source: the cache holds their decisions, so a change to any filter must
    filter again."""
    from ..package_data import source_digest
    return source_digest(__package__)


def run_filters_cached(records: list[dict], leaves: dict[str, dict], config: FilterConfig = FilterConfig(),
                       teacher=None, replies: dict[str, str] | None = None) -> tuple[list[dict], dict, list[str]]:
    """Leaf by leaf, each leaf's result cached under a hash of its records, its leaf info, the
    filter config, the filters' code and the judge: a rerun after a one-leaf change filters one leaf.
    Returns (kept, report, leaves actually filtered)."""
    from dataclasses import asdict

    from ..sdg.generate import cache_root, read_jsonl, write_jsonl

    cache = cache_root().parent / "filter"
    cache.mkdir(parents=True, exist_ok=True)
    groups = group_by_leaf(records, leaves)
    conf = json.dumps(asdict(config), sort_keys=True, default=str) + str(getattr(teacher, "identity", None)) \
        + code_digest()
    results, fresh, todo = {}, [], []
    for path, rows in groups.items():
        key = hashlib.sha256(json.dumps([rows, leaves.get(path, {}), conf], sort_keys=True,
                                        default=str).encode()).hexdigest()[:24]
        kept_file, rep_file = cache / f"{key}.jsonl", cache / f"{key}.report.json"
        if kept_file.exists() and rep_file.exists():
            results[path] = (read_jsonl(kept_file), json.loads(rep_file.read_text()))
        else:
            todo.append((path, rows, key))
    for path, rows, key in todo:  # the embedder loads only when some leaf needs it
        kept, rep = run_filters(rows, {path: leaves.get(path, {})}, config, teacher=teacher, replies=replies)
        rep_file = cache / f"{key}.report.json"
        rep_file.write_text(json.dumps(rep))
        write_jsonl(cache / f"{key}.jsonl", kept)
        results[path] = (kept, rep)
        fresh.append(path)
    kept, merged = merge_results([results[path] for path in sorted(results)])
    return kept, merged, fresh
