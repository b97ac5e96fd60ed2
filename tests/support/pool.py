"""Build `SessionSpec`s for the test servers and wait on what a `ConnectionPool` does.

The `pool` and `pools` fixtures are in tests/support/pool_fixtures.py.

    spec = toy_spec("--pagesize", "3", mode="auto")
    result = await call(pool, spec, "echo", text="hi")
    await wait_until(lambda: pool.live_count == 0, what="the reaper closed the session")
    await wait_process_gone(pid)

Specs use small timeouts (connect 5 s, call 3 s) so that a failure shows up fast.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types as types
import psutil
import pytest

from mcp_core._transports import OpenTransport
from mcp_core.connections import CLOSE_ALL_TIMEOUT_S, ConnectionPool, SpecFactory
from mcp_core.models import SessionSpec
from tests.support.servers import HANG, TOY, child_processes

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "LEAKY",
    "WAIT_S",
    "Mode",
    "Pools",
    "RemoteTransport",
    "call",
    "call_pid",
    "hang_spec",
    "http_spec",
    "leaky_spec",
    "logged_lines",
    "opener",
    "refused_url",
    "running_children",
    "session_spec",
    "stdio_spec",
    "text_of",
    "toy_spec",
    "wait_process_gone",
    "wait_until",
]

LEAKY = Path(__file__).resolve().parents[1] / "servers" / "leaky.py"
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 3.0
WAIT_S = 10.0
"""Deadline for waiting on something the pool does in the background (reaping, closing)."""
POLL_S = 0.01

Mode = Literal["auto", "legacy"]
RemoteTransport = Literal["sse", "streamable_http"]


def session_spec(
    *,
    name: str,
    mode: Mode = "legacy",
    secret_values: Sequence[str] = (),
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    call_timeout_s: float = CALL_TIMEOUT_S,
    **fields: Any,
) -> SessionSpec:
    """A spec with a fresh connection id and the small test timeouts; `fields` say where to connect."""
    return SessionSpec(
        connection_id=uuid.uuid4(),
        name=name,
        protocol_mode=mode,
        secret_values=tuple(secret_values),
        connect_timeout_s=connect_timeout_s,
        call_timeout_s=call_timeout_s,
        **fields,
    )


def stdio_spec(
    command: str, *args: str, name: str = "toy", env: dict[str, str] | None = None, **options: Any
) -> SessionSpec:
    """A stdio spec; `options` as for `session_spec` (mode, secret_values, timeouts)."""
    return session_spec(
        transport="stdio", command=command, args=tuple(args), env=env or {}, name=name, **options
    )


def toy_spec(*flags: str, **options: Any) -> SessionSpec:
    """tests/servers/toy.py over stdio with the given flags."""
    return stdio_spec(sys.executable, str(TOY), *flags, **options)


def hang_spec(*flags: str, **options: Any) -> SessionSpec:
    """tests/servers/hang.py: a stdio server that never answers."""
    return stdio_spec(sys.executable, str(HANG), *flags, **{"name": "hang", **options})


def leaky_spec(**options: Any) -> SessionSpec:
    """tests/servers/leaky.py: prints secrets to stderr on purpose."""
    return stdio_spec(sys.executable, str(LEAKY), **{"name": "leaky", **options})


def http_spec(
    url: str,
    *,
    transport: RemoteTransport = "streamable_http",
    name: str = "remote",
    headers: dict[str, str] | None = None,
    **options: Any,
) -> SessionSpec:
    """A remote spec (streamable HTTP or legacy SSE); `options` as for `session_spec`."""
    return session_spec(transport=transport, url=url, headers=headers or {}, name=name, **options)


def opener(spec: SessionSpec) -> SpecFactory:
    """The `open_spec` callback the pool awaits when it needs to open `spec`'s session."""

    async def open_spec() -> SessionSpec:
        return spec

    return open_spec


async def call(
    pool: ConnectionPool, spec: SessionSpec, tool: str, *, timeout_s: float | None = None, **arguments: Any
) -> types.CallToolResult:
    """`pool.call_tool` for `spec`, bounded by an outer deadline so a pool bug cannot hang the test."""
    deadline = spec.connect_timeout_s + (timeout_s or spec.call_timeout_s) + WAIT_S
    with anyio.fail_after(deadline):
        return await pool.call_tool(spec.connection_id, opener(spec), tool, arguments, timeout_s=timeout_s)


async def call_pid(pool: ConnectionPool, spec: SessionSpec) -> int:
    """The process id of the toy server behind `spec`'s session (opening it if need be)."""
    return int(text_of(await call(pool, spec, "pid")))


def logged_lines(caplog: pytest.LogCaptureFixture, connection: str) -> list[str]:
    """Lines of a stdio child's stderr that the pool logged for the named connection."""
    return [r.getMessage() for r in caplog.records if r.name == f"mcp_core.server.{connection}"]


def text_of(result: types.CallToolResult) -> str:
    """The text of a result that holds exactly one text block."""
    [block] = result.content
    assert isinstance(block, types.TextContent), block
    return block.text


async def wait_until(predicate: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `predicate` until it holds; fail with `what` after `timeout_s`."""
    try:
        with anyio.fail_after(timeout_s):
            # Polling is the only way: neither the pool nor the OS offers an event for these.
            while not predicate():  # noqa: ASYNC110
                await anyio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s} s: {what}") from None


def running_children(script: Path) -> list[psutil.Process]:
    """Descendants of this test process whose command line runs `script` (e.g. HANG)."""
    found = []
    for process in child_processes():
        try:
            if str(script) in process.cmdline():
                found.append(process)
        except psutil.Error:  # exited (or became unreadable) since it was listed
            continue
    return found


async def wait_process_gone(pid: int, *, timeout_s: float = WAIT_S) -> None:
    """Wait until process `pid` has exited and been reaped (a zombie still counts as present)."""
    await wait_until(lambda: not psutil.pid_exists(pid), what=f"process {pid} is gone", timeout_s=timeout_s)


@contextmanager
def refused_url(path: str = "/mcp") -> Iterator[str]:
    """A loopback URL whose port is bound but not listening, so every connect is refused at once.

    Holding the socket keeps another process from taking the port while the test runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


class Pools:
    """Makes `ConnectionPool`s for one test and closes every one of them when it ends."""

    def __init__(self) -> None:
        self._made: list[ConnectionPool] = []

    def __call__(
        self,
        *,
        idle_timeout_s: float = 60.0,
        max_sessions: int = 10,
        open_transport: OpenTransport | None = None,
        **options: Any,
    ) -> ConnectionPool:
        pool = ConnectionPool(
            idle_timeout_s=idle_timeout_s, max_sessions=max_sessions, open_transport=open_transport, **options
        )
        self._made.append(pool)
        return pool

    async def aclose(self) -> None:
        with anyio.fail_after(CLOSE_ALL_TIMEOUT_S + WAIT_S):
            for pool in self._made:
                await pool.aclose()

    async def __aenter__(self) -> Pools:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
