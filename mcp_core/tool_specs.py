"""Catalog entries as the model's function definitions: compact, complete and always the same.

Every request of a turn carries the tools array again, so its size is paid on every round of
every turn (measured in ``bench/request_size.py``). What is left out carries nothing the model
can use: ``$schema``/``$comment`` keys, schema titles that only repeat a property's (or the
tool's) name, the ``[connection]`` prefix the function name already has, an empty parameter
list (OpenAI reads a missing ``parameters`` as "no arguments"), runs of whitespace. What is
cut is cut at a word, with "…": tool descriptions past ``DESCRIPTION_CHARS`` and parameter
descriptions past ``PARAMETER_DESCRIPTION_CHARS`` — servers that write essays there are rare,
and their first paragraph is what says what the tool does. Every property, type, enum,
default, limit, ``required`` list and ``$ref`` stays: the model can still call every function
with every argument (checked for each tool of the bench's real catalogs).

A spec is built once per catalog entry and reused (the registry keeps entries while the
catalog is unchanged), so the array is byte-identical across the rounds of a turn and across
turns: providers' prompt caching keys on that prefix.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_core.models import CatalogEntry

__all__ = [
    "DESCRIPTION_CHARS",
    "PARAMETER_DESCRIPTION_CHARS",
    "array_chars",
    "compact_schema",
    "function_spec",
    "function_specs",
]

DESCRIPTION_CHARS = 800
"""A tool description's longest form (OpenAI's limit is 1,024; of the bench's 190 real tools,
one is longer)."""
PARAMETER_DESCRIPTION_CHARS = 300
"""A parameter description's longest form."""
SPEC_CACHE_SIZE = 4096
"""Specs kept for reuse (about one per tool of the people active lately)."""

_META_KEYWORDS = frozenset({"$schema", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose value maps names to schemas (the names are data: a property may be called
``title``)."""
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_ROOT_TITLE_SUFFIXES = (
    "",
    "arguments",
    "args",
    "input",
    "inputs",
    "params",
    "parameters",
    "request",
    "schema",
)
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")

_specs: OrderedDict[int, tuple[CatalogEntry, dict[str, Any], int]] = OrderedDict()
"""id(entry) → (entry, its spec, the spec's length as compact JSON)."""
_lengths: dict[int, int] = {}
"""id(spec) → its length, for the specs in ``_specs``."""


def function_specs(entries: Sequence[CatalogEntry]) -> list[dict[str, Any]]:
    """``entries`` as OpenAI function tools, in their order (names are unique and OpenAI-valid)."""
    return [function_spec(entry) for entry in entries]


def function_spec(entry: CatalogEntry) -> dict[str, Any]:
    """One entry's function tool; the same object for the same entry (do not change it)."""
    cached = _specs.get(id(entry))
    if cached is not None and cached[0] is entry:
        _specs.move_to_end(id(entry))
        return cached[1]
    spec = _build(entry)
    chars = _json_chars(spec)
    _specs[id(entry)] = (entry, spec, chars)  # the entry is held, so its id is not reused meanwhile
    _lengths[id(spec)] = chars
    while len(_specs) > SPEC_CACHE_SIZE:
        _, (_, old, _) = _specs.popitem(last=False)
        _lengths.pop(id(old), None)
    return spec


def array_chars(tools: Sequence[Mapping[str, Any]]) -> int:
    """Characters of ``tools`` as the request sends them (compact JSON), from the cached
    lengths of catalog specs; others (``find_tools``) are measured."""
    inner = sum(_lengths.get(id(tool)) or _json_chars(tool) for tool in tools)
    return inner + max(len(tools) - 1, 0) + 2


def _json_chars(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _build(entry: CatalogEntry) -> dict[str, Any]:
    tool = entry.tool
    function: dict[str, Any] = {"name": entry.name}
    description = _clean(tool.description) or _clean(tool.title or "")
    if description:
        function["description"] = _cut(description, DESCRIPTION_CHARS)
    parameters = compact_schema(tool.input_schema or {}, tool_name=tool.name, tool_title=tool.title)
    if not _takes_nothing(parameters):
        function["parameters"] = parameters
    return {"type": "function", "function": function}


def compact_schema(
    schema: Mapping[str, Any], *, tool_name: str = "", tool_title: str | None = None
) -> dict[str, Any]:
    """A tool's input schema without what tells the model nothing (see the module docstring);
    a copy, the stored schema is left as it is. Always an object schema at the root."""
    root = _compact(schema, name=None)
    title = root.get("title")
    if isinstance(title, str) and _root_title_repeats(title, tool_name, tool_title):
        del root["title"]
    root.setdefault("type", "object")
    return root


def _compact(schema: Any, *, name: str | None) -> Any:
    """One (sub)schema compacted; ``name`` is the property it describes, if any."""
    if not isinstance(schema, Mapping):
        return schema  # true/false schemas, or something malformed the validator already judged
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _META_KEYWORDS:
            continue
        if key == "title" and isinstance(value, str) and name is not None and _same_words(value, name):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: _compact(v, name=k if key == "properties" else None) for k, v in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = _compact(value, name=None) if isinstance(value, Mapping) else _items(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_compact(v, name=None) for v in value]
        elif key == "description" and isinstance(value, str):
            out[key] = _cut(_clean(value), PARAMETER_DESCRIPTION_CHARS)
        else:
            out[key] = value  # enums, defaults, examples, limits: data, kept as they are
    return _merged_types(out)


def _merged_types(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{type: string}, {type: null}]`` as ``type: [string, null]``: the same schema
    (Python servers write every optional argument so), in a third of the characters."""
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if "type" in schema or not isinstance(branches, list) or len(branches) < 2:
            continue
        kinds = [b.get("type") for b in branches if isinstance(b, dict) and set(b) == {"type"}]
        if len(kinds) != len(branches) or not all(isinstance(k, str) for k in kinds):
            continue
        if len(set(kinds)) != len(kinds) or (key == "oneOf" and {"number", "integer"} <= set(kinds)):
            continue  # oneOf of overlapping types is not their union
        merged = {k: v for k, v in schema.items() if k != key}
        return {"type": kinds, **merged}
    return schema


def _items(value: Any) -> Any:
    """``items`` as a list of schemas (draft 4–7 tuples) or a boolean."""
    return [_compact(v, name=None) for v in value] if isinstance(value, list) else value


def _takes_nothing(parameters: Mapping[str, Any]) -> bool:
    """An object schema that admits any object and names no property: no arguments."""
    return set(parameters) <= {"type", "properties"} and not parameters.get("properties")


def _same_words(title: str, name: str) -> bool:
    """``Max Results`` for ``max_results`` or ``maxResults``: the title only repeats the name."""
    return _words(title) == _words(name)


def _root_title_repeats(title: str, tool_name: str, tool_title: str | None) -> bool:
    words = _words(title)
    if tool_title and words == _words(tool_title):
        return True
    base = _words(tool_name)
    return any(words == base + suffix for suffix in _ROOT_TITLE_SUFFIXES)


def _words(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def _clean(text: str) -> str:
    """Text with runs of spaces collapsed and at most one blank line in a row."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.strip().splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines))


def _cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, cut at a word with "…" when it is longer."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip() + "…"
