"""Serve the test MCP servers inside the test process, through the pool's transport seam.

    servers = InProcessServers()
    pool = ConnectionPool(open_transport=servers)
    await call(pool, toy_spec("--pagesize", "3"), "echo", text="hi")   # no child process

A spec that would run tests/servers/toy.py, leaky.py or asking.py over stdio is served by
the same server object (``build_server``) built here, over the SDK's memory streams: the
same JSON-RPC messages, the same handshake eras, without the 0.5–1 s a Python child needs to
start. Any other spec (HTTP, npm servers, hang.py) goes to the real transport, so one pool
can mix both.

What a process would tell, an in-process server tells too:

* ``pid`` answers the *session number* (1, 2, …) instead of the process id, so "same pid"
  still means "same session" and a reopened session still answers a different number.
* ``crash`` ends the server's streams in the middle of the call, as a dying process does
  (the real one calls ``os._exit``, which here would end the test run).
* ``running`` holds the numbers of the sessions whose server is still serving; a session the
  pool closed leaves it (where a process test waits for the process to be gone).
* ``reached`` is set with the text of each ``hold`` call as it starts on the server (where a
  process test waits for the child's stderr line).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
from mcp.client._transport import TransportStreams
from mcp.server import MCPServer
from mcp.shared.memory import create_client_server_memory_streams

from mcp_core._transports import OpenTransport, TransportEvents, open_transport
from mcp_core.models import SessionSpec
from tests.servers import asking, leaky, toy
from tests.support.servers import TOY

__all__ = ["InProcessServers"]

LEAKY = Path(leaky.__file__).resolve()
ASKING = Path(asking.__file__).resolve()


class InProcessServers:
    """An ``OpenTransport`` that serves toy.py, leaky.py and asking.py specs in-process (see the module
    docstring); every other spec goes to ``fallback`` (the real transports by default)."""

    def __init__(self, fallback: OpenTransport = open_transport) -> None:
        self._fallback = fallback
        self._numbers = itertools.count(1)
        self.opened = 0
        """How many in-process sessions were opened."""
        self.running: set[int] = set()
        self.reached: dict[str, anyio.Event] = {}

    def __call__(
        self, spec: SessionSpec, events: TransportEvents
    ) -> AbstractAsyncContextManager[TransportStreams]:
        script = _script_of(spec)
        if script == TOY:
            return self._serve(lambda: _toy(spec.args[1:], spec.env))
        if script == LEAKY:
            return self._serve(leaky.build_server)
        if script == ASKING:
            return self._serve(asking.build_server)
        return self._fallback(spec, events)

    def reached_event(self, text: str) -> anyio.Event:
        """Set when a ``hold`` call with this ``text`` has started on an in-process server."""
        return self.reached.setdefault(text, anyio.Event())

    @asynccontextmanager
    async def _serve(self, build: Callable[[], MCPServer]) -> AsyncIterator[TransportStreams]:
        number = next(self._numbers)
        self.opened += 1
        server = build()
        lowlevel = server._lowlevel_server  # as the SDK's own InMemoryTransport does
        async with (
            create_client_server_memory_streams() as (client_streams, (server_read, server_write)),
            anyio.create_task_group() as tg,
        ):
            serving = anyio.CancelScope()  # the server's own: cancelling it is the process dying
            self._identify(server, number, serving)

            async def run() -> None:
                try:
                    with serving:
                        await lowlevel.run(
                            server_read, server_write, lowlevel.create_initialization_options()
                        )
                finally:
                    self.running.discard(number)
                    with anyio.CancelScope(shield=True):
                        await server_write.aclose()  # the client reads EOF, as from a dead process

            self.running.add(number)
            tg.start_soon(run)
            try:
                yield client_streams
            finally:
                serving.cancel()

    def _identify(self, server: MCPServer, number: int, scope: anyio.CancelScope) -> None:
        """Replace the tools that look at the process with their in-process equivalents."""
        names = {tool.name for tool in server._tool_manager.list_tools()}

        def pid() -> int:
            """Return this server's session number (in-process stand-in for a process id)."""
            return number

        def crash() -> str:
            """End this server's streams in the middle of the call."""
            scope.cancel()
            return "unreachable"

        for tool in (pid, crash):
            if tool.__name__ in names:
                server.remove_tool(tool.__name__)
                server.add_tool(tool, name=tool.__name__, structured_output=False)
        if "hold" in names:
            reached = self.reached_event

            async def hold(text: str, seconds: float) -> str:
                """Tell the test the call reached the server, then sleep."""
                reached(text).set()
                await anyio.sleep(seconds)
                return "held"

            server.remove_tool("hold")
            server.add_tool(hold, name="hold", structured_output=False)


def _script_of(spec: SessionSpec) -> Path | None:
    if spec.transport != "stdio" or spec.command != sys.executable or not spec.args:
        return None
    return Path(spec.args[0]).resolve()


def _toy(flags: tuple[str, ...] | list[str], environ: Mapping[str, str]) -> MCPServer:
    """toy.build_server with the flags of its command line that shape the server in-process,
    and the environment the connection declares (what its child would see of it)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--malformed", action="store_true")
    parser.add_argument("--bad-json-schema", action="store_true")
    parser.add_argument("--pagesize", type=int, default=None)
    args = parser.parse_args(list(flags))
    return toy.build_server(
        malformed=args.malformed,
        bad_json_schema=args.bad_json_schema,
        pagesize=args.pagesize,
        environ=environ,
    )
