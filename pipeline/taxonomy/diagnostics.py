"""Findings the validator returns; every front end renders these, none prints them itself."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str
    severity: Severity
    # Rules that go beyond what InstructLab's reference validator checks are warnings by
    # default so that a leaf it accepts is never rejected here; --strict makes them errors.
    strict_error: bool = False


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: Severity = field(compare=False)
    rule: str = field(compare=False)
    message: str = field(compare=False)
    hint: str = field(default="", compare=False)
    yaml_path: str = field(default="", compare=False)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


RULES: dict[str, Rule] = {}


def _rule(id: str, summary: str, severity: Severity, strict_error: bool = False) -> str:
    RULES[id] = Rule(id, summary, severity, strict_error)
    return id


E, W = Severity.ERROR, Severity.WARNING

# Reading and YAML
FILE_UNREADABLE = _rule("file-unreadable", "the file cannot be read", E)
FILE_TOO_LARGE = _rule("file-too-large", "the file is over the size limit", E)
FILE_BINARY = _rule("file-binary", "the file holds binary data, not text", E)
FILE_ENCODING = _rule("file-encoding", "the file is not valid UTF-8", E)
FILE_EMPTY = _rule("file-empty", "the file is empty", W, strict_error=True)
PATH_ESCAPE = _rule("path-escape", "a path leads outside the taxonomy", E)
YAML_SYNTAX = _rule("yaml-syntax", "the file is not valid YAML", E)
YAML_BOMB = _rule("yaml-bomb", "aliases expand beyond the node limit", E)
YAML_DUPLICATE_KEY = _rule("yaml-duplicate-key", "a mapping repeats a key", E)
YAML_MULTI_DOC = _rule("yaml-multiple-documents", "the file holds more than one YAML document", E)
YAML_TOP_LEVEL = _rule("yaml-top-level", "the top level is not a mapping", E)
YAML_TAB = _rule("yaml-tab", "a tab character indents a line", W, strict_error=True)
# YAML hygiene, as the InstructLab taxonomy's yamllint (relaxed) enforces it for version > 1
TRAILING_SPACES = _rule("trailing-spaces", "a line ends in spaces", E)
FINAL_NEWLINE = _rule("new-line-at-end-of-file", "the file does not end with a newline", E)
NEW_LINES = _rule("new-lines", "lines end in CR LF instead of LF", E)
EMPTY_LINES = _rule("empty-lines", "too many blank lines", W)
# Schema
SCHEMA = _rule("schema", "the leaf does not match its JSON Schema", E)
VERSION_UNSUPPORTED = _rule("version-unsupported", "the leaf's version is not supported", E)
# Layout
LEAF_NAME = _rule("leaf-name", "a leaf file must be named qna.yaml", E)
LEAF_NAME_YML = _rule("leaf-name-yml", "qna.yml is ignored by every tool; rename it qna.yaml", W, True)
LEAF_TREE = _rule("leaf-tree", "a leaf must sit in a known top-level tree", W, True)
LEAF_PATH_STYLE = _rule("leaf-path-style", "leaf folders should be lowercase, without spaces", W, True)
ATTRIBUTION = _rule("attribution-missing", "a leaf of version > 1 needs a non-empty attribution.txt", E)
# Content
DUPLICATE_QUESTION = _rule("duplicate-question", "the same question appears twice in a leaf", W, True)
KNOWLEDGE_QNA_COUNT = _rule("knowledge-qna-count", "only 3 Q&A pairs per knowledge seed example are used", W, True)
CONTEXT_WORDS = _rule("context-words", "knowledge context over 500 words", W, True)
QNA_WORDS = _rule("qna-words", "a knowledge question or answer over 250 words", W, True)
SKILL_WORDS = _rule("skill-words", "a skill leaf's Q&A over about 2,300 words in all", W, True)
TOKEN_BUDGET = _rule("token-budget", "context + question + answer over the generation token budget", W, True)
MIXED_GROUNDING = _rule("mixed-grounding", "a skill leaf mixes grounded and freeform seed examples", W, True)
DOCUMENT_COMMIT = _rule("document-commit", "document.commit should be a full 40-hex SHA", W, True)
# The one deliberate divergence from the reference validator: a commit git would read as an
# option (or that holds whitespace) is an error, because it would reach `git fetch`.
DOCUMENT_COMMIT_UNSAFE = _rule("document-commit-unsafe", "document.commit could be read as a git option", E)
DOCUMENT_PATTERN_ROOTED = _rule("document-pattern-rooted", "a document pattern starts with '/'", W, True)
DOCUMENT_PATTERN = _rule("document-pattern", "document patterns must be relative globs inside the repo", E)
DOCUMENT_CHECK = _rule("document-check", "document repository, commit or files not found", E)


def make(rule: str, file: str, line: int, column: int, message: str, hint: str = "",
         yaml_path: str = "", strict: bool = False, lenient: bool = False) -> Diagnostic:
    """Build a finding; ``lenient`` demotes an error the reference validator would not raise
    for this leaf (it lints only version > 1) to a warning, which ``strict`` restores."""
    r = RULES[rule]
    sev = r.severity
    if lenient and sev is Severity.ERROR:
        sev = Severity.WARNING
    if strict and (r.strict_error or lenient):
        sev = Severity.ERROR
    return Diagnostic(file, max(1, line), max(1, column), sev, rule, message, hint, yaml_path)
