"""A read-stream wrapper that drops malformed tools from ``tools/list`` answers.

mcp 2.x validates every inbound result strictly: one tool whose ``inputSchema`` lacks
``"type": "object"`` makes ``list_tools()`` raise, and every later ``call_tool()`` re-lists
and raises too, even for good tools. Filtering the raw JSON-RPC response before the session
sees it keeps the server's good tools usable; each dropped tool is reported once.

An ``outputSchema`` the bot cannot use — not valid JSON Schema, or referring to documents
outside itself — is removed and the tool kept. The SDK checks ``structuredContent`` against
it after every call; mcp 2.3 resolves references with an empty registry (no fetch), but then
fails each call of that tool *after it ran*. Without the schema the result is passed on
unchecked, which is how the bot treats every result anyway. Removing it here also keeps the
no-fetch guarantee independent of the SDK version (see ``mcp_core._schemas``).

A 2026-07-28 result without ``resultType`` is read as ``"complete"``, as SEP-2322 has clients
assume (mcp 2.3 rejects it as invalid instead).

The wrapper also notices end-of-stream, which is how the pool learns that a stdio server
died while idle (the SDK's dispatcher only marks itself closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from jsonschema.exceptions import SchemaError
from mcp.shared.message import SessionMessage
from mcp_types.methods import validate_server_result
from pydantic import ValidationError

from mcp_core._schemas import unresolved_references, validator_class

logger = logging.getLogger(__name__)

__all__ = ["SanitizingReadStream"]

_FALLBACK_VERSION = "2025-11-25"
_RESULT_TYPE_VERSIONS = frozenset({"2026-07-28"})
"""Protocol versions whose results carry ``resultType`` (``complete`` when absent)."""


class SanitizingReadStream:
    """Wraps a transport's read stream (``ReadStream[SessionMessage | Exception]``)."""

    def __init__(
        self,
        inner: Any,
        *,
        protocol_version: Callable[[], str | None],
        on_dropped_tool: Callable[[str, str], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._version = protocol_version
        self._on_dropped_tool = on_dropped_tool
        self._on_eof = on_eof
        self.last_context = None

    async def receive(self) -> SessionMessage | Exception:
        try:
            item = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_eof()
            raise
        self.last_context = getattr(self._inner, "last_context", None)
        if isinstance(item, SessionMessage):
            message = item.message
            if isinstance(message, types.JSONRPCResponse) and _looks_like_tool_listing(message.result):
                message.result["tools"] = self._keep_valid(message.result)
            if (
                isinstance(message, types.JSONRPCResponse)
                and isinstance(message.result, dict)
                and "resultType" not in message.result
                and self._version() in _RESULT_TYPE_VERSIONS
            ):
                message.result["resultType"] = "complete"
        return item

    def _keep_valid(self, result: dict[str, Any]) -> list[Any]:
        version = self._version() or _FALLBACK_VERSION
        kept = []
        for tool in result["tools"]:
            problem = _tool_problem(tool, result, version)
            if problem is None:
                _drop_unusable_output_schema(tool)
                kept.append(tool)
            else:
                name = tool.get("name") if isinstance(tool, dict) else None
                self._on_dropped_tool(str(name or "<unnamed>"), problem)
        return kept

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> SanitizingReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> SanitizingReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _looks_like_tool_listing(result: object) -> bool:
    return isinstance(result, dict) and isinstance(result.get("tools"), list) and "content" not in result


def _drop_unusable_output_schema(tool: dict[str, Any]) -> None:
    schema = tool.get("outputSchema")
    if not isinstance(schema, dict):
        return
    try:
        validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        why = f"invalid outputSchema: {exc.message[:150]}"
    else:
        unresolved = unresolved_references(schema)
        if not unresolved:
            return
        why = unresolved[0].reason("outputSchema")[:200]
    del tool["outputSchema"]
    logger.warning("tool %r: ignoring its outputSchema (%s)", tool.get("name"), why)


def _tool_problem(tool: object, result: dict[str, Any], version: str) -> str | None:
    """Return why the session would reject this one tool, or None if it is valid."""
    if not isinstance(tool, dict):
        return "not an object"
    try:
        types.Tool.model_validate(tool, by_name=False)
        validate_server_result("tools/list", version, {**result, "tools": [tool]})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(
            str(p) for p in first["loc"] if not isinstance(p, int) and p not in ("tools", "Tool")
        )
        return f"{where or 'tool'}: {first['msg']}"[:200]
    except (KeyError, ValueError):
        return None  # a version this SDK has no surface for: the model check above is all we can do
    return None
