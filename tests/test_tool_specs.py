"""Compact function definitions: smaller, with every argument of every real tool still there."""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema
import pytest

from bench.tool_selection import load_catalog
from mcp_core.models import CatalogEntry, ToolInfo
from mcp_core.tool_specs import (
    DESCRIPTION_CHARS,
    PARAMETER_DESCRIPTION_CHARS,
    array_chars,
    compact_schema,
    function_spec,
    function_specs,
)

CATALOG = load_catalog()


def entry(
    schema: dict[str, Any], *, name: str = "echo", description: str = "Echo it.", title: str | None = None
):
    tool = ToolInfo(name=name, title=title, description=description, input_schema=schema)
    return CatalogEntry(name=f"toy__{name}", connection_id=uuid.uuid4(), connection_name="toy", tool=tool)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_meta_keys_and_titles_that_repeat_a_name_are_left_out() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "echoArguments",
        "type": "object",
        "properties": {
            "max_results": {"title": "Max Results", "type": "integer", "$comment": "internal"},
            "title": {"title": "Title", "type": "string", "description": "The page's title"},
            "mode": {"title": "How the search matches", "type": "string"},
        },
    }

    out = compact_schema(schema, tool_name="echo")

    assert "$schema" not in out
    assert "title" not in out
    assert out["properties"]["max_results"] == {"type": "integer"}
    assert out["properties"]["title"] == {"type": "string", "description": "The page's title"}  # a name, kept
    assert out["properties"]["mode"]["title"] == "How the search matches"  # says something: kept
    assert schema["properties"]["max_results"]["title"] == "Max Results"  # the stored schema is untouched


def test_an_optional_null_union_becomes_a_type_list_and_overlapping_one_of_stays() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "size": {"oneOf": [{"type": "number"}, {"type": "integer"}]},
            "range": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
        },
    }

    out = compact_schema(schema)["properties"]

    assert out["label"] == {"type": ["string", "null"], "default": None}
    assert out["size"] == schema["properties"]["size"]  # an integer matches both: not a union
    assert out["range"] == schema["properties"]["range"]


def test_long_descriptions_are_cut_at_a_word_and_whitespace_runs_collapse() -> None:
    words = "word " * 400
    spec = function_spec(
        entry(
            {"type": "object", "properties": {"q": {"type": "string", "description": "  many\t\t" + words}}},
            description="First   line.\n\n\n\nSecond " + words,
        )
    )["function"]

    assert len(spec["description"]) <= DESCRIPTION_CHARS
    assert spec["description"].startswith("First line.\n\nSecond word")
    assert spec["description"].endswith("word…")
    parameter = spec["parameters"]["properties"]["q"]["description"]
    assert len(parameter) <= PARAMETER_DESCRIPTION_CHARS
    assert parameter.startswith("many word")


def test_a_tool_without_arguments_declares_no_parameters_and_a_missing_description_uses_the_title() -> None:
    spec = function_spec(entry({"type": "object", "properties": {}}, description="", title="Print env"))

    assert spec == {"type": "function", "function": {"name": "toy__echo", "description": "Print env"}}


def test_the_same_entry_gives_the_same_spec_object_and_its_length_is_the_sent_length() -> None:
    specs = function_specs(CATALOG[:20])

    assert all(a is b for a, b in zip(specs, function_specs(CATALOG[:20]), strict=True))
    assert array_chars(specs) == len(compact(specs))


@pytest.mark.parametrize("server_entry", CATALOG, ids=lambda e: e.name)
def test_every_real_tool_keeps_every_argument_and_accepts_the_same_arguments(
    server_entry: CatalogEntry,
) -> None:
    """All 190 tools of the bench's published catalogs: same properties (recursively), same
    required lists, and a valid schema whose verdict on sample arguments is unchanged."""
    original = server_entry.tool.input_schema
    spec = function_spec(server_entry)["function"]
    parameters = spec.get("parameters", {"type": "object", "properties": {}})

    assert spec["name"] == server_entry.name
    assert _property_paths(parameters) == _property_paths(original)
    assert _required_lists(parameters) == _required_lists(original)
    checker = jsonschema.validators.validator_for(original)  # the server's draft, for both
    checker.check_schema(parameters)
    for sample in _samples(original):
        assert checker(parameters).is_valid(sample) == checker(original).is_valid(sample)


def _property_paths(schema: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    found.add(f"{prefix}/{name}")
                    found |= _property_paths(sub, f"{prefix}/{name}")
            elif isinstance(value, dict | list):
                found |= _property_paths(value, f"{prefix}/{key}")
    elif isinstance(schema, list):
        for n, item in enumerate(schema):
            found |= _property_paths(item, f"{prefix}/{n}")
    return found


def _required_lists(schema: Any) -> list[Any]:
    if isinstance(schema, dict):
        own = [schema["required"]] if isinstance(schema.get("required"), list) else []
        return own + [r for v in schema.values() for r in _required_lists(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _required_lists(v)]
    return []


def _samples(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Arguments a model might send: nothing, every property as a string, a null, a number."""
    properties = schema.get("properties") or {}
    return [{}] + [{name: value for name in properties} for value in ("x", None, 3, True)]
