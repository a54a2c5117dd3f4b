"""Line-level YAML hygiene: the yamllint rules the InstructLab taxonomy's CI enforces.

Its CI runs yamllint's relaxed config on leaves of version > 1: trailing spaces, a missing final
newline and CR LF line ends are errors, too many blank lines only a warning. A regex pass over
the text does the same work in microseconds instead of a subprocess per file.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterator

from . import diagnostics as d

_BLANK_RUN = re.compile(r"\n(?:\r?\n){%d,}" % 3)
_TAB_INDENT = re.compile(r"^ *\t", re.M)
MAX_BLANK = 2  # yamllint empty-lines defaults: max 2 inside, none at the start or end


def check(text: str, file: str, *, lenient: bool, strict: bool) -> Iterator[d.Diagnostic]:
    def make(rule, line, col, msg, hint=""):
        return d.make(rule, file, line, col, msg, hint, strict=strict, lenient=lenient)

    if not text:
        return
    if "\r\n" in text:
        first = text.index("\n")
        yield make(d.NEW_LINES, 1, first, "lines end in CR LF; use LF (Unix) line ends",
                   "Configure your editor for LF line endings, or run 'dos2unix qna.yaml'.")
    where = _Locator(text)
    for start in _trailing_ends(text):
        while start > 0 and text[start - 1] in " \t":
            start -= 1
        line, col = where(start)
        yield make(d.TRAILING_SPACES, line, col, "trailing spaces",
                   "Delete the spaces at the end of the line.")
    for m in _TAB_INDENT.finditer(text) if "\t" in text else ():
        line, _ = where(m.start())
        yield d.make(d.YAML_TAB, file, line, m.end() - m.start(),
                     "a tab indents this line", "Indent with spaces; YAML forbids tabs as "
                     "indentation and editors disagree on their width.", strict=strict)
    if not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        yield make(d.FINAL_NEWLINE, text.count("\n") + 1, len(last) + 1,
                   "no new line character at the end of file", "Add a newline after the last line.")
    yield from _blank_lines(text, where, make)


def _trailing_ends(text: str) -> list[int]:
    """Offsets of the last blank before each line end; str.find runs at memchr speed, which a
    regex with no literal prefix cannot."""
    found = []
    for pat in (" \n", "\t\n", " \r\n", "\t\r\n"):
        i = text.find(pat)
        while i >= 0:
            found.append(i)
            i = text.find(pat, i + 1)
    if text and text[-1] in " \t":
        found.append(len(text) - 1)
    found.sort()
    return found


class _Locator:
    """Offset -> (line, column), 1-based; the newline index is built only when needed."""

    def __init__(self, text: str):
        self.text = text
        self.newlines: list[int] | None = None

    def __call__(self, offset: int) -> tuple[int, int]:
        if self.newlines is None:
            self.newlines = [m.start() for m in re.finditer("\n", self.text)]
        i = bisect.bisect_left(self.newlines, offset)
        line_start = self.newlines[i - 1] + 1 if i else 0
        return i + 1, offset - line_start + 1


def _blank_lines(text: str, where, make) -> Iterator[d.Diagnostic]:
    stripped = text.lstrip("\r\n")
    if not stripped.strip():
        return
    lead = text[: len(text) - len(stripped)].count("\n")
    if lead:
        yield make(d.EMPTY_LINES, lead, 1, f"too many blank lines ({lead} > 0) at the start",
                   "Remove the blank lines before the first key.")
    body = text.rstrip("\r\n")
    trail = text[len(body):].count("\n") - 1
    if trail > 0:
        yield make(d.EMPTY_LINES, body.count("\n") + 1 + trail, 1,
                   f"too many blank lines ({trail} > 0) at the end",
                   "Remove the blank lines after the last line.")
    if "\n\n\n\n" not in body and "\n\r\n\r\n\r\n" not in body:
        return
    for m in _BLANK_RUN.finditer(body, len(text) - len(stripped)):
        run = m.group().count("\n") - 1
        line, _ = where(m.end())
        yield make(d.EMPTY_LINES, line - 1, 1, f"too many blank lines ({run} > {MAX_BLANK})",
                   "Keep at most two blank lines in a row.")
