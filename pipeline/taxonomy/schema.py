"""JSON Schema validation of a parsed leaf, with errors placed on the offending YAML node."""

from __future__ import annotations

import functools
import json
from typing import Any, Iterator
from urllib.parse import urljoin


from . import diagnostics as d
from .fastcheck import compile_schema
from ..package_data import resource
from .loader import Loaded

SCHEMA_BASE = "https://sprout.dev/schemas"
SUPPORTED_VERSIONS = (1, 2, 3)
KINDS = ("compositional_skills", "knowledge")


@functools.lru_cache(maxsize=None)
def all_schemas() -> dict[str, dict]:
    """Every schema document by its ``$id``."""
    root = resource("schemas")
    out = {}
    for v in SUPPORTED_VERSIONS:
        for name in ("version", *KINDS):
            contents = json.loads(root.joinpath(f"v{v}", f"{name}.json").read_text("utf-8"))
            out[contents["$id"]] = contents
    return out


def schema_for(kind: str, version: int) -> dict:
    return all_schemas()[f"{SCHEMA_BASE}/v{version}/{kind}.json"]


@functools.lru_cache(maxsize=None)
def _validator(kind: str, version: int):
    # jsonschema costs ~120 ms to import; only a failing leaf needs it, to explain the failure.
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resources(
        (uri, Resource.from_contents(c, DRAFT202012)) for uri, c in all_schemas().items())
    return Draft202012Validator(schema_for(kind, version), registry=registry)


@functools.lru_cache(maxsize=None)
def fast_check(kind: str, version: int):
    """A compiled validity check, or None when the schema leaves the supported subset."""
    schemas = all_schemas()

    def resolve(base: str, ref: str):
        uri = urljoin(base, ref)
        return schemas[uri], uri

    return compile_schema(schema_for(kind, version), resolve, "")


def yaml_path(path) -> str:
    """A jq-style path, as InstructLab prints it: ``.seed_examples[2].answer``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out or "."


def validate(loaded: Loaded, kind: str, version: int, file: str) -> Iterator[d.Diagnostic]:
    fast = fast_check(kind, version)
    if fast is not None and fast(loaded.data):  # the common case: no need for jsonschema
        return
    validator = _validator(kind, version)
    errors = sorted(validator.iter_errors(loaded.data), key=lambda e: loaded.position(e.absolute_path))
    for error in errors:
        yield from _to_diagnostics(error, loaded, file)


def _to_diagnostics(error, loaded: Loaded, file: str) -> Iterator[d.Diagnostic]:
    path = tuple(error.absolute_path)
    yp = yaml_path(path)
    kw = error.validator
    if kw == "unevaluatedProperties" and isinstance(error.instance, dict):
        known = set((error.schema or {}).get("properties", {})) | {"version"}
        extras = [k for k in error.instance if k not in known] or list(error.instance)
        for key in extras:
            line, col = loaded.key_position((*path, key))
            yield d.make(d.SCHEMA, file, line, col, f"unexpected key {key!r}",
                         _unexpected_hint(key, known), yaml_path(path + (key,)))
        return
    line, col = loaded.position(path)
    if kw == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        if path:  # point at the key that owns the incomplete mapping, where people look
            line, col = loaded.key_position(path) if not isinstance(path[-1], int) else (line, col)
        yield d.make(d.SCHEMA, file, line, col, f"missing required key {missing!r}",
                     _missing_hint(missing, error.instance), yp)
        return
    if kw == "minItems":
        have = len(error.instance) if isinstance(error.instance, list) else 0
        yield d.make(d.SCHEMA, file, line, col,
                     f"needs at least {error.validator_value} items, has {have}",
                     _min_items_hint(path, error.validator_value), yp)
        return
    if kw == "minLength":
        yield d.make(d.SCHEMA, file, line, col, "must not be empty",
                     "Fill in the text, or remove the entry.", yp)
        return
    if kw == "type":
        got = _type_name(error.instance)
        yield d.make(d.SCHEMA, file, line, col, f"must be {_article(error.validator_value)}, "
                     f"not {got}", _type_hint(error.validator_value, error.instance), yp)
        return
    if kw == "const" and path[-1:] == ("version",):
        yield d.make(d.SCHEMA, file, line, col,
                     f"version must be {error.validator_value} here, not {error.instance!r}", "", yp)
        return
    if kw == "uniqueItems":
        yield d.make(d.SCHEMA, file, line, col, "contains the same item twice",
                     "Each seed example (and each Q&A pair) must be different.", yp)
        return
    msg = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    yield d.make(d.SCHEMA, file, line, col, msg, "", yp)


def _type_name(value: Any) -> str:
    if value is None:
        return "empty (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _article(t) -> str:
    names = {"string": "a string", "object": "a mapping", "array": "a list", "integer": "an integer"}
    if isinstance(t, list):
        return " or ".join(names.get(x, x) for x in t)
    return names.get(t, t)


def _type_hint(expected, value) -> str:
    if value is None:
        return "The key is present but has no value: write the value after the colon, or delete the key."
    if expected == "string" and isinstance(value, (list, dict)):
        return "Write the answer as text; for several lines use a block scalar ('answer: |')."
    if expected == "string":
        return "Quote the value so that YAML reads it as text (for example '1.0' or 'yes')."
    return ""


_FIELD_HINTS = {
    "seed_examples": "Add a 'seed_examples:' list.",
    "questions_and_answers": "Each knowledge seed example needs a 'questions_and_answers:' list "
                             "of 3 question/answer pairs about its context.",
    "patterns": "List the Markdown files to read, e.g. 'patterns: [\"*.md\"]'.",
    "version": "Add 'version: 3' at the top of the file.",
    "question": "Each seed example needs both 'question' and 'answer'; check that no stray '- ' "
                "splits one example into two.",
    "answer": "Each seed example needs both 'question' and 'answer'; check that no stray '- ' "
              "splits one example into two.",
}


def _missing_hint(key: str, instance) -> str:
    return _FIELD_HINTS.get(key, f"Add the '{key}' key.")


def _unexpected_hint(key, known) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
    if close:
        return f"Did you mean '{close[0]}'?"
    return f"Allowed keys here: {', '.join(sorted(known))}."


def _min_items_hint(path, n) -> str:
    if path and path[-1] == "seed_examples":
        return f"Add seed examples until there are at least {n}."
    if path and path[-1] == "questions_and_answers":
        return f"Each knowledge seed example needs at least {n} question/answer pairs."
    return ""
