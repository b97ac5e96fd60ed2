"""The tool catalog's pieces: OpenAI-valid unique function names, which discovered tools are
usable, and argument validation against a tool's inputSchema (validators cached per tool).

Kept apart from the registry because the catalog is what grows next (ranking, selection,
switched-off tools) while connecting and calling stay as they are.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as types
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from referencing.exceptions import Unresolvable

from mcp_core import errors
from mcp_core._schemas import no_fetch_validator, unresolved_references, validator_class
from mcp_core._simple_schemas import Check, compile_simple
from mcp_core.models import CatalogEntry, ToolInfo

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_FUNCTION_NAME",
    "ArgumentValidators",
    "function_name",
    "tool_info",
    "usable_tools",
    "without_optional_nulls",
]

MAX_FUNCTION_NAME = 64
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def function_name(connection: str, tool: str, taken: set[str]) -> str:
    """A unique, OpenAI-valid function name for ``tool`` of ``connection``."""
    base = _INVALID_NAME_CHARS.sub("_", f"{connection}__{tool}")
    digest = hashlib.sha1(f"{connection}\0{tool}".encode()).hexdigest()[:8]
    name = base if len(base) <= MAX_FUNCTION_NAME else _with_suffix(base, digest)
    counter = 1
    while name in taken:
        name = _with_suffix(base, f"{digest}{counter}")
        counter += 1
    return name


def _with_suffix(base: str, suffix: str) -> str:
    return f"{base[: MAX_FUNCTION_NAME - len(suffix) - 1]}_{suffix}"


def tool_info(tool: types.Tool) -> ToolInfo:
    hints = tool.annotations
    return ToolInfo(
        name=tool.name,
        title=tool.title or (hints.title if hints else None),
        description=tool.description or "",
        input_schema=tool.input_schema,
        read_only=hints.read_only_hint if hints else None,
        destructive=hints.destructive_hint if hints else None,
        idempotent=hints.idempotent_hint if hints else None,
        open_world=hints.open_world_hint if hints else None,
        task_support=tool.execution.task_support if tool.execution else None,
    )


def usable_tools(tools: Sequence[types.Tool]) -> tuple[list[ToolInfo], list[tuple[str, str]]]:
    """Keep tools whose inputSchema is a valid JSON Schema with every reference inside it (the
    bot fetches no schema, so a tool that needs one could never be validated); first of
    duplicate names wins."""
    kept: dict[str, ToolInfo] = {}
    skipped: list[tuple[str, str]] = []
    for tool in tools:
        if tool.name in kept:
            skipped.append((tool.name, "duplicate tool name"))
            continue
        try:
            validator_class(tool.input_schema).check_schema(tool.input_schema)
        except SchemaError as exc:
            skipped.append((tool.name, f"invalid inputSchema: {exc.message[:150]}"))
            continue
        if unresolved := unresolved_references(tool.input_schema):
            skipped.append((tool.name, unresolved[0].reason("inputSchema")[:200]))
            continue
        kept[tool.name] = tool_info(tool)
    for name, why in skipped:
        logger.warning("skipped tool %r: %s", name, why)
    return list(kept.values()), skipped


class ArgumentValidators:
    """Validators of tools' inputSchemas, built once per (connection, tool) and reused: a
    compiled check for simple schemas (``mcp_core._simple_schemas``), which accepts most calls
    in a fraction of jsonschema's time, and jsonschema for everything it does not accept."""

    def __init__(self) -> None:
        self._validators: dict[tuple[uuid.UUID, str], tuple[Mapping[str, Any], Check | None, Validator]] = {}
        """(connection, tool) → the schema they were built from, and its two checks."""

    def check(self, entry: CatalogEntry, arguments: dict[str, Any]) -> None:
        """Raises:
        ToolArgumentsError: the arguments do not match (up to five problems, by path).
        ServerProtocolError: the schema refers to something that cannot be resolved.
        """
        key = (entry.connection_id, entry.tool.name)
        schema = entry.tool.input_schema  # a stored tool may predate the discovery checks
        compiled = self._validators.get(key)
        if compiled is None or compiled[0] is not schema:  # new, or from a rebuilt catalog
            if compiled is None or compiled[0] != schema:  # rediscovered (by any process) anew
                compiled = (schema, compile_simple(schema), no_fetch_validator(schema))
            else:
                compiled = (schema, *compiled[1:])
            self._validators[key] = compiled
        _, fast, validator = compiled
        if fast is not None and fast(arguments):
            return
        try:
            if validator.is_valid(arguments):  # the fast path; errors are listed only on failure
                return
            problems = [
                f"{'/'.join(map(str, e.absolute_path)) or '(arguments)'}: {e.message[:200]}"
                for e in list(validator.iter_errors(arguments))[:5]
            ]
        except Unresolvable as exc:
            raise errors.ServerProtocolError(
                entry.connection_name,
                f"{entry.tool.name} has an inputSchema reference that cannot be resolved.",
            ) from exc
        raise errors.ToolArgumentsError(entry.name, problems)

    def forget(self, connection_id: uuid.UUID) -> None:
        """Drop a connection's validators (its tools changed, or it is gone)."""
        for key in [k for k in self._validators if k[0] == connection_id]:
            del self._validators[key]


def without_optional_nulls(schema: Mapping[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` without the ``null``s a model sent for optional properties that do not take
    null (models often fill every declared property, and the schema would refuse the call).

    Only top-level properties the schema declares, does not require, and whose own schema says
    nothing of null are dropped: an explicit null the schema allows, or one the server requires,
    is passed on and judged by validation as before.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or None not in arguments.values():
        return arguments
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()

    def dropped(key: str, value: Any) -> bool:
        optional = key in properties and key not in required
        return value is None and optional and not _takes_null(properties[key])

    return {key: value for key, value in arguments.items() if not dropped(key, value)}


def _takes_null(schema: object) -> bool:
    """Whether a property's schema mentions null anywhere a null could match (type, enum, const,
    or an anyOf/oneOf branch): then the null is meant and kept."""
    if not isinstance(schema, Mapping):
        return schema is True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in (schema.get("enum") or ()) or ("const" in schema and schema["const"] is None):
        return True
    return any(_takes_null(branch) for key in ("anyOf", "oneOf") for branch in schema.get(key) or ())
