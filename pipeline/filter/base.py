"""What every filter returns: the kept records and, for each drop, the reason."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field


@dataclass
class FilterResult:
    name: str
    kept: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # (record, reason)
    modified: int = 0  # records kept but changed (PII scrubbed)
    skipped: str | None = None  # why the filter did not run
    asked: int | None = None  # the judge: requests sent by the filter itself (not asked ahead)

    def drop(self, record: dict, reason: str) -> None:
        self.dropped.append((record, reason))


_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str | None) -> str:
    """Casefolded, accent-stripped, punctuation-free, single-spaced."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def words(text: str | None) -> list[str]:
    return normalize(text).split()
