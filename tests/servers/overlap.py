"""An MCP server (stdio) that shows whether its tool calls overlap, for the agent's concurrency tests.

    python tests/servers/overlap.py

Tools:

* ``meet(group, parties, wait_s=5)`` (read-only): answers ``met <parties>`` once ``parties``
  calls of ``group`` are in flight at the same time. Calls made one after another never get
  there: each gives up after ``wait_s`` and reports the most that were ever in flight together. That
  makes concurrency visible without measuring time.
* ``alone(label)`` (not marked read-only, so it may write): answers how many other calls
  of this server were in flight when it started and when it ended (``<label>: 0 then 0``
  for a call that ran alone); it yields to the event loop in between, so a call started
  meanwhile would be seen.
* ``snooze(seconds)`` (read-only): sleeps, then answers ``rested`` (for the bench).
* ``hold(seconds)`` (read-only): sleeps like ``snooze``, but counts the calls the client
  cancelled (``notifications/cancelled``) on the way; ``cancellations()`` answers that count.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True)
YIELDS = 20
"""Event-loop turns ``alone`` gives other requests to start before it looks again."""


def build_server() -> MCPServer:
    mcp = MCPServer("overlap", version="1.0", log_level="WARNING")
    in_flight = 0
    groups: dict[str, tuple[list[int], anyio.Event]] = {}
    """Per group: [calls waiting now, most ever waiting together], and whether they met."""

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def meet(group: str, parties: int, wait_s: float = 5.0) -> str:
        """Answer once `parties` calls of `group` are in flight together."""
        nonlocal in_flight
        in_flight += 1
        try:
            waiting, met = groups.setdefault(group, ([0, 0], anyio.Event()))
            waiting[0] += 1
            waiting[1] = max(waiting)
            try:
                if waiting[0] >= parties:
                    met.set()
                with anyio.move_on_after(wait_s):
                    await met.wait()
                if not met.is_set():
                    most = f"at most {waiting[1]} of {parties} calls of {group}"
                    raise ToolError(f"{most} were in flight together")
                return f"met {parties}"
            finally:
                waiting[0] -= 1
        finally:
            in_flight -= 1

    @mcp.tool(structured_output=False)
    async def alone(label: str) -> str:
        """Say how many other calls were in flight when this one started and ended."""
        nonlocal in_flight
        at_start = in_flight
        in_flight += 1
        try:
            for _ in range(YIELDS):
                await anyio.lowlevel.checkpoint()
            return f"{label}: {at_start} then {in_flight - 1}"
        finally:
            in_flight -= 1

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def snooze(seconds: float) -> str:
        """Sleep for `seconds`, then answer "rested"."""
        await anyio.sleep(seconds)
        return "rested"

    cancelled = held = 0

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def hold(seconds: float) -> str:
        """Sleep for `seconds`, then answer "held"; a cancelled call is counted."""
        nonlocal cancelled, held
        held += 1
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise
        return "held"

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def cancellations() -> str:
        """How many `hold` calls the client cancelled."""
        return str(cancelled)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def holds() -> str:
        """How many `hold` calls reached this server."""
        return str(held)

    return mcp


if __name__ == "__main__":
    build_server().run("stdio")
