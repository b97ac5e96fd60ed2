"""The compiled check for simple schemas never accepts what jsonschema refuses.

It only speeds up the common case: whatever it accepts must be valid for jsonschema too (the
registry then skips jsonschema); what it declines or refuses goes to jsonschema. Checked on the
inputSchemas real servers publish (bench/data/catalogs/) and on hand-made edge cases, with
random JSON values and values built to almost fit each schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_core._schemas import no_fetch_validator
from mcp_core._simple_schemas import compile_simple

CATALOGS = Path(__file__).resolve().parents[1] / "bench" / "data" / "catalogs"
REAL = [
    tool["inputSchema"]
    for path in sorted(CATALOGS.glob("*.json"))
    for tool in json.loads(path.read_text())["tools"]
]
EDGES: list[dict[str, Any]] = [
    {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    {"type": "object", "properties": {"x": {"type": "number"}, "b": {"type": "boolean"}}},
    {"type": "object", "properties": {"t": {"type": ["string", "null"]}}, "additionalProperties": False},
    {"type": "object", "properties": {"e": {"enum": ["a", "b"]}}, "additionalProperties": {"type": "string"}},
    {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "integer"}}}},
    {"type": "object", "properties": {"o": {"type": "object", "properties": {"k": False}}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a", "b"]},
    {"type": "object", "properties": {"p": {"type": "integer", "minimum": 1, "maximum": 3}}},
    {"type": "object", "properties": {"p": {"exclusiveMinimum": 0, "exclusiveMaximum": 2.5}}},
    {
        "type": "object",
        "properties": {"s": {"minLength": 1, "maxLength": 2}, "l": {"minItems": 1, "maxItems": 2}},
    },
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


def near(schema: Any) -> st.SearchStrategy[Any]:
    """Values shaped like ``schema``'s objects, each property any JSON value (often the right type)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return JSON_VALUES
    fields = {name: near(sub) | JSON_VALUES for name, sub in schema["properties"].items()}
    return st.fixed_dictionaries({}, optional=fields) | JSON_VALUES


def test_most_real_tool_schemas_compile() -> None:
    compiled = [schema for schema in REAL if compile_simple(schema) is not None]
    assert len(compiled) >= 0.8 * len(REAL), f"{len(compiled)} of {len(REAL)}"


@pytest.mark.parametrize("schema", REAL + EDGES, ids=lambda s: json.dumps(s)[:60])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_compiled_check_accepts_jsonschema_accepts(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    check = compile_simple(schema)
    if check is None:
        return
    value = data.draw(near(schema))
    validator = no_fetch_validator(schema)
    if check(value):
        assert validator.is_valid(value), value
    else:
        assert not validator.is_valid(value), value  # it refuses no more than jsonschema either


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"type": "integer"}, 1.0, True),
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}, 1.0, False),
    ],
)
def test_types_follow_jsonschema(schema: dict[str, Any], value: Any, valid: bool) -> None:
    assert no_fetch_validator(schema).is_valid(value) is valid
    check = compile_simple(schema)
    assert check is None or check(value) is valid


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}},
        {"type": "string", "pattern": "^a"},
        {"type": "integer", "minimum": True},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"enum": [1, True]},
        {"type": "array", "items": [{"type": "string"}]},
        {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
    ],
)
def test_anything_else_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_simple(schema) is None
