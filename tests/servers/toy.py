"""A small, misbehaving-on-demand MCP server for the test suite, built on `mcp.server.MCPServer`.

Run as a script (tests start it as a subprocess):

    python tests/servers/toy.py [--transport stdio|http|sse] [--port N] [--bearer TOKEN]
                                [--require-header NAME=VALUE ...] [--require-query NAME=VALUE ...]
                                [--malformed] [--bad-json-schema] [--pagesize N] [--snooze]

Tools: echo (read-only), slow, crash, huge, env, add (output schema), fail, pid, grow; with
`--snooze` also `snooze(seconds, tag)` (read-only, so no approval: bench/scale.py's tool).

stdio keeps stdout for JSON-RPC only; every log line goes to stderr, starting with
"toy server starting" so tests can prove where a child's stderr ends up.

HTTP transports bind 127.0.0.1 themselves (port 0 = any free port) and print exactly one line
`LISTENING http://127.0.0.1:<port>` to stdout before serving. Streamable HTTP lives at `/mcp`,
legacy HTTP+SSE at `/sse`. `GET /stats` answers `{"tcp_connections": N, "requests": M}`: the
distinct client (host, port) pairs and the requests seen, not counting `/stats` itself and
served without the auth checks. `GET /calls` (likewise) answers `{"slow": N}`: how many `slow`
calls this server started, so a test can prove a call ran exactly once (`snooze` counts its
calls per tag too, as `"snooze:<tag>": N`).

`--require-query NAME=VALUE` makes every request (but `/stats`) answer 401 unless its URL
carries the query parameter NAME with VALUE, as `--require-header` does for headers.

`--malformed` adds a tool whose inputSchema is `{"type": "string"}` to every tools/list result.
`--bad-json-schema` adds one whose inputSchema is an object schema that is not valid JSON Schema
(`"minimum": "zero"`): MCP accepts it, a JSON Schema validator does not.
The SDK validates outbound results, so these tools are appended to the already-serialized wire
dict by a server middleware that runs after that validation. `--pagesize N` pages tools/list the same
way, with the decimal offset of the next page as the cursor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STARTED: Counter[str] = Counter()
"""Calls started per tool (those that count them), served at `GET /calls`."""
CRASH_EXIT_CODE = 3
GRACEFUL_SHUTDOWN_TIMEOUT_S = 2
MALFORMED_TOOL: dict[str, Any] = {
    "name": "bad_schema",
    "description": "A tool whose inputSchema is not an object schema (off-spec on purpose).",
    "inputSchema": {"type": "string"},
}
BAD_JSON_SCHEMA_TOOL: dict[str, Any] = {
    "name": "bad_json_schema",
    "description": "A tool whose object inputSchema breaks JSON Schema itself (minimum must be a number).",
    "inputSchema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}},
}


def build_server(
    *,
    malformed: bool = False,
    bad_json_schema: bool = False,
    pagesize: int | None = None,
    environ: Mapping[str, str] | None = None,
    snooze: bool = False,
) -> MCPServer:
    """Build the toy MCPServer; `malformed`, `bad_json_schema` and `pagesize` shape every tools/list.
    `snooze` adds that tool (off by default, so the toy's tool list stays what tests expect).

    `environ` is what the `env` tool reads (the process environment when None): served in the
    test process, the server sees the environment its connection would give a child.
    """
    environment = os.environ if environ is None else environ
    extra = [*([MALFORMED_TOOL] if malformed else []), *([BAD_JSON_SCHEMA_TOOL] if bad_json_schema else [])]
    middleware = []
    if extra or pagesize:
        middleware.append(partial(_reshape_tool_listing, extra=extra, pagesize=pagesize))
    mcp = MCPServer("toy", version="1.0", log_level="WARNING", middleware=middleware)
    lowlevel = mcp._lowlevel_server
    # Advertise tools.listChanged on handshake-era sessions, since `grow` sends that notification.
    lowlevel.create_initialization_options = partial(  # type: ignore[method-assign]
        type(lowlevel).create_initialization_options, lowlevel, NotificationOptions(tools_changed=True)
    )

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool(structured_output=False)
    async def slow(seconds: float) -> str:
        """Sleep for the given number of seconds, then answer "done"."""
        STARTED["slow"] += 1
        await anyio.sleep(seconds)
        return "done"

    @mcp.tool(structured_output=False)
    def crash() -> str:
        """Kill this server process in the middle of the call."""
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)

    @mcp.tool(structured_output=False)
    def huge(size: int) -> str:
        """Return `size` characters."""
        return "x" * size

    @mcp.tool(structured_output=False)
    def env(name: str) -> str:
        """Return the value of an environment variable of this process, or "<unset>"."""
        return environment.get(name, "<unset>")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers (structured output: {"result": a + b})."""
        return a + b

    @mcp.tool(structured_output=False)
    def fail() -> str:
        """Always raise, so the client gets an is_error result."""
        raise ToolError("toy tool failed on purpose")

    @mcp.tool(structured_output=False)
    def pid() -> int:
        """Return this server's process id."""
        return os.getpid()

    grown: list[str] = []

    @mcp.tool(structured_output=False)
    async def grow(ctx: Context) -> str:
        """Register a new tool `grown_<n>` and announce that the tool list changed."""
        name = f"grown_{len(grown) + 1}"
        grown.append(name)

        def grown_tool() -> str:
            return name

        mcp.add_tool(grown_tool, name=name, description=f"Added by grow(): {name}.", structured_output=False)
        if ctx.request_context.protocol_version == "2026-07-28":
            await ctx.notify_tools_changed()  # subscriptions/listen streams
        else:
            await ctx.request_context.session.send_tool_list_changed()
        return name

    if snooze:

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
        async def snooze(seconds: float, tag: str) -> str:
            """Sleep for the given number of seconds, then answer "rested <tag>"."""
            STARTED["snooze"] += 1
            STARTED[f"snooze:{tag}"] += 1
            await anyio.sleep(seconds)
            return f"rested {tag}"

    return mcp


async def _reshape_tool_listing(
    ctx: ServerRequestContext[Any, Any],
    call_next: CallNext,
    *,
    extra: list[dict[str, Any]],
    pagesize: int | None,
) -> HandlerResult:
    """Server middleware: append the `extra` wire-form tools and/or page the tools/list result."""
    result = await call_next(ctx)
    if ctx.method != "tools/list" or not isinstance(result, dict):
        return result
    tools = [*result.get("tools", []), *extra]
    result = {key: value for key, value in result.items() if key != "nextCursor"}
    if pagesize:
        start = int((ctx.params or {}).get("cursor") or 0)
        end = start + pagesize
        if end < len(tools):
            result["nextCursor"] = str(end)
        tools = tools[start:end]
    result["tools"] = tools
    return result


class Gate:
    """ASGI wrapper: counts TCP clients and requests, serves /stats, enforces required headers
    and query parameters."""

    def __init__(
        self, app: ASGIApp, required_headers: dict[str, str], required_query: dict[str, str] | None = None
    ) -> None:
        self.app = app
        self.required = {name.lower().encode(): value.encode() for name, value in required_headers.items()}
        self.required_query = dict(required_query or {})
        self.clients: set[tuple[str, int]] = set()
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/stats":
            body = {"tcp_connections": len(self.clients), "requests": self.requests}
            await _respond(send, 200, json.dumps(body).encode(), b"application/json")
            return
        if scope["path"] == "/calls":
            await _respond(send, 200, json.dumps(dict(STARTED)).encode(), b"application/json")
            return
        if scope.get("client"):
            self.clients.add(tuple(scope["client"]))
        self.requests += 1
        headers = dict(scope["headers"])
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if any(headers.get(name) != value for name, value in self.required.items()) or any(
            query.get(name) != value for name, value in self.required_query.items()
        ):
            await _respond(send, 401, b"unauthorized", b"text/plain", [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_http(
    mcp: MCPServer,
    transport: str,
    port: int,
    required_headers: dict[str, str],
    required_query: dict[str, str] | None = None,
) -> None:
    """Bind 127.0.0.1:port, announce the port on stdout, then serve until SIGTERM/SIGINT."""
    app = mcp.streamable_http_app() if transport == "http" else mcp.sse_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        Gate(app, required_headers, required_query),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bearer", metavar="TOKEN", help="require Authorization: Bearer TOKEN (HTTP only)")
    parser.add_argument("--require-header", type=_pair, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--require-query", type=_pair, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--malformed", action="store_true", help="add an off-spec tool to tools/list")
    parser.add_argument(
        "--bad-json-schema", action="store_true", help="add a tool whose inputSchema is invalid JSON Schema"
    )
    parser.add_argument("--pagesize", type=int, default=None, help="page tools/list N tools at a time")
    parser.add_argument("--snooze", action="store_true", help="add the read-only snooze(seconds, tag) tool")
    args = parser.parse_args(argv)

    print("toy server starting", file=sys.stderr, flush=True)
    mcp = build_server(
        malformed=args.malformed,
        bad_json_schema=args.bad_json_schema,
        pagesize=args.pagesize,
        snooze=args.snooze,
    )
    if args.transport == "stdio":
        mcp.run("stdio")
        return
    required = dict(args.require_header)
    if args.bearer:
        required["Authorization"] = f"Bearer {args.bearer}"
    serve_http(mcp, args.transport, args.port, required, dict(args.require_query))


if __name__ == "__main__":
    main()
