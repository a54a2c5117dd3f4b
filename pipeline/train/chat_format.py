"""The conversation format travels with the model: its chat template's default system prompt is the
one it was trained and evaluated with, so any server (vLLM, llama.cpp, `sprout model serve`)
gives a client that sends no system message the model the report measured.

The template is wrapped, not rewritten: a short Jinja prefix puts ``{"role": "system", ...}`` in
front of a conversation that has none, then the model's own template renders it as it always did
(a template with its own default, SmolLM2's say, sees a system message and leaves its default
out). A conversation that brings its own system message renders exactly as before."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

_OPEN = "{# sprout: default system prompt #}"
_PREFIX_RE = re.compile(
    re.escape(_OPEN) + r'\{% set sprout_system = ("(?:[^"\\]|\\.)*") %\}'
    r"\{% if not messages or messages\[0\]\['role'\] != 'system' %\}"
    r"\{% set messages = \[\{'role': 'system', 'content': sprout_system\}\] \+ messages %\}"
    r"\{% endif %\}\{\{ '' \}\}")


def with_system_prompt(template: str, system: str) -> str:
    """``template`` with ``system`` as its default system prompt (a previous one replaced)."""
    base = _PREFIX_RE.sub("", template or "", count=1)
    # json.dumps with ensure_ascii writes a literal Jinja reads back unchanged (its string
    # escapes are Python's); the trailing {{ '' }} keeps trim_blocks off the template's first char
    literal = json.dumps(system, ensure_ascii=True)
    return (f"{_OPEN}{{% set sprout_system = {literal} %}}"
            "{% if not messages or messages[0]['role'] != 'system' %}"
            "{% set messages = [{'role': 'system', 'content': sprout_system}] + messages %}"
            "{% endif %}{{ '' }}" + base)


def carried_system_prompt(tokenizer) -> str | None:
    """The default system prompt Sprout stamped into this tokenizer's chat template, or None."""
    m = _PREFIX_RE.match(getattr(tokenizer, "chat_template", None) or "")
    return json.loads(m.group(1)) if m else None


def stamp(tokenizer, system: str | None) -> None:
    """Make ``system`` the tokenizer's default system prompt (in place; None: leave it alone)."""
    if system is None:
        return
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template to carry a system prompt")
    tokenizer.chat_template = with_system_prompt(tokenizer.chat_template, system)


def data_system_prompt(files: list[Path]) -> str | None:
    """The system prompt training data was written with: the most frequent leading system
    message over the files (mix writes one for every generated sample; replay rows may have none)."""
    counts: Counter = Counter()
    for f in files:
        if not Path(f).is_file():
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                msgs = json.loads(line).get("messages") or []
                if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
                    counts[msgs[0]["content"]] += 1
    return counts.most_common(1)[0][0] if counts else None


def as_client_sends(tokenizer, conversations: list[list[dict]]) -> list[list[dict]]:
    """Conversations as a client of a server sends them: when the model carries its system
    prompt, without a leading system message (the template supplies the model's own); a model
    that carries none (a base Sprout did not train) keeps the caller's, as it was asked before."""
    if carried_system_prompt(tokenizer) is None:
        return conversations
    return [c[1:] if c and c[0].get("role") == "system" else c for c in conversations]
