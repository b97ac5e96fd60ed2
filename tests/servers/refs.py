"""A stdio MCP server whose tool schemas make references, some of them to another server.

    python tests/servers/refs.py --schema-url http://127.0.0.1:<port>/schema.json

Tools (their schemas are rewritten on the wire by a middleware, after the SDK built them from
the Python signatures, which still validate the arguments server-side):

    remote_input(x)    inputSchema: {"properties": {"x": {"$ref": SCHEMA_URL}}}
    remote_output()    answers structuredContent {"n": 1}; outputSchema refers to SCHEMA_URL
    local_refs(count, label="", unit="m")
                       inputSchema with local references only: a JSON pointer into $defs, an
                       $anchor, and a $defs entry whose $id is <SCHEMA_URL's directory>/unit.json
                       (a reference to that URL resolves inside the schema, fetching nothing)
    local_calls()      how many times local_refs has run
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any, TypedDict
from urllib.parse import urljoin

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext


class Count(TypedDict):
    n: int


def wire_schemas(schema_url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Tool name → the wire fields (inputSchema, outputSchema) that replace the SDK's."""
    unit_url = urljoin(schema_url, "unit.json")
    return {
        "remote_input": {
            "inputSchema": {"type": "object", "properties": {"x": {"$ref": schema_url}}},
        },
        "remote_output": {
            "outputSchema": {"type": "object", "properties": {"n": {"$ref": schema_url}}, "required": ["n"]},
        },
        "local_refs": {
            "inputSchema": {
                "type": "object",
                "$defs": {
                    "count": {"type": "integer", "minimum": 1},
                    "label": {"$anchor": "label", "type": "string", "maxLength": 10},
                    "unit": {"$id": unit_url, "enum": ["m", "s"]},
                },
                "properties": {
                    "count": {"$ref": "#/$defs/count"},
                    "label": {"$ref": "#label"},
                    "unit": {"$ref": unit_url},
                },
                "required": ["count"],
                "additionalProperties": False,
            },
        },
    }


def build_server(schema_url: str) -> MCPServer:
    mcp = MCPServer(
        "refs",
        version="1.0",
        log_level="WARNING",
        middleware=[partial(_rewrite_schemas, replacements=wire_schemas(schema_url))],
    )
    calls: list[int] = []

    @mcp.tool(structured_output=False)
    def remote_input(x: int) -> str:
        """Answer x (its inputSchema refers to another server)."""
        return str(x)

    @mcp.tool()
    def remote_output() -> Count:
        """Answer {"n": 1} (its outputSchema refers to another server)."""
        return {"n": 1}

    @mcp.tool(structured_output=False)
    def local_refs(count: int, label: str = "", unit: str = "m") -> str:
        """Answer the arguments back (its inputSchema has local references only)."""
        calls.append(count)
        return f"{count} {label} {unit}".strip()

    @mcp.tool(structured_output=False)
    def local_calls() -> int:
        """How many times local_refs has run."""
        return len(calls)

    return mcp


async def _rewrite_schemas(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, *, replacements: dict[str, dict[str, Any]]
) -> HandlerResult:
    result = await call_next(ctx)
    if ctx.method == "tools/list" and isinstance(result, dict):
        result["tools"] = [tool | replacements.get(tool["name"], {}) for tool in result.get("tools", [])]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schema-url", required=True)
    build_server(parser.parse_args().schema_url).run("stdio")


if __name__ == "__main__":
    main()
