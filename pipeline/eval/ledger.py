"""The held-out ledger: what a model's lineage has trained on.

A held-out item is only evidence for a model that never trained on it. The split is stable
(``sdg/heldout.py``), but a question edited inside a seed example can move that example's
choice onto a pair that was a training pair yesterday, so the deployed model (and every parent
it grew from) may have seen today's held-out item. Evaluation drops such items and reports them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..sdg.heldout import norm


def lineage_runs(registry: list[dict], model: Path) -> list[Path]:
    """Run folders of ``model`` and its parents, newest first (the registry's ``parent`` links)."""
    by_path = {str(Path(m["path"]).resolve()): m for m in registry if m.get("path")}
    runs, seen, current = [], set(), str(Path(model).resolve())
    while current in by_path and current not in seen:
        seen.add(current)
        entry = by_path[current]
        if entry.get("run"):
            runs.append(Path(entry["run"]))
        current = str(Path(entry.get("parent") or "").resolve()) if entry.get("parent") else ""
    return runs


def lineage_turns(registry: list[dict], model: Path) -> dict[str, set[str]]:
    """Normalised user and assistant turns of every training file in the lineage."""
    turns: dict[str, set[str]] = {"user": set(), "assistant": set()}
    for run in lineage_runs(registry, model):
        for name in ("phase1.jsonl", "phase2.jsonl"):
            f = run / "data" / name
            if not f.exists():
                continue
            for line in f.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                for m in json.loads(line).get("messages", []):
                    if m.get("role") in turns:
                        turns[m["role"]].add(norm(m.get("content")))
    return turns


def trained_on(question: str, answer: str, turns: dict[str, set[str]]) -> bool:
    """A training turn that asks this question or gives this answer."""
    q, a = norm(question), norm(answer)
    return bool(q) and (a in turns.get("assistant", ()) or any(q in t for t in turns.get("user", ())))
