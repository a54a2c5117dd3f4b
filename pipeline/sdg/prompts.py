"""Versioned prompt templates: files, not strings in code. The version and the templates'
hash are part of every cache key, so editing a prompt regenerates what it affects."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from string import Template

from ..package_data import resource

VERSION = "v1"
ROOT = resource("prompts")
TASKS = ("knowledge_short", "knowledge_long", "skill_freeform", "skill_grounded", "judge")


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: chat messages for model teachers, plus the task and variables it was
    made from (the offline teacher works from those)."""

    task: str
    variables: dict = field(hash=False, compare=False)
    messages: tuple = ()


@functools.lru_cache(maxsize=None)
def template(task: str, version: str = VERSION) -> Template:
    return Template((ROOT / version / f"{task}.txt").read_text("utf-8"))


@functools.lru_cache(maxsize=None)
def fingerprint(version: str = VERSION) -> str:
    h = hashlib.sha256(version.encode())
    for path in sorted((ROOT / version).iterdir(), key=lambda p: p.name):  # every file, not only TASKS
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{version}-{h.hexdigest()[:12]}"


def render(task: str, **variables) -> Prompt:
    text = template(task).safe_substitute({k: str(v) for k, v in variables.items()})
    return Prompt(task, variables, ({"role": "user", "content": text},))


def format_examples(pairs: list[tuple[str | None, str, str]]) -> str:
    out = []
    for context, q, a in pairs:
        block = (f"[Context]\n{context.strip()}\n" if context else "") + f"[Question]\n{q.strip()}\n[Answer]\n{a.strip()}\n[End]"
        out.append(block)
    return "\n\n".join(out)
