"""Safety: personal data and secrets scrubbed (or dropped), and a configurable block list."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .base import FilterResult, normalize

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_DOMAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Email:
    """``_EMAIL``'s finditer and sub in linear time. Searched plainly, the regex restarts at every
    word boundary of "a.a.a.a..." and rescans the run (quadratic). Every match holds exactly one
    '@' and depends only on the text after its local part's first possible start, so each '@' is
    tried once, from the first word boundary of the run before it."""

    pattern = _EMAIL.pattern

    def finditer(self, text: str):
        done, at = 0, text.find("@")
        while at >= 0:
            left = at
            while left > done and text[left - 1] in _LOCAL:
                left -= 1
            right = at + 1
            while right < len(text) and text[right] in _DOMAIN:
                right += 1
            start = next((p for p in range(left, at)
                          if (p > 0 and _is_word(text[p - 1])) != _is_word(text[p])), None)
            m = _EMAIL.match(text, start, min(right + 1, len(text))) if start is not None else None
            if m:
                yield m
                done = m.end()
            at = text.find("@", max(at + 1, done))

    def sub(self, repl: str, text: str) -> str:
        out, last = [], 0
        for m in self.finditer(text):
            out += [text[last:m.start()], repl]
            last = m.end()
        return "".join(out) + text[last:]


PATTERNS = {
    "EMAIL": _Email(),
    "PRIVATE_KEY": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    "AWS_KEY": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GITHUB_TOKEN": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "API_KEY": re.compile(r"\b(?:sk-[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,})\b"),
    "SECRET": re.compile(r"(?i)\b(?:api[_-]?key|secret|password|passwd|token)\s*[:=]\s*['\"]?[^\s'\"]{8,}"),
    "CARD": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "PHONE": re.compile(r"(?<![\w.])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b(?![ .-]?\d)"),
}


def _luhn(digits: str) -> bool:
    total, alt = 0, False
    for d in reversed(digits):
        n = int(d)
        if alt:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
        alt = not alt
    return total % 10 == 0


@dataclass(frozen=True)
class SafetyConfig:
    pii: str = "scrub"
    """'scrub' replaces personal data and secrets with [EMAIL], [PHONE]...; 'drop' drops the sample."""
    blocklist: tuple[str, ...] = field(default_factory=tuple)
    """Words or phrases that drop a sample (matched on normalised text, whole words)."""


def find_pii(text: str) -> list[tuple[str, str]]:
    hits = []
    for kind, rx in PATTERNS.items():
        for m in rx.finditer(text or ""):
            value = m.group(0)
            if kind == "CARD":
                digits = re.sub(r"\D", "", value)
                if not (13 <= len(digits) <= 19 and _luhn(digits)):
                    continue
            hits.append((kind, value))
    return hits


def scrub(text: str) -> str:
    for kind, rx in PATTERNS.items():
        if kind == "CARD":
            text = rx.sub(lambda m: "[CARD]" if _luhn(re.sub(r"\D", "", m.group(0))) and 13 <= len(re.sub(r"\D", "", m.group(0))) <= 19 else m.group(0), text)
        else:
            text = rx.sub(f"[{kind}]", text)
    return text


def safety_filter(records: list[dict], config: SafetyConfig = SafetyConfig()) -> FilterResult:
    out = FilterResult("safety")
    blocked = [normalize(b) for b in config.blocklist if normalize(b)]
    for r in records:
        fields = [f for f in ("question", "answer", "context") if r.get(f)]
        text = " ".join(r[f] for f in fields)
        norm = f" {normalize(text)} "
        hit = next((b for b in blocked if f" {b} " in norm), None)
        if hit:
            out.drop(r, f"block list: {hit!r}")
            continue
        pii = find_pii(text)
        if pii:
            kinds = sorted({k for k, _ in pii})
            if config.pii == "drop":
                out.drop(r, f"personal data or secret: {', '.join(kinds)}")
                continue
            r = {**r, **{f: scrub(r[f]) for f in fields}, "scrubbed": kinds}
            out.modified += 1
        out.kept.append(r)
    return out
