"""A compiled check for the simple inputSchemas most tools have, ahead of jsonschema.

jsonschema validates a two-property object in ~7 µs in a tight loop and ~27 µs inside a real
tool call (cold caches between SDK work): the largest part of ``ToolRegistry.call``'s own
time. Most tools' schemas are an object of typed properties, some required, with
descriptions. For those, ``compile_simple`` builds a plain predicate once per tool.

It is an accelerator, never the judge: it answers True only when jsonschema would accept too
(it understands a small keyword set with jsonschema's own semantics — ``integer`` accepts
``1.0`` and refuses ``True`` — and any other keyword, ``$ref`` or dialect makes it decline,
returning None). A False sends the caller to jsonschema, which gives the verdict and the
error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "compile_simple"]

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
    | {"format"}
)
"""Keywords that never change whether an instance is valid (``format`` only asserts with a
format checker, which the bot's validators do not have)."""
DIALECTS = frozenset(
    {
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    }
)
"""Dialects in which the keywords below mean what the checks say (draft 4's ``integer`` refuses
``1.0``; draft 3's ``required`` is a boolean)."""
_BOUNDS: dict[str, tuple[Check, Callable[[Any, Any], bool]]] = {
    # keyword: (which instances it applies to, whether an instance of those passes)
    "minimum": (lambda v: _is_number(v), lambda v, bound: v >= bound),
    "maximum": (lambda v: _is_number(v), lambda v, bound: v <= bound),
    "exclusiveMinimum": (lambda v: _is_number(v), lambda v, bound: v > bound),
    "exclusiveMaximum": (lambda v: _is_number(v), lambda v, bound: v < bound),
    "minLength": (lambda v: isinstance(v, str), lambda v, bound: len(v) >= bound),
    "maxLength": (lambda v: isinstance(v, str), lambda v, bound: len(v) <= bound),
    "minItems": (lambda v: isinstance(v, list), lambda v, bound: len(v) >= bound),
    "maxItems": (lambda v: isinstance(v, list), lambda v, bound: len(v) <= bound),
}
"""Bounds, each checked only on the instances it applies to (a ``minimum`` says nothing about a
string), with the comparison jsonschema makes (lengths in code points, as ``len``)."""
_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", *_BOUNDS})


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def compile_simple(schema: Any, *, root: bool = True) -> Check | None:
    """A predicate that is True only for instances ``schema`` accepts, or None when the schema
    uses anything beyond type, properties, required, additionalProperties, items, string
    enums, numeric and length bounds, and annotations."""
    if schema is True:
        return lambda _v: True
    if schema is False:
        return lambda _v: False
    if not isinstance(schema, Mapping):
        return None
    keys = set(schema) - ANNOTATIONS
    if root and "$schema" in keys:
        if schema["$schema"] not in DIALECTS:
            return None
        keys.discard("$schema")
    if keys - _KEYWORDS:
        return None
    checks: list[Check] = []
    if "type" in schema:
        kind = _type_check(schema["type"])
        if kind is None:
            return None
        checks.append(kind)
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
        allowed = frozenset(values)
        checks.append(lambda v: isinstance(v, str) and v in allowed)
    for keyword in keys & _BOUNDS.keys():
        bound = schema[keyword]
        if not _is_number(bound):
            return None
        checks.append(_bound_check(*_BOUNDS[keyword], bound))
    if "items" in schema:
        item = compile_simple(schema["items"], root=False)
        if item is None:
            return None
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    if keys & {"properties", "required", "additionalProperties"}:
        members = _object_check(schema)
        if members is None:
            return None
        checks.append(members)
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _bound_check(applies: Check, passes: Callable[[Any, Any], bool], bound: Any) -> Check:
    return lambda v: not applies(v) or passes(v, bound)


def _type_check(kind: Any) -> Check | None:
    if isinstance(kind, str):
        return _TYPES.get(kind)
    if not isinstance(kind, list) or not kind or not all(isinstance(k, str) and k in _TYPES for k in kind):
        return None
    each = [_TYPES[k] for k in kind]
    return lambda v: any(check(v) for check in each)


def _object_check(schema: Mapping[str, Any]) -> Check | None:
    """properties / required / additionalProperties, which apply to objects only."""
    raw_properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra_schema = schema.get("additionalProperties", True)
    if not isinstance(raw_properties, Mapping) or not isinstance(required, list):
        return None
    if not all(isinstance(name, str) for name in required):
        return None
    properties: dict[str, Check] = {}
    for name, sub in raw_properties.items():
        check = compile_simple(sub, root=False)
        if check is None:
            return None
        properties[name] = check
    extra = compile_simple(extra_schema, root=False)
    if extra is None:
        return None
    needed = tuple(required)
    open_ended = extra_schema is True

    def members(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in needed:
            if name not in value:
                return False
        for name, item in value.items():
            check = properties.get(name)
            if check is not None:
                if not check(item):
                    return False
            elif not open_ended and not extra(item):
                return False
        return True

    return members
