"""A stdio MCP server that probes its own sandbox and can break its limits on request.

    python tests/servers/jailed.py

Tools:

* ``whoami(look_for)``: JSON with pid, cwd, HOME, npm_config_cache, its soft rlimits (AS, CPU,
  NOFILE, NPROC; -1 = unlimited), whether the path ``look_for`` exists and what is in it, what
  /tmp holds, and whether it can create a file in ``/``, ``/usr`` and its working directory.
* ``allocate(mb, die)``: allocate and touch ``mb`` MB. Past the address-space limit Python
  raises MemoryError, which comes back as a tool error; with ``die`` the server instead
  aborts the way node and native servers do ("out of memory" on stderr, then SIGABRT).
* ``spin(seconds)``: burn that much CPU time.
* ``env(name)``: one environment variable, or "<unset>".
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

from mcp.server import MCPServer

MB = 1024 * 1024
PAGE = 4096
NPM_CACHE = "npm_config_cache"
"""The variable the bot sets (npm reads npm_config_* in any case; npm itself exports lower case)."""


def _limit(kind: int) -> int:
    soft, _ = resource.getrlimit(kind)
    return -1 if soft == resource.RLIM_INFINITY else soft


def _can_create_in(directory: str) -> bool:
    path = os.path.join(directory, f".jailed-probe-{os.getpid()}")
    try:
        with open(path, "w") as file:
            file.write("x")
    except OSError:
        return False
    os.remove(path)
    return True


def main() -> None:
    mcp = MCPServer("jailed", version="1.0", log_level="WARNING")

    @mcp.tool(structured_output=False)
    def whoami(look_for: str = "") -> str:
        """Report how this process is confined."""
        seen = os.path.exists(look_for) if look_for else False
        return json.dumps(
            {
                "pid": os.getpid(),
                "cwd": os.getcwd(),
                "home": os.environ.get("HOME"),
                "npm_config_cache": os.environ.get(NPM_CACHE),
                "limits": {
                    "as": _limit(resource.RLIMIT_AS),
                    "cpu": _limit(resource.RLIMIT_CPU),
                    "nofile": _limit(resource.RLIMIT_NOFILE),
                    "nproc": _limit(resource.RLIMIT_NPROC),
                },
                "look_for_exists": seen,
                "look_for_entries": sorted(os.listdir(look_for)) if seen and os.path.isdir(look_for) else [],
                "tmp_entries": sorted(os.listdir("/tmp")),
                "tmpdir": tempfile.gettempdir(),
                "can_write": {place: _can_create_in(place) for place in ("/", "/usr", "/tmp", os.getcwd())},
            }
        )

    @mcp.tool(structured_output=False)
    def allocate(mb: int, die: bool = False) -> str:
        """Allocate and touch `mb` MB; with `die`, abort on running out of memory."""
        try:
            block = bytearray(mb * MB)
            for offset in range(0, len(block), PAGE):
                block[offset] = 1
        except MemoryError:
            if not die:
                raise
            print(f"jailed: out of memory allocating {mb} MB", file=sys.stderr, flush=True)
            os.abort()
        return f"allocated {mb} MB"

    @mcp.tool(structured_output=False)
    def spin(seconds: float) -> str:
        """Burn `seconds` of CPU time."""
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        return "spun"

    @mcp.tool(structured_output=False)
    def env(name: str) -> str:
        """Return the value of an environment variable of this process, or "<unset>"."""
        return os.environ.get(name, "<unset>")

    mcp.run("stdio")


if __name__ == "__main__":
    main()
