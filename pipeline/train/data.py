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


def tokenize_conversation(tokenizer, messages: list[dict]) -> Sample:
    """Render with the tokenizer's chat template; labels are the token ids of assistant turns
    (including their end-of-turn token) and IGNORE everywhere else. Works for any template whose
    rendering of a conversation prefix is a prefix of the whole rendering."""
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        else:
            before = tokenizer.apply_chat_template(messages[:i], tokenize=False) if i else ""
        upto = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
        prefix_ids = tokenizer(before, add_special_tokens=False)["input_ids"] if before else []
        full_ids = tokenizer(upto, add_special_tokens=False)["input_ids"]
        if full_ids[:len(prefix_ids)] != prefix_ids or full_ids[:len(ids)] != ids:
            # the template re-tokenises across turn boundaries: fall back to per-turn pieces
            full_ids = ids + tokenizer(upto[len(before):] if upto.startswith(before) else upto,
                                       add_special_tokens=False)["input_ids"]
            prefix_ids = ids
        new = full_ids[len(ids):]
        if m["role"] == "assistant":
            head = len(prefix_ids) - len(ids)  # the generation prompt belongs to the context
            labels += [IGNORE] * head + new[head:]
        else:
            labels += [IGNORE] * len(new)
        ids = full_ids
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
