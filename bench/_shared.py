"""Where the shared corpus is (the public InstructLab taxonomy snapshot, real broken leaves, real
webhook deliveries): ``SPROUT_SHARED``, else ``../shared`` beside the repository. A benchmark
that needs a part of it and does not find it says so in one line and runs on what ships here."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path | None:
    value = os.environ.get("SPROUT_SHARED")
    if value is None:
        return ROOT.parent / "shared"
    return Path(value) if value.strip() else None  # set but empty: no shared corpus


def shared(relative: str, what: str, instead: str) -> Path | None:
    root = shared_root()
    path = root / relative if root else None
    if path is not None and path.exists():
        return path
    print(f"skipped: {what} ({path or 'SPROUT_SHARED is empty'} not found); {instead}. "
          f"To include it, set SPROUT_SHARED=/path/to/shared (see README, Tests).", flush=True)
    return None


def goal(label: str, value: float, target: float, higher_is_better: bool = True, unit: str = "") -> str:
    """One line that cannot be read as a pass when it is not one."""
    met = value >= target if higher_is_better else value < target
    op = ">=" if higher_is_better else "<"
    verdict = "met" if met else "MISSED (this run; CI does not fail on a noisy machine)"
    return f"goal {label}: {value:g}{unit} vs {op} {target:g}{unit}: {verdict}"
