"""Turn a ``SessionSpec`` into an mcp transport: stdio, legacy SSE or streamable HTTP.

``open_transport`` is the real implementation of the pool's ``OpenTransport`` seam: an async
context manager that yields the (read, write) stream pair and closes the transport on exit.
Tests pass the pool another one (an in-process server over memory streams).

Headers (bearer tokens, API keys) go on every HTTP transport. One SSL context is shared by
every HTTP client because building a fresh truststore context costs 30–60 ms per client.
A stdio child's stderr is piped into our log instead of the bot's terminal, line by line, and
the child runs in the pool's ``mcp_core.sandbox.StdioSandbox`` (limits, private directory,
bubblewrap where it works).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import truststore
from mcp import StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_core.models import SessionSpec
from mcp_core.sandbox import ExitWatch, StdioLaunch, StdioSandbox

logger = logging.getLogger(__name__)

__all__ = ["OpenTransport", "TransportEvents", "open_transport", "shared_ssl_context"]

SSE_READ_TIMEOUT_S = 300.0
_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s#\"']*")


class _RedactUrlQueries(logging.Filter):
    """httpx2 logs every request URL at INFO and mcp logs endpoints at DEBUG; a URL's query may
    carry an API key (run cards map secrets into query parameters), so it never reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _URL_QUERY.sub(r"\1?[redacted]", message), None
        return True


for _name in ("httpx2", "mcp.client.streamable_http", "mcp.client.sse"):
    logging.getLogger(_name).addFilter(_RedactUrlQueries())
STDERR_LINE_MAX_CHARS = 2000
STDERR_DRAIN_S = 0.5


@dataclass(frozen=True)
class TransportEvents:
    """What the pool wants to hear from a transport while it runs; a transport that has no
    such event (an in-process server has no HTTP status) never calls the hook."""

    scrub: Callable[[str], str] = str
    """Replaces the connection's secrets in text the transport logs (a stdio child's stderr)."""
    on_http_status: Callable[[int], None] | None = None
    """Called with the status of every HTTP response, so a refusal is decided on the status
    (the SDK turns a 401 into an MCPError whose message does not carry it)."""
    on_sandbox_stop: Callable[[str], None] | None = None
    """Called with the reason when the stdio sandbox stopped the server (a limit), before its
    read stream ends."""


OpenTransport = Callable[[SessionSpec, TransportEvents], AbstractAsyncContextManager[TransportStreams]]
"""The pool's transport seam: a spec and the events to report, to an async context manager
yielding the (read, write) streams of an mcp session."""


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The OS trust store, built once per process."""
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _http_client(
    spec: SessionSpec,
    on_status: Callable[[int], None] | None,
    headers: dict[str, str] | None = None,
    auth: Any = None,
) -> httpx2.AsyncClient:
    timeout = httpx2.Timeout(spec.connect_timeout_s, read=max(SSE_READ_TIMEOUT_S, spec.call_timeout_s + 5))
    hooks: dict[str, list[Callable[..., Any]]] = {}
    if on_status is not None:

        async def record(response: httpx2.Response) -> None:
            on_status(response.status_code)

        hooks["response"] = [record]
    auth = auth or spec.http_auth
    check_request = getattr(auth, "check_request", None)
    if check_request is not None:  # OAuth fetches URLs a server named: the network policy applies
        hooks["request"] = [check_request]
    return httpx2.AsyncClient(
        headers={**spec.headers, **(headers or {})},
        timeout=timeout,
        auth=auth,
        verify=shared_ssl_context(),
        event_hooks=hooks,
    )


@asynccontextmanager
async def open_transport(
    spec: SessionSpec, events: TransportEvents, *, sandbox: StdioSandbox | None = None
) -> AsyncIterator[TransportStreams]:
    """Open the transport for ``spec`` and yield its (read, write) streams; close it on exit.

    A stdio server runs in ``sandbox`` (None: as given, unconfined). The pool binds
    ``sandbox`` with ``functools.partial`` to make this an ``OpenTransport``.

    Raises:
        OSError: the stdio command cannot be started.
        ServerUnavailableError: the sandbox asked for cannot work here.
        httpx2.HTTPError: the HTTP endpoint cannot be reached (often inside an ExceptionGroup).
    """
    async with AsyncExitStack() as stack:
        yield await _enter(spec, events, stack, sandbox)


async def _enter(
    spec: SessionSpec, events: TransportEvents, stack: AsyncExitStack, sandbox: StdioSandbox | None
) -> TransportStreams:
    if spec.transport == "stdio":
        return await _open_stdio(spec, stack, events.scrub, sandbox, events.on_sandbox_stop)
    if spec.transport == "sse":

        def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None):
            return _http_client(spec, events.on_http_status, headers, auth)

        return await stack.enter_async_context(
            sse_client(
                spec.url or "",
                headers=dict(spec.headers),
                timeout=spec.connect_timeout_s,
                sse_read_timeout=SSE_READ_TIMEOUT_S,
                httpx_client_factory=factory,
            )
        )
    http = await stack.enter_async_context(_http_client(spec, events.on_http_status))
    return await stack.enter_async_context(streamable_http_client(spec.url or "", http_client=http))


async def _open_stdio(
    spec: SessionSpec,
    stack: AsyncExitStack,
    scrub: Callable[[str], str],
    sandbox: StdioSandbox | None,
    on_stop: Callable[[str], None] | None,
) -> TransportStreams:
    if sandbox is None:
        launch, watch = StdioLaunch.unconfined(spec), None
    else:
        launch = await sandbox.launch(spec)
        watch = ExitWatch(sandbox, spec.name, on_stop) if launch.supervised else None
    errlog = await stack.enter_async_context(_stderr_to_log(spec.name, scrub, watch))
    params = StdioServerParameters(command=launch.command, args=launch.args, env=launch.env, cwd=launch.cwd)
    read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
    if watch is None:
        return read, write
    errlog.close()  # the child has its copy; without ours, stderr ends when the server's tree does
    return _EndAfterExitReport(read, watch), write


class _EndAfterExitReport:
    """A stdio read stream whose end waits (up to ``STDERR_DRAIN_S``) for the sandbox's report
    of how the server ended, so the pool's error for a dead server can say why."""

    def __init__(self, inner: Any, watch: ExitWatch) -> None:
        self._inner = inner
        self._watch = watch

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except anyio.EndOfStream:
            with anyio.move_on_after(STDERR_DRAIN_S):
                await self._watch.ended.wait()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def _stderr_to_log(
    name: str, scrub: Callable[[str], str], watch: ExitWatch | None = None
) -> AsyncIterator[Any]:
    """Yield a writable file whose lines end up in the log under the connection's name.

    The child inherits the pipe's write end; we read the other end with asyncio. Our copy of
    the write end is closed on exit, after which the reader drains briefly and is cancelled (a
    grandchild may keep the pipe open forever). ``watch`` sees every line, then the end.
    """
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb")
    )
    child_log = logging.getLogger(f"mcp_core.server.{name}")

    async def pump() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    child_log.info("(dropped part of an over-long stderr line)")
                    continue
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    child_log.info("%s", scrub(text)[:STDERR_LINE_MAX_CHARS])
                    if watch is not None:
                        watch.feed(text)

    async def pump_and_tell() -> None:
        try:
            await pump()
        finally:
            if watch is not None:
                watch.close()

    task = asyncio.create_task(pump_and_tell(), name=f"stderr:{name}")
    try:
        yield writer
    finally:
        writer.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), STDERR_DRAIN_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        transport.close()
