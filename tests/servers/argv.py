"""A stdio MCP server that reports how it was started, for the run-card safety tests.

    python tests/servers/argv.py [ANY ARGS ...]

Tools: ``argv`` (JSON list of the arguments after the script path) and ``env`` (one variable's
value, or "<unset>"). It never parses its arguments, so they come back exactly as received.
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server import MCPServer


def main() -> None:
    mcp = MCPServer("argv", version="1.0", log_level="WARNING")

    @mcp.tool(structured_output=False)
    def argv() -> str:
        """Return this process's arguments (after the script path) as a JSON list."""
        return json.dumps(sys.argv[1:])

    @mcp.tool(structured_output=False)
    def env(name: str) -> str:
        """Return the value of an environment variable of this process, or "<unset>"."""
        return os.environ.get(name, "<unset>")

    mcp.run("stdio")


if __name__ == "__main__":
    main()
