"""Markdown to clean text, then chunks by heading and a token budget."""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass

# Documents come from pull requests, so nothing here may be worse than linear in their length.
# Links, HTML tags, emphasis and headings are scanned by hand below: their natural regexes
# restart at every '[', '<' or '*' and rescan the rest of the line (quadratic: "*a " * 8000 took
# 3.5 s), and the heading one was cubic ("# a" + " " * n + "x": a 30 KB line, ~8 hours).
_FENCE = re.compile(r"^(```|~~~)")
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Chunk:
    id: str
    document: str
    headings: tuple[str, ...]
    text: str

    @property
    def title(self) -> str:
        return " > ".join(self.headings) if self.headings else self.document


class _NextFind:
    """``text.find(sub, start)`` remembering its last answer: asked again from any position up to
    that hit (or, after a miss, from any later position) it answers at once, so a left-to-right
    scan that asks from each of n positions costs O(n) in all, not O(n^2)."""

    def __init__(self, text: str, sub: str):
        self.text, self.sub, self.start, self.hit = text, sub, -1, -1

    def __call__(self, start: int) -> int:
        if self.start >= 0 and (self.start <= start <= self.hit or (self.hit < 0 and start >= self.start)):
            return self.hit
        self.start, self.hit = start, self.text.find(self.sub, start)
        return self.hit


def strip_links(text: str) -> str:
    """``re.sub(r"!?\\[([^\\]]*)\\]\\([^)]*\\)", r"\\1", text)``, in linear time."""
    if "[" not in text:
        return text
    close_bracket, close_paren = _NextFind(text, "]"), _NextFind(text, ")")
    out, i, n = [], 0, len(text)
    pos = text.find("[")
    while pos >= 0:
        j = close_bracket(pos + 1)
        if j >= 0 and text.startswith("(", j + 1):
            k = close_paren(j + 2)
            if k >= 0:
                start = pos - 1 if pos > i and text[pos - 1] == "!" else pos
                out += [text[i:start], text[pos + 1:j]]
                i = k + 1
                pos = text.find("[", i)
                continue
        if j < 0:  # no ']' after this '[': none after any later one either
            break
        pos = text.find("[", pos + 1)
    out.append(text[i:n])
    return "".join(out)


def strip_html(text: str) -> str:
    """``re.sub(r"<[^>]+>", "", text)``, in linear time."""
    if "<" not in text:
        return text
    close = _NextFind(text, ">")
    out, i = [], 0
    pos = text.find("<")
    while pos >= 0:
        j = close(pos + 1)
        if j < 0:
            break
        if j > pos + 1:  # at least one character inside
            out.append(text[i:pos])
            i = j + 1
            pos = text.find("<", i)
        else:
            pos = text.find("<", pos + 1)
    out.append(text[i:])
    return "".join(out)


_DELIMS = ("**", "__", "*", "_", "`")


def strip_emphasis(text: str) -> str:
    """``re.sub(r"(\\*\\*|__|\\*|_|`)(?=\\S)(.+?)(?<=\\S)\\1", r"\\2", text)`` in O(n log n):
    for each delimiter, the sorted positions where it can close (after a non-space character) are
    searched with bisect instead of rescanning the line from every opening."""
    if not any(d in text for d in ("*", "_", "`")):
        return text
    n = len(text)
    closers = {d: [j for j in _occurrences(text, d) if j > 0 and not text[j - 1].isspace()]
               for d in _DELIMS}
    newlines = _occurrences(text, "\n")
    # every place a delimiter can open, in order (the regex tries them left to right)
    starts = sorted(_occurrences(text, "*") + _occurrences(text, "_") + _occurrences(text, "`"))
    out, i = [], 0
    for pos in starts:
        if pos < i:
            continue  # inside a replacement already made
        for d in _BY_CHAR[text[pos]]:
            if not text.startswith(d, pos):
                continue
            body = pos + len(d)
            if body >= n or text[body].isspace():
                continue
            cands = closers[d]
            k = bisect.bisect_left(cands, body + 1)
            if k == len(cands):
                continue
            # the content is one or more characters and does not cross a newline ('.')
            m = bisect.bisect_left(newlines, body)
            nl = newlines[m] if m < len(newlines) else n
            if cands[k] <= nl:
                j = cands[k]
                out += [text[i:pos], text[body:j]]
                i = j + len(d)
                break
    out.append(text[i:])
    return "".join(out)


_BY_CHAR = {"*": ("**", "*"), "_": ("__", "_"), "`": ("`",)}


def _occurrences(text: str, sub: str) -> list[int]:
    """Every start of ``sub`` in ``text``, overlapping ones included ("***" holds "**" twice)."""
    out, j = [], text.find(sub)
    while j >= 0:
        out.append(j)
        j = text.find(sub, j + 1)
    return out


def split_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading, as ``^(#{1,6})\\s+(.*?)\\s*#*\\s*$`` reads it, in linear
    time (that regex is cubic on "# a" followed by many spaces)."""
    hashes = len(line) - len(line.lstrip("#"))
    if not 1 <= hashes <= 6 or hashes == len(line) or not line[hashes].isspace() or "\n" in line:
        return None
    title = line[hashes:].lstrip()
    return hashes, title.rstrip().rstrip("#").rstrip()


def clean_inline(text: str) -> str:
    text = strip_links(text)
    text = strip_html(text)
    for _ in range(2):
        text = strip_emphasis(text)
    return re.sub(r"[ \t]+", " ", text).strip()


def sections(markdown: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """(heading path, paragraphs) in document order; code blocks are kept as paragraphs,
    tables become one line per row."""
    out: list[tuple[tuple[str, ...], list[str]]] = []
    path: list[tuple[int, str]] = []
    paras: list[str] = []
    current: list[str] = []
    in_fence = False
    in_list = False  # the current paragraph is a list: a marker on a later line starts another item

    def flush_para():
        if current:
            text = " ".join(current).strip()
            if text:
                paras.append(text)
            current.clear()

    def flush_section():
        flush_para()
        if paras:
            out.append((tuple(h for _, h in path), list(paras)))
            paras.clear()

    for raw in markdown.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        if _FENCE.match(line.strip()):
            flush_para()
            in_list = False
            in_fence = not in_fence
            continue
        if in_fence:
            current.append(line.strip())
            continue
        heading = split_heading(line)
        if heading:
            flush_section()
            level, title = heading
            path[:] = [p for p in path if p[0] < level] + [(level, clean_inline(title))]
            continue
        stripped = line.strip()
        if not stripped or re.match(r"^(-{3,}|\*{3,}|_{3,})$", stripped):
            flush_para()
            in_list = False
            continue
        if stripped.startswith("|"):
            if re.match(r"^\|?[\s:|-]+\|?$", stripped):
                continue
            flush_para()
            cells = [clean_inline(c) for c in stripped.strip("|").split("|")]
            paras.append("; ".join(c for c in cells if c) + ".")
            continue
        stripped = re.sub(r"^>\s?", "", stripped)
        # A list marker only where a list can start (a new paragraph) or continue: inside a
        # wrapped paragraph, "1815. She was ..." is the end of a sentence, not item 1815.
        marker = re.match(r"^([-*+]|\d+[.)])\s+", stripped)
        if marker and (not current or in_list):
            stripped = stripped[marker.end():]
            in_list = True
        current.append(clean_inline(stripped))
    flush_section()
    return out


def words(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def chunk_markdown(markdown: str, document: str, max_tokens: int = 350) -> list[Chunk]:
    """Chunks that never cross a heading and stay within ``max_tokens`` (~4/3 tokens a word),
    split at paragraph, then sentence, boundaries."""
    budget = max(20, int(max_tokens * 3 / 4))  # in words
    chunks: list[Chunk] = []
    for headings, paras in sections(markdown):
        pieces: list[str] = []
        for p in paras:
            if words(p) <= budget:
                pieces.append(p)
            else:
                buf: list[str] = []
                for s in sentences(p):
                    if buf and words(" ".join(buf + [s])) > budget:
                        pieces.append(" ".join(buf))
                        buf = []
                    buf.append(s)
                if buf:
                    pieces.append(" ".join(buf))
        buf = []
        for piece in pieces:
            if buf and words(" ".join(buf + [piece])) > budget:
                chunks.append(_chunk(document, headings, "\n\n".join(buf)))
                buf = []
            buf.append(piece)
        if buf:
            chunks.append(_chunk(document, headings, "\n\n".join(buf)))
    return chunks


def _chunk(document: str, headings: tuple[str, ...], text: str) -> Chunk:
    cid = hashlib.sha256(f"{document}\0{text}".encode()).hexdigest()[:16]
    return Chunk(cid, document, headings, text)
