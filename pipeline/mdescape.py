"""The one way from untrusted text to Markdown: an escaping function per context.

Every string that comes from a pull request, a leaf, a document, a file name, a model's answer or
a comment reaches Markdown (comments, check-run summaries) through one of these, never `repr`:

- ``text``   inline text in a paragraph, list item or heading;
- ``cell``   a GitHub table cell (the same, cut to a length);
- ``code``   a code span (`` `path` ``), in a table or not;
- ``link_text``  the text of a link the renderer itself builds;
- ``html_text``  text inside an HTML block the renderer writes (``<summary>…</summary>``);
- ``block``  a fenced code block (a log tail) that nothing inside can close;
- ``plain``  plain text GitHub shows as is (check-run annotations, titles).

What they guarantee: the value stays one inline run of text on the line where the renderer put
it (every line and paragraph separator, U+0085/U+2028/U+2029 included, becomes a space), so it
can never start a heading, quote, list, fence or table row, nor close the renderer's own;
no emphasis, link, image, autolink, raw HTML, entity or code span opens from it; bidi and other
invisible format controls and NUL become a visible U+FFFD; and GitHub's own text filters find no
@mention, #reference or bare URL in it (a word joiner U+2060 follows the '@', '#', ':' or
'www' that would start one: invisible to a reader, it breaks GitHub's patterns).
"""

from __future__ import annotations

import html
import re
import unicodedata

REPLACEMENT = "\ufffd"
JOINER = "\u2060"  # WORD JOINER: invisible, and no mention/reference/URL pattern spans it

# Characters that open something inline (CommonMark + GFM): escapes, code, emphasis, links and
# images, raw HTML and autolinks, entities, table cells, strikethrough.
_INLINE = re.compile(r"([\\`*_\[\]<>&|~])")
# What makes a line a block at its start: headings, quotes, lists, thematic breaks, setext lines.
_LEADING = re.compile(r"^([#>+\-=])")
_ORDERED = re.compile(r"^(\d{1,9})([.)])")
# GitHub's text filters: @mentions (and e-mail autolinks), #123 / GH-123 references, bare URLs.
_FILTERS = re.compile(r"(@)(?=[A-Za-z0-9_])|(#)(?=\d)|(:)(?=//)|(?i:(www))(?=\.)|(?i:(gh))(?=-\d)")


def _allowed(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # Cc: NUL and other controls; Cf: bidi overrides/isolates, zero-width and other invisible
    # format characters; Cs/Co/Cn: surrogates, private use, unassigned.
    return cat not in ("Cc", "Cf", "Cs", "Co", "Cn") or ch == "\t"


def clean(value, keep_lines: bool = False) -> str:
    """``value`` as text with invisible and control characters made visible (U+FFFD); every
    kind of line break becomes a space, or with ``keep_lines`` a plain '\\n'."""
    s = "" if value is None else str(value)
    s = s.replace("\r\n", "\n")
    out = []
    for ch in s:
        if ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029":
            out.append("\n" if keep_lines else " ")
        elif ch == "\t":
            out.append(" ")
        elif _allowed(ch):
            out.append(ch)
        else:
            out.append(REPLACEMENT)
    return "".join(out)


def _cut(s: str, limit: int | None) -> str:
    return s if limit is None or len(s) <= limit else s[: max(0, limit - 1)] + "…"


def _defuse(s: str) -> str:
    return _FILTERS.sub(lambda m: next(g for g in m.groups() if g) + JOINER, s)


def text(value, limit: int | None = None) -> str:
    """Inline Markdown text: whitespace collapsed to single spaces, nothing active."""
    s = _cut(" ".join(clean(value).split()), limit)
    s = _INLINE.sub(r"\\\1", _defuse(s))
    return _ORDERED.sub(r"\1\\\2", _LEADING.sub(r"\\\1", s))


def cell(value, limit: int | None = 240, empty: str = "") -> str:
    """A table cell: inline text (its '|' escaped), cut to ``limit`` characters."""
    return text(value, limit) or empty


def link_text(value, limit: int | None = None) -> str:
    """The text between the brackets of a link the renderer builds itself."""
    return text(value, limit)


def code(value, table: bool = False, limit: int | None = None) -> str:
    """A code span holding ``value`` verbatim (one line): the fence is one backtick longer than
    any run inside. In a table, '|' is escaped (GitHub splits cells before reading code spans)."""
    s = _cut(clean(value), limit)
    if table:
        s = s.replace("|", "\\|")
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    if not s or s[0] in "` " or s[-1] in "` ":
        s = f" {s} "  # one space each side is stripped by the parser
    return f"{fence}{s}{fence}"


def html_text(value, limit: int | None = None) -> str:
    """Text inside an HTML element the renderer writes (a ``<summary>``): HTML-escaped, one
    line, with GitHub's text filters defused."""
    s = _cut(" ".join(clean(value).split()), limit)
    return html.escape(_defuse(s), quote=True)


def block(value, info: str = "") -> str:
    """A fenced code block holding ``value``'s lines verbatim: the fence is longer than any run
    of backticks inside, so no line of the value can close it."""
    s = clean(value, keep_lines=True)
    runs = [len(r) for r in re.findall(r"`{3,}", s)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}{info}\n{s}\n{fence}"


def plain(value, limit: int | None = None, keep_lines: bool = True) -> str:
    """Plain text GitHub shows as is (annotation messages and titles): controls and invisible
    format characters made visible, nothing else changed."""
    return _cut(clean(value, keep_lines=keep_lines), limit)


# A scheme starts only after a character that cannot be part of one (not at every \b), so the
# scheme runs tried are disjoint and the scan stays linear ("a.a.a…" was quadratic with \b).
_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://)[^/\s@'\"`]*@")


def mask_credentials(value: str) -> str:
    """URLs with credentials (``https://user:token@host/…``) shown as ``https://***@host/…``."""
    return _USERINFO.sub(r"\1***@", value or "")


def without_credentials(url: str) -> str:
    """``url`` with any ``user:token@`` removed (a link people may follow)."""
    return _USERINFO.sub(r"\1", url or "")
