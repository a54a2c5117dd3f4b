"""Markdown to clean text, then chunks by heading and a token budget."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML = re.compile(r"<[^>]+>")
_EMPH = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
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


def clean_inline(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _HTML.sub("", text)
    for _ in range(2):
        text = _EMPH.sub(lambda m: m.group(2), text)
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
        m = _HEADING.match(line)
        if m:
            flush_section()
            level = len(m.group(1))
            path[:] = [p for p in path if p[0] < level] + [(level, clean_inline(m.group(2)))]
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
