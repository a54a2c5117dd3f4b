"""Bounded, position-keeping YAML loading for qna.yaml leaves.

libyaml's event parser is a state machine (no C recursion), so we build the data ourselves from
its events: that lets us bound depth, node count and alias expansion (a 1 KB "billion laughs"
file took the reference validator 214 s), refuse duplicate keys, and remember where every value
and key came from, so that schema errors point at the right line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events as ev
from yaml.nodes import ScalarNode

try:  # libyaml is ~10x faster; the pure-Python parser gives the same events
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from . import diagnostics as d

Path = tuple  # a JSON path: keys (str) and indexes (int)

MAX_BYTES = 1_000_000  # the largest real leaf is ~40 KB
MAX_NODES = 100_000  # nodes after alias expansion
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_LATIN1_HINT = ("Save the file as UTF-8. It looks like Latin-1 or Windows-1252 text "
                "(for example an accented letter typed in an old editor).")


class LoadError(Exception):
    """The only exception the loader raises: one finding that stops parsing."""

    def __init__(self, rule: str, line: int, column: int, message: str, hint: str = ""):
        super().__init__(f"{line}:{column} {message}")
        self.rule, self.line, self.column, self.message, self.hint = rule, line, column, message, hint


@dataclass
class Loaded:
    data: Any
    text: str
    # Position (1-based line, column) of each value, and of each mapping key under (*path, KEY).
    positions: dict = field(default_factory=dict)
    duplicate_keys: list = field(default_factory=list)  # (key, line, col, first_line)

    def position(self, path: Path) -> tuple[int, int]:
        """Where the value at ``path`` starts; the nearest known ancestor when it has none."""
        path = tuple(path)
        while path:
            pos = self.positions.get(path)
            if pos:
                return pos
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def key_position(self, path: Path) -> tuple[int, int]:
        """Where the key of the mapping entry at ``path`` is written."""
        path = tuple(path)
        pos = self.positions.get((*path, KEY))
        return pos if pos else self.position(path)


class _Key:
    """Marker for key positions in ``Loaded.positions``."""

    def __repr__(self) -> str:
        return "KEY"


KEY = _Key()


def too_large(size: int, max_bytes: int) -> LoadError:
    return LoadError(d.FILE_TOO_LARGE, 1, 1, f"the file is {size:,} bytes; the limit is {max_bytes:,}",
                     "A qna.yaml holds a handful of seed examples; put long source text in "
                     "the knowledge document repository instead.")


def decode(raw: bytes, max_bytes: int = MAX_BYTES) -> str:
    if len(raw) > max_bytes:
        raise too_large(len(raw), max_bytes)
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):
        raise LoadError(d.FILE_ENCODING, 1, 1, "the file is UTF-16; it must be UTF-8",
                        "Save the file as UTF-8 without a byte order mark.")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise LoadError(d.FILE_BINARY, line, nul - raw.rfind(b"\n", 0, nul),
                        "the file holds a NUL byte: it is binary, not YAML text",
                        "Commit a text qna.yaml; binary data (images, PDFs) belongs in the "
                        "document repository.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - raw.rfind(b"\n", 0, e.start)
        raise LoadError(d.FILE_ENCODING, line, col,
                        f"byte 0x{raw[e.start]:02x} is not valid UTF-8", _LATIN1_HINT) from None


def load(source: bytes | str, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
         max_depth: int = MAX_DEPTH) -> Loaded:
    """Parse one YAML document, keeping positions. Raises only ``LoadError``."""
    text = decode(source, max_bytes) if isinstance(source, bytes) else source
    if isinstance(source, str) and len(source) > max_bytes:
        raise LoadError(d.FILE_TOO_LARGE, 1, 1, f"the text is {len(source):,} characters; "
                        f"the limit is {max_bytes:,}")
    try:
        try:
            return _Builder(text, max_nodes, max_depth).build()
        except yaml.MarkedYAMLError as e:
            # libyaml refuses a tab right after the indentation on a block scalar's first line;
            # PyYAML's pure parser, yamllint and the reference validator accept it.
            if _Loader is yaml.SafeLoader or "found a tab character where an indentation space" not in str(e):
                raise
            return _Builder(text, max_nodes, max_depth, yaml.SafeLoader).build()
    except LoadError:
        raise
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text) from None
    except yaml.YAMLError as e:  # ReaderError: a character YAML forbids
        pos = getattr(e, "position", 0) or 0
        line = text.count("\n", 0, pos) + 1
        col = pos - text.rfind("\n", 0, pos)
        msg = str(e).splitlines()[0] if str(e) else "unreadable YAML"
        if hasattr(e, "character"):
            c = e.character  # type: ignore[attr-defined]
            msg = f"character U+{c if isinstance(c, int) else ord(c):04X} is not allowed in YAML"
        raise LoadError(d.YAML_SYNTAX, line, col, msg,
                        "Remove control characters; YAML allows printable Unicode only.") from None
    except RecursionError:
        raise LoadError(d.YAML_SYNTAX, 1, 1, "the YAML nests too deeply") from None
    except Exception as e:  # never let a parser bug escape as a traceback
        raise LoadError(d.YAML_SYNTAX, 1, 1, f"cannot parse the file: {type(e).__name__}: {e}") from None


def _syntax_error(e: yaml.MarkedYAMLError, text: str) -> LoadError:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = e.problem or "invalid YAML"
    if e.context and e.context not in problem:
        problem = f"{problem} ({e.context}"
        if e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
            problem += f" started at line {e.context_mark.line + 1}"
        problem += ")"
    return LoadError(d.YAML_SYNTAX, line, col, problem, _syntax_hint(problem, text, line))


def _syntax_hint(problem: str, text: str, line: int) -> str:
    lines = text.split("\n")
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in src[: len(src) - len(src.lstrip())] or "found character '\\t'" in problem:
        return "YAML does not allow tabs for indentation; indent with spaces."
    if "mapping values are not allowed" in problem:
        return ("A plain value contains ': '. Quote the value, or use a block scalar "
                "('answer: |' with the text indented on the next lines).")
    if src.lstrip().startswith("```") or "'`'" in problem:
        return ("A Markdown code fence cannot start a YAML line. Put code inside a block "
                "scalar ('answer: |') indented under its key.")
    if src.lstrip().startswith(("<<<<<<<", "=======", ">>>>>>>")):
        return "This looks like a leftover merge-conflict marker; resolve the conflict."
    if "could not find expected ':'" in problem or "expected <block end>" in problem:
        return "Check the indentation of this line against the lines above it."
    return ""


class _Builder:
    def __init__(self, text: str, max_nodes: int, max_depth: int, loader=None):
        self.text = text
        self.loader = (loader or _Loader)(text)
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.nodes = 0
        self.anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, expanded weight)
        self.positions: dict = {}
        self.duplicates: list = []
        self._implicit = self.loader.yaml_implicit_resolvers
        self._implicit_any = self.loader.yaml_implicit_resolvers.get(None, [])

    def build(self) -> Loaded:
        get, check = self.loader.get_event, self.loader.check_event
        try:
            get()  # StreamStart
            data: Any = None
            if check(ev.StreamEndEvent):
                return Loaded(None, self.text, {(): (1, 1)})
            get()  # DocumentStart
            data, _ = self._node((), 0)
            get()  # DocumentEnd
            if not check(ev.StreamEndEvent):
                nxt = self.loader.peek_event()
                raise LoadError(d.YAML_MULTI_DOC, nxt.start_mark.line + 1, nxt.start_mark.column + 1,
                                "a second YAML document starts here; a leaf holds exactly one",
                                "Remove the '---' separator and merge the two parts.")
            return Loaded(data, self.text, self.positions, self.duplicates)
        finally:
            self.loader.dispose()

    def _count(self, weight: int, mark) -> None:
        self.nodes += weight
        if self.nodes > self.max_nodes:
            raise LoadError(d.YAML_BOMB, mark.line + 1, mark.column + 1,
                            f"the document expands to more than {self.max_nodes:,} nodes "
                            "(aliases repeat anchored content)",
                            "Write the content out instead of nesting '*alias' references.")

    def _node(self, path: Path, depth: int) -> tuple[Any, int]:
        """Build the next node's value; returns (value, weight in expanded nodes)."""
        event = self.loader.get_event()
        mark = event.start_mark
        if depth > self.max_depth:
            raise LoadError(d.YAML_SYNTAX, mark.line + 1, mark.column + 1,
                            f"the YAML nests deeper than {self.max_depth} levels")
        if isinstance(event, ev.AliasEvent):
            if event.anchor not in self.anchors:
                raise LoadError(d.YAML_SYNTAX, mark.line + 1, mark.column + 1,
                                f"alias *{event.anchor} refers to an anchor not yet defined "
                                "(or to itself)")
            value, weight = self.anchors[event.anchor]
            self._count(weight, mark)
            self.positions[path] = (mark.line + 1, mark.column + 1)
            return value, weight
        self.positions[path] = (mark.line + 1, mark.column + 1)
        self._count(1, mark)
        if isinstance(event, ev.ScalarEvent):
            value = self._scalar(event)
            if event.anchor:
                self.anchors[event.anchor] = (value, 1)
            return value, 1
        if isinstance(event, ev.SequenceStartEvent):
            self._check_tag(event, "tag:yaml.org,2002:seq")
            seq: list = []
            weight = 1
            while not self.loader.check_event(ev.SequenceEndEvent):
                value, w = self._node((*path, len(seq)), depth + 1)
                seq.append(value)
                weight += w
            self.loader.get_event()
            if event.anchor:
                self.anchors[event.anchor] = (seq, weight)
            return seq, weight
        if isinstance(event, ev.MappingStartEvent):
            self._check_tag(event, "tag:yaml.org,2002:map")
            return self._mapping(event, path, depth)
        raise LoadError(d.YAML_SYNTAX, mark.line + 1, mark.column + 1,
                        f"unexpected YAML event {type(event).__name__}")

    def _mapping(self, event, path: Path, depth: int) -> tuple[dict, int]:
        mapping: dict = {}
        first_seen: dict = {}
        merged: set = set()
        weight = 1
        while not self.loader.check_event(ev.MappingEndEvent):
            key_event = self.loader.peek_event()
            kmark = key_event.start_mark
            if not isinstance(key_event, ev.ScalarEvent):
                raise LoadError(d.YAML_SYNTAX, kmark.line + 1, kmark.column + 1,
                                "a mapping key must be a plain value, not a list or mapping")
            self.loader.get_event()
            key_tag = self._resolve(key_event)
            if key_tag == _MERGE_TAG:
                value, w = self._node((*path, "<<"), depth + 1)
                weight += w
                for src in value if isinstance(value, list) else [value]:
                    if not isinstance(src, dict):
                        raise LoadError(d.YAML_SYNTAX, kmark.line + 1, kmark.column + 1,
                                        "a merge key ('<<') needs a mapping or a list of mappings")
                    for k, v in src.items():
                        if k not in mapping:
                            mapping[k] = v
                            merged.add(k)
                continue
            key = self._scalar(key_event, key_tag)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            kpos = (kmark.line + 1, kmark.column + 1)
            if key in first_seen:
                self.duplicates.append((key, kpos[0], kpos[1], first_seen[key]))
            elif key in merged:
                merged.discard(key)
            first_seen.setdefault(key, kpos[0])
            self.positions[(*path, key, KEY)] = kpos
            value, w = self._node((*path, key), depth + 1)
            weight += w
            mapping[key] = value
        self.loader.get_event()
        if event.anchor:
            self.anchors[event.anchor] = (mapping, weight)
        return mapping, weight

    def _check_tag(self, event, default: str) -> None:
        if event.tag not in (None, "!", default):
            m = event.start_mark
            raise LoadError(d.YAML_SYNTAX, m.line + 1, m.column + 1,
                            f"the tag {event.tag} is not allowed in a leaf")

    def _resolve(self, event) -> str:
        if event.tag and event.tag != "!":
            return event.tag
        if not event.implicit[0]:  # quoted or block scalar: always a string
            return _STR_TAG
        # Inlined Resolver.resolve: a first-character index into the implicit resolvers.
        value = event.value
        for tag, regexp in self._implicit.get(value[:1], ()):
            if regexp.match(value):
                return tag
        for tag, regexp in self._implicit_any:
            if regexp.match(value):
                return tag
        return _STR_TAG

    def _scalar(self, event, tag: str | None = None) -> Any:
        tag = tag or self._resolve(event)
        if tag == _STR_TAG:
            return event.value
        constructor = self.loader.yaml_constructors.get(tag)
        m = event.start_mark
        if constructor is None or tag == _MERGE_TAG:
            raise LoadError(d.YAML_SYNTAX, m.line + 1, m.column + 1,
                            f"the tag {tag} is not allowed in a leaf",
                            "Leaves hold plain strings, numbers and lists; remove the '!' tag.")
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return constructor(self.loader, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            raise LoadError(d.YAML_SYNTAX, m.line + 1, m.column + 1,
                            f"cannot read the value {event.value[:40]!r} as {tag.rsplit(':', 1)[-1]}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


