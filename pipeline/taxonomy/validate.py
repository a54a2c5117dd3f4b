"""Validate one leaf from its bytes: the single core behind the CLI, the bot and the Action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

from . import diagnostics as d
from . import hygiene, rules, schema
from .loader import MAX_BYTES, LoadError, load

Attribution = Union[bytes, None, Callable[[], Union[bytes, None]]]


@dataclass(frozen=True)
class Options:
    strict: bool = False
    """Make the warnings of rules that go beyond InstructLab's into errors."""
    limits: rules.Limits = field(default_factory=rules.Limits)
    max_bytes: int = MAX_BYTES
    """Files larger than this are refused unread."""


@dataclass
class LeafResult:
    path: str
    """Path inside the taxonomy, e.g. ``knowledge/science/qna.yaml``."""
    file: str
    """Path shown to people (relative to the working directory or repository)."""
    kind: str | None = None
    version: int | None = None
    data: Any = None
    diagnostics: list = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for x in self.diagnostics if x.severity is d.Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for x in self.diagnostics if x.severity is d.Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict:
        return {"path": self.path, "file": self.file, "kind": self.kind, "version": self.version,
                "ok": self.ok, "errors": self.errors, "warnings": self.warnings,
                "diagnostics": [x.to_dict() for x in sorted(self.diagnostics)]}


def kind_of(rel: str, data: Any) -> str:
    top = rel.split("/", 1)[0]
    if top == "knowledge":
        return "knowledge"
    if top in ("compositional_skills", "foundational_skills"):
        return "compositional_skills"
    return "knowledge" if isinstance(data, dict) and "document" in data else "compositional_skills"


def validate_leaf(path: str, raw: bytes | str, *, attribution: Attribution = None,
                  file: str | None = None, options: Options = Options()) -> LeafResult:
    """Validate a leaf given its taxonomy-relative ``path`` and content.

    ``attribution`` is the content of the sibling attribution.txt (None when absent), or a
    callable returning it, so callers that fetch over the network only do so when needed.
    """
    rel = path.replace("\\", "/")
    result = LeafResult(path=rel, file=file or rel)
    diags = result.diagnostics
    strict = options.strict
    diags.extend(rules.check_path(rel, result.file, strict))
    if rel.rsplit("/", 1)[-1] != "qna.yaml":
        return result
    try:
        loaded = load(raw, max_bytes=options.max_bytes)
    except LoadError as e:
        diags.append(d.make(e.rule, result.file, e.line, e.column, e.message, e.hint))
        return result
    data = loaded.data
    if data is None or data == "":
        diags.append(d.make(d.FILE_EMPTY, result.file, 1, 1, "the file is empty",
                            "Fill in the leaf; see taxonomy/ for examples.", strict=strict))
        return result
    if not isinstance(data, dict):
        diags.append(d.make(d.YAML_TOP_LEVEL, result.file, 1, 1,
                            f"the top level is {schema._type_name(data)}, not a mapping of keys "
                            "to values", "A leaf starts with keys such as 'version:', "
                            "'created_by:' and 'seed_examples:'."))
        return result
    result.data = data
    kind = result.kind = kind_of(rel, data)
    raw_version = data.get("version", 1)
    version = raw_version if isinstance(raw_version, int) and not isinstance(raw_version, bool) else 1
    result.version = version
    lenient = version <= 1  # InstructLab lints YAML hygiene only from version 2 on
    diags.extend(hygiene.check(loaded.text, result.file, lenient=lenient, strict=strict))
    for key, line, col, first in loaded.duplicate_keys:
        diags.append(d.make(d.YAML_DUPLICATE_KEY, result.file, line, col,
                            f"duplicate key {key!r} (first on line {first}); YAML keeps only the last",
                            "Merge the two entries or rename one.", strict=strict, lenient=lenient))
    vline, vcol = loaded.position(("version",)) if "version" in data else (1, 1)
    if version not in schema.SUPPORTED_VERSIONS:
        diags.append(d.make(d.VERSION_UNSUPPORTED, result.file, vline, vcol,
                            f"version {raw_version!r} is not supported",
                            "Use version 3 (skills also accept 1 and 2)."))
        return result
    if kind == "knowledge" and version < 3:
        diags.append(d.make(d.VERSION_UNSUPPORTED, result.file, vline, vcol,
                            f"Version {version} is not supported for knowledge. "
                            "Minimum supported version is 3.",
                            "Convert the leaf to version 3: add 'version: 3', 'domain', "
                            "'document_outline', and group questions_and_answers under each "
                            "context."))
        return result
    diags.extend(schema.validate(loaded, kind, version, result.file))
    diags.extend(rules.check_content(loaded, kind, version, result.file, strict, options.limits))
    if version > 1:
        text = attribution() if callable(attribution) else attribution
        if text is None:
            diags.append(d.make(d.ATTRIBUTION, result.file, vline, vcol,
                                'the "attribution.txt" file does not exist beside this leaf',
                                "Add attribution.txt next to qna.yaml with Title of work, Link "
                                "to work, Revision, License of the work and Creator names."))
        elif not text.strip():
            diags.append(d.make(d.ATTRIBUTION, result.file, vline, vcol,
                                'the "attribution.txt" beside this leaf is empty',
                                "Fill in where the content comes from and under which license."))
    return result
