"""A compiled yes/no check for the JSON Schema subset our leaf schemas use.

jsonschema's ``is_valid`` costs ~0.3 ms per leaf (it tracks annotations for
``unevaluatedProperties``); almost every leaf is valid, so a compiled check answers "valid" in a
few microseconds and jsonschema runs only to explain a failure. ``compile_schema`` returns None
for a schema using anything outside the subset, and the caller then uses jsonschema alone; a
property test checks both agree.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

Check = Callable[[Any], bool]
_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "deprecated"}
_SUPPORTED = _ANNOTATIONS | {"type", "required", "properties", "unevaluatedProperties", "$ref",
                             "items", "minItems", "uniqueItems", "minLength", "const"}


def _is_type(t: str) -> Check:
    return {
        "string": lambda x: isinstance(x, str),
        "object": lambda x: isinstance(x, dict),
        "array": lambda x: isinstance(x, list),
        "boolean": lambda x: isinstance(x, bool),
        "null": lambda x: x is None,
        "integer": lambda x: (isinstance(x, int) and not isinstance(x, bool))
        or (isinstance(x, float) and x.is_integer()),
        "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    }[t]


def canon(x: Any) -> Any:
    """A hashable form under JSON Schema equality (1 == 1.0, but True != 1)."""
    if isinstance(x, bool):
        return ("b", x)
    if isinstance(x, (int, float)):
        return ("n", float(x))
    if isinstance(x, str):
        return ("s", x)
    if x is None:
        return ("z",)
    if isinstance(x, list):
        return ("l", tuple(canon(i) for i in x))
    if isinstance(x, dict):
        return ("d", frozenset((k, canon(v)) for k, v in x.items()))
    return ("o", repr(x))


def compile_schema(schema: Any, resolve: Callable[[str, str], Any], base: str = "") -> Optional[Check]:
    """``resolve(base, ref)`` returns (schema, its base) for a ``$ref``."""
    if schema is True:
        return lambda x: True
    if schema is False:
        return lambda x: False
    if not isinstance(schema, dict) or set(schema) - _SUPPORTED:
        return None
    base = schema.get("$id", base)
    checks: list[Check] = []
    known_props: set = set(schema.get("properties", {}))
    if "$ref" in schema:
        target, tbase = resolve(base, schema["$ref"])
        sub = compile_schema(target, resolve, tbase)
        if sub is None or not isinstance(target, dict) or "unevaluatedProperties" in target:
            return None
        checks.append(sub)
        known_props |= set(target.get("properties", {}))
    if "type" in schema:
        t = schema["type"]
        if not isinstance(t, str):
            return None
        checks.append(_is_type(t))
    if "const" in schema:
        c = canon(schema["const"])
        checks.append(lambda x: canon(x) == c)
    if "minLength" in schema:
        n = schema["minLength"]
        checks.append(lambda x: not isinstance(x, str) or len(x) >= n)
    if "minItems" in schema:
        n = schema["minItems"]
        checks.append(lambda x: not isinstance(x, list) or len(x) >= n)
    if schema.get("uniqueItems"):
        checks.append(lambda x: not isinstance(x, list) or len({canon(i) for i in x}) == len(x))
    if "required" in schema:
        req = tuple(schema["required"])
        checks.append(lambda x: not isinstance(x, dict) or all(k in x for k in req))
    if "properties" in schema:
        props = {}
        for k, sub_schema in schema["properties"].items():
            sub = compile_schema(sub_schema, resolve, base)
            if sub is None:
                return None
            props[k] = sub
        items = tuple(props.items())

        def check_properties(x, items=items):
            if isinstance(x, dict):
                for k, f in items:
                    if k in x and not f(x[k]):
                        return False
            return True
        checks.append(check_properties)
    if "items" in schema:
        sub = compile_schema(schema["items"], resolve, base)
        if sub is None:
            return None
        def check_items(x, sub=sub):
            if isinstance(x, list):
                for i in x:
                    if not sub(i):
                        return False
            return True
        checks.append(check_items)
    if schema.get("unevaluatedProperties", True) is False:
        allowed = frozenset(known_props)
        checks.append(lambda x: not isinstance(x, dict) or allowed.issuperset(x))
    elif "unevaluatedProperties" in schema:
        return None
    checks_t = tuple(checks)

    def check_all(x):
        for c in checks_t:
            if not c(x):
                return False
        return True
    return check_all
