"""Document patterns (InstructLab globs) matched in linear time, with no regex backtracking.

A leaf's ``document.patterns`` and the file names of its document repository are both written by
whoever opens the pull request. Translated to a backtracking regex, ``**`` becomes ``.*`` and seven
``**a`` segments took 24 s against one 80-character name. Here a pattern becomes a small NFA whose
set of live states is one Python integer (bit-parallel, Shift-And style): each character of the
name costs a few integer operations on a ``len(pattern)``-bit number, so matching is
O(len(name) * len(pattern) / 64) whatever the input.

Semantics are those of the regex this replaces (kept so that results do not change):
``**/`` is ``(?:.*/)?``, ``**`` is ``.*``, ``*`` is ``[^/]*``, ``?`` is ``[^/]``, ``[...]`` is
``fnmatch``'s class, anything else is literal; the whole name must match (``re.match`` with
``^...$``, which also accepts a name ending in one newline).
"""

from __future__ import annotations

import fnmatch
from bisect import bisect_right
import re
from dataclasses import dataclass, field
from functools import lru_cache

# token kinds
_LIT, _ANY1, _CLASS, _STAR, _DSTAR, _DSTARSLASH = range(6)


def _tokens(pattern: str) -> list[tuple[int, object]]:
    """The pattern as tokens; runs of equivalent stars are merged (``.*.*`` is ``.*``), which keeps
    the epsilon chains of the NFA a few steps long however many stars a pattern holds."""
    out: list[tuple[int, object]] = []
    i = 0

    def add(kind: int, arg: object = None) -> None:
        prev = out[-1][0] if out else None
        # exact equivalences only: .*.* = .*, [^/]*[^/]* = [^/]*, (?:.*/)?(?:.*/)? = (?:.*/)?,
        # .*(?:.*/)? = .*, (?:.*/)?.* = .*
        if kind == prev and kind in (_STAR, _DSTAR, _DSTARSLASH):
            return
        if prev == _DSTAR and kind == _DSTARSLASH:
            return
        if prev == _DSTARSLASH and kind == _DSTAR:
            out[-1] = (_DSTAR, None)
            return
        out.append((kind, arg))

    while i < len(pattern):
        if pattern.startswith("**/", i):
            add(_DSTARSLASH)
            i += 3
        elif pattern.startswith("**", i):
            add(_DSTAR)
            i += 2
        elif pattern[i] == "*":
            add(_STAR)
            i += 1
        elif pattern[i] == "?":
            add(_ANY1)
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                add(_LIT, "[")
                i += 1
                continue
            piece = fnmatch.translate(pattern[i:j + 1])[4:-3]
            if piece.startswith("[") or piece == "(?!)":  # one character of a class (or none)
                add(_CLASS, (re.compile(piece).fullmatch, pattern[i + 1:j]))
            else:  # fnmatch read it as literal text ("[]", "[!]")
                for ch in pattern[i:j + 1]:
                    add(_LIT, ch)
            i = j + 1
        else:
            add(_LIT, pattern[i])
            i += 1
    return out


@dataclass
class Glob:
    """One compiled pattern. State bit k: the first k NFA positions are matched."""

    pattern: str
    final: int = 0
    lit: dict = field(default_factory=dict)      # char -> positions that consume exactly it
    any1: int = 0                                # positions consuming one char but '/'
    classes: list = field(default_factory=list)  # (bit, fullmatch) for [...] positions
    star: int = 0                                # self-loops on any char but '/'
    dstar: int = 0                               # self-loops on any char but '\n'
    eps: int = 0                                 # state k-1 -> k without a char (star entry)
    skip: int = 0                                # state k -> k+2 (a skipped '**/')
    _masks: dict = field(default_factory=dict)
    # Membership of every class changes only at a code point written in some class or just after
    # one, so the classes' combined mask is constant between consecutive such points: one bisect
    # per character instead of one regex call per class (a 100 KB name of distinct characters
    # against 16 classes took ~0.5-1 s that way).
    _bounds: list = field(default_factory=list)
    _class_masks: dict = field(default_factory=dict)

    @classmethod
    def compile(cls, pattern: str) -> "Glob":
        g = cls(pattern)
        k = 0  # positions so far; position k's bit is 1 << k
        for kind, arg in _tokens(pattern):
            if kind == _DSTARSLASH:  # '(?:.*/)?': a '.*' then a '/', both skippable together
                g.skip |= 1 << k
                k += 1
                g.dstar |= 1 << k
                g.eps |= 1 << (k - 1)
                k += 1
                g.lit["/"] = g.lit.get("/", 0) | 1 << k
                continue
            k += 1
            bit = 1 << k
            if kind == _LIT:
                g.lit[arg] = g.lit.get(arg, 0) | bit
            elif kind == _ANY1:
                g.any1 |= bit
            elif kind == _CLASS:
                member, text = arg
                g.classes.append((bit, member))
                g._bounds.extend(b for c in text for b in (ord(c), ord(c) + 1))
            else:
                g.eps |= 1 << (k - 1)
                if kind == _STAR:
                    g.star |= bit
                else:
                    g.dstar |= bit
        g.final = 1 << k
        g._bounds = sorted(set(g._bounds))
        return g

    def _classes_mask(self, ch: str) -> int:
        if not self.classes:
            return 0
        at = bisect_right(self._bounds, ord(ch))
        m = self._class_masks.get(at)
        if m is None:
            rep = chr(self._bounds[at - 1]) if at else "\0"  # any point of the interval will do
            m = self._class_masks[at] = sum(bit for bit, member in self.classes if member(rep))
        return m

    def _closure(self, d: int) -> int:
        while True:  # a few rounds at most: star runs are merged in _tokens
            nd = d | ((d & self.eps) << 1) | ((d & self.skip) << 2)
            if nd == d:
                return d
            d = nd

    def _step_masks(self, ch: str) -> tuple[int, int]:
        m = self._masks.get(ch)
        if m is None:
            consume = self.lit.get(ch, 0) | (self.any1 if ch != "/" else 0) | self._classes_mask(ch)
            loop = (self.star if ch != "/" else 0) | (self.dstar if ch != "\n" else 0)
            m = self._masks[ch] = (consume, loop)
        return m

    def match(self, name: str) -> bool:
        d = before_last = self._closure(1)
        if not name:
            return bool(d & self.final)
        i = 0
        for i, ch in enumerate(name):
            if i == len(name) - 1:
                before_last = d
            consume, loop = self._step_masks(ch)
            d = ((d << 1) & consume) | (d & loop)
            if not d:
                break
            d = self._closure(d)
        else:
            if d & self.final:
                return True
        # '$' also matches before one final newline
        return name.endswith("\n") and i == len(name) - 1 and bool(before_last & self.final)


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> Glob:
    return Glob.compile(pattern)


def glob_match(pattern: str, name: str) -> bool:
    """Whether ``name`` (a path relative to the repository root) matches ``pattern``."""
    return compile_glob(pattern).match(name)
