"""Messages JSONL -> token ids with a loss mask on assistant tokens only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IGNORE = -100


class DatasetError(Exception):
    """The dataset cannot be used; the message names the file and line."""


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class TokenizeReport:
    samples: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    dropped_no_assistant: int = 0
    tokens: int = 0
    loss_tokens: int = 0


def read_messages(path: Path) -> list[list[dict]]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    out = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DatasetError(f"{path}:{n}: not JSON ({e})") from None
                msgs = row.get("messages") if isinstance(row, dict) else None
                if not isinstance(msgs, list) or not msgs or not all(
                        isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                        and isinstance(m.get("content"), str) for m in msgs):
                    raise DatasetError(f"{path}:{n}: expected {{\"messages\": [{{\"role\": "
                                       "system|user|assistant, \"content\": text}, ...]}")
                out.append(msgs)
        except UnicodeDecodeError as e:
            raise DatasetError(f"{path}: not UTF-8 text ({e})") from None
    if not out:
        raise DatasetError(f"{path}: the dataset is empty")
    return out


class TemplateError(DatasetError):
    """The chat template cannot say which tokens are the assistant's; never guessed."""


def _template_name(tokenizer) -> str:
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    head = " ".join((tokenizer.chat_template or "").split())[:80]
    return f"{name} (template starting {head!r})"


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt) \
        if messages else ""


def tokenize_conversation(tokenizer, messages: list[dict]) -> Sample:
    """Render with the tokenizer's chat template; labels are the token ids of assistant turns
    (with their end-of-turn marker) and IGNORE everywhere else.

    A template that marks assistant text itself (``{% generation %}``) is asked for its mask.
    Otherwise each assistant turn is located as text: the conversation up to it, rendered with
    the generation prompt, and the conversation through it must both be prefixes of the whole
    rendering; the whole is tokenised once and tokens overlapping an assistant span are labels.
    A template that breaks this (one that moves the system prompt into the last user turn, say)
    raises TemplateError naming it: a silent fallback would train on the wrong tokens."""
    from .specials import SpecialTextError, encode_rendered, holds_special_text
    template = tokenizer.chat_template or ""
    # message text holding "<|im_start|>" etc. takes the text path below: it is encoded as text
    if ("{% generation %}" in template or "{%- generation %}" in template) \
            and not holds_special_text(tokenizer, messages):
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        return Sample(ids, [t if m else IGNORE for t, m in zip(ids, mask)])
    full = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[:i + 1])
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise TemplateError(f"chat template of {_template_name(tokenizer)}: the conversation up to "
                                f"assistant turn {i} does not render as a prefix of the whole conversation, "
                                "so its tokens cannot be told apart; use a template with "
                                "{% generation %} markers or one that renders turns in order")
        spans.append((len(before), len(through)))
    if not getattr(tokenizer, "is_fast", False):
        raise TemplateError(f"{_template_name(tokenizer)}: a slow tokenizer gives no character offsets; "
                            "use a fast tokenizer (tokenizer.json)")
    try:
        ids, offsets = encode_rendered(tokenizer, full, messages)
    except SpecialTextError as e:
        raise TemplateError(f"chat template of {_template_name(tokenizer)}: {e}") from None
    labels = [IGNORE] * len(ids)
    k = 0
    for j, (a, b) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= a:
            k += 1
        if k < len(spans) and a < spans[k][1] and b > spans[k][0]:
            labels[j] = ids[j]
    return Sample(ids, labels)


def tokenize_dataset(tokenizer, conversations: list[list[dict]], max_len: int,
                     overlong: str = "drop") -> tuple[list[Sample], TokenizeReport]:
    """``overlong``: 'drop' (counted) or 'truncate' (keeps the first ``max_len`` tokens)."""
    if overlong not in ("drop", "truncate"):
        raise ValueError("overlong must be 'drop' or 'truncate'")
    report, out = TokenizeReport(), []
    for conv in conversations:
        s = tokenize_conversation(tokenizer, conv)
        if len(s) > max_len:
            if overlong == "drop":
                report.dropped_too_long += 1
                continue
            s = Sample(s.input_ids[:max_len], s.labels[:max_len])
            report.truncated += 1
        if s.loss_tokens == 0:
            report.dropped_no_assistant += 1
            continue
        out.append(s)
        report.samples += 1
        report.tokens += len(s)
        report.loss_tokens += s.loss_tokens
    return out, report
