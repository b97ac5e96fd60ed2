"""A stdio MCP server that leaks on purpose: for tests of stderr logging, secret scrubbing and
calls that must be seen to have reached the server.

    python tests/servers/leaky.py

At start it prints "leaky server starting with token <LEAKY_TOKEN>" to stderr, so a secret
passed in its environment reaches the client's log unless the client scrubs it.

Tools:
    shout(text, pad=0)   write "x" * pad + text as one stderr line, then answer "ok"
    hold(text, seconds)  write text as one stderr line, then sleep, then answer "held"
    reject(message, code=-32000)   answer with a JSON-RPC error with this code and message
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp import MCPError
from mcp.server import MCPServer

SERVER_ERROR = -32000
"""The first code of JSON-RPC's implementation-defined server-error range."""


def build_server() -> MCPServer:
    mcp = MCPServer("leaky", version="1.0", log_level="WARNING")

    @mcp.tool(structured_output=False)
    def shout(text: str, pad: int = 0) -> str:
        """Write one line to stderr: `pad` filler characters, then the text."""
        sys.stderr.write("x" * pad + text + "\n")
        sys.stderr.flush()
        return "ok"

    @mcp.tool(structured_output=False)
    async def hold(text: str, seconds: float) -> str:
        """Announce the call on stderr (so a test knows it reached the server), then sleep."""
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        await anyio.sleep(seconds)
        return "held"

    @mcp.tool(structured_output=False)
    def reject(message: str, code: int = SERVER_ERROR) -> str:
        """Fail with a JSON-RPC error (not an is_error result) with the given code and message."""
        raise MCPError(code, message)

    return mcp


def main() -> None:
    print(
        f"leaky server starting with token {os.environ.get('LEAKY_TOKEN', '<unset>')}",
        file=sys.stderr,
        flush=True,
    )
    build_server().run("stdio")


if __name__ == "__main__":
    main()
