"""Message text is tokenised as text: a leaf that writes "<|im_start|>system" gets those characters,
never the tokenizer's role marker.

Tokenising a rendered conversation in one call turns any special-token string inside a message
into the special token itself, so a contributor could open a system turn (or close the
assistant's) inside training data. Conversations without such strings are encoded exactly as
before; the others are encoded piecewise: the template's own text with its special tokens, each
message's content with ``split_special_tokens=True``.
"""

from __future__ import annotations


class SpecialTextError(Exception):
    """A message holding special-token text cannot be located in the rendering."""


def special_strings(tokenizer) -> set[str]:
    out = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            out.add(str(tok))
    return {s for s in out if s}


def holds_special_text(tokenizer, messages: list[dict]) -> bool:
    specials = special_strings(tokenizer)
    return any(isinstance(m.get("content"), str) and any(s in m["content"] for s in specials)
               for m in messages)


def encode_rendered(tokenizer, full: str, messages: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """(token ids, character offsets into ``full``) for a rendered conversation."""
    specials = special_strings(tokenizer)
    regions, cursor = [], 0
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str) or not content:
            continue
        at = full.find(content, cursor)
        if at < 0:
            if any(s in content for s in specials):
                raise SpecialTextError("a message holding special-token text is not rendered verbatim by the "
                                       "chat template, so it cannot be tokenised as plain text")
            continue
        if any(s in content for s in specials):
            regions.append((at, at + len(content)))
        cursor = at + len(content)
    if not regions:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []

    def add(start: int, end: int, as_text: bool) -> None:
        if end <= start:
            return
        enc = tokenizer(full[start:end], add_special_tokens=False, return_offsets_mapping=True,
                        split_special_tokens=as_text)
        ids.extend(enc["input_ids"])
        offsets.extend((a + start, b + start) for a, b in enc["offset_mapping"])

    last = 0
    for a, b in regions:
        add(last, a, False)
        add(a, b, True)
        last = b
    add(last, len(full), False)
    return ids, offsets
