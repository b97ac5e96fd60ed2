"""The pool of live MCP sessions: one owner for every connection the bot holds open.

Why it looks like this:

* Each live session is owned by its own asyncio task that enters the transport and the
  ``mcp.Client`` and exits them in the same task, as anyio's cancel scopes require. Callers
  borrow ``client`` from other tasks; one session multiplexes concurrent requests.
* A per-connection lock makes N concurrent first uses open exactly one session.
* Sessions idle longer than ``idle_timeout_s`` are closed by a reaper, and at most
  ``max_sessions`` stay live (least recently used first out, never one with a call in flight),
  so stdio children cannot pile up.
* Every wait is bounded: connect by ``spec.connect_timeout_s``, calls by
  ``spec.call_timeout_s`` (plus a short grace for a wedged transport).
* A session found dead *before* a request is sent is reopened transparently; a call that may
  have reached the server is never retried.
* The SDK's failure shapes become ``mcp_core.errors`` (``mcp_core._sdk_errors``) with texts
  that name the connection and never carry a secret.
* The transport is a seam (``open_transport=``): the real one (``mcp_core._transports``)
  spawns stdio children and speaks HTTP; tests may hand the pool in-process servers instead.

Size (~470 lines): the owner task, the per-connection lock, the reaper and the LRU cap share
one piece of state (the live sessions) whose invariants only hold if they are read together;
what could stand alone (transports, error translation) already lives elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.subscriptions import ListenNotSupportedError

from mcp_core import _task_extension, errors
from mcp_core._mid_call import MidCall
from mcp_core._sanitize import SanitizingReadStream
from mcp_core._sdk_errors import SessionFacts, call_error, connect_error, stopped
from mcp_core._task_extension import TaskCall, TasksExtension
from mcp_core._tasks import call_as_task, cancel_task, follow_task, takes_tasks
from mcp_core._transports import OpenTransport, TransportEvents
from mcp_core._transports import open_transport as _real_transport
from mcp_core.call_events import CallEvents, TaskHook
from mcp_core.logs import outside_turns
from mcp_core.models import SessionSpec
from mcp_core.sandbox import StdioSandbox
from mcp_core.security import scrub
from mcp_core.settings import ELICITATION_TIMEOUT_S, IDLE_TIMEOUT_S, MAX_LIVE_SESSIONS, TASK_TIMEOUT_S

logger = logging.getLogger(__name__)

__all__ = ["ConnectionPool", "SpecFactory", "ToolListing"]

SpecFactory = Callable[[], Awaitable[SessionSpec]]
ToolsChangedHook = Callable[[uuid.UUID], Awaitable[None]]

T = TypeVar("T")

CALL_GRACE_S = 5.0
"""Extra time past a call's timeout before we stop trusting the session at all."""


class _AnswerLate(Exception):
    """A call without a clock of ours was sent, and its answer did not come in time."""


class _TaskDeadline(Exception):
    """A call that became a task of the 2026-07-28 extension ran past MCP_TASK_TIMEOUT_S."""


MAX_TOOL_PAGES = 100
CLOSE_ALL_TIMEOUT_S = 15.0
CLIENT_INFO = types.Implementation(name="slack-mcp-bot", version="0.1.0")
MODERN_VERSIONS = frozenset({"2026-07-28"})
_NO_WATCH = contextlib.nullcontext()
"""A call without events has no watch; entering this costs less than ``watching``'s generator."""


@dataclass
class ToolListing:
    """Every page of a server's tools/list, minus the tools that were malformed."""

    tools: list[types.Tool]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(tool name, why it was dropped) for each malformed tool."""


class _Live:
    """One open session and the bookkeeping the pool needs about it."""

    def __init__(self, spec: SessionSpec, elicitation_timeout_s: float = ELICITATION_TIMEOUT_S) -> None:
        self.spec = spec
        self.client: Client | None = None
        self.done = asyncio.Event()
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.skipped: list[tuple[str, str]] = []
        self.http_status: int | None = None
        """Status of the last HTTP response the transport saw (None: no HTTP, or none yet)."""
        self.sandbox_stop: str | None = None
        """Why the stdio sandbox stopped the server (a limit it hit), told before its stream ends."""
        self.scrub: Callable[[str], str] = functools.partial(scrub, secrets=spec.secret_values)
        self.mid_call = MidCall(spec.name, self.scrub, elicitation_timeout_s)
        """The calls in flight, for what the server says during them (progress, questions)."""
        self.writes: _CountedWrites | None = None

    @property
    def usable(self) -> bool:
        return self.client is not None and not self.done.is_set()

    def protocol_version(self) -> str | None:
        client = self.client
        return client.session.protocol_version if client is not None else None

    def facts(self) -> SessionFacts:
        """What we know of this session, for translating a failure."""
        return SessionFacts(self.spec, self.scrub, self.http_status, self.sandbox_stop)


class ConnectionPool:
    """Owns every live MCP session of the process, keyed by connection id.

    ``on_tools_changed`` is awaited (in its own task) when a server says its tool list changed.
    Local (stdio) servers run in ``sandbox``; None runs them unconfined, as given (tests that
    are not about the sandbox; ``build_services`` always passes one). ``open_transport`` turns
    a spec into the session's stream pair: by default the real transports (stdio in
    ``sandbox``, HTTP); tests pass in-process servers where a child process adds nothing.
    ``sandbox`` is still used to delete a removed connection's private folder.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_sessions: int = MAX_LIVE_SESSIONS,
        on_tools_changed: ToolsChangedHook | None = None,
        sandbox: StdioSandbox | None = None,
        open_transport: OpenTransport | None = None,
        elicitation_timeout_s: float = ELICITATION_TIMEOUT_S,
        task_timeout_s: float = TASK_TIMEOUT_S,
    ) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._task_timeout_s = task_timeout_s
        self._elicitation_timeout_s = elicitation_timeout_s
        self._sandbox = sandbox
        self._open_transport: OpenTransport = open_transport or functools.partial(
            _real_transport, sandbox=sandbox
        )
        self._max_sessions = max_sessions
        self.on_tools_changed = on_tools_changed
        self._live: OrderedDict[uuid.UUID, _Live] = OrderedDict()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------

    @property
    def live_count(self) -> int:
        return len(self._live)

    def live_by_transport(self) -> dict[str, int]:
        """Live sessions per transport (``stdio``, ``sse``, ``streamable_http``), for the
        sessions gauge (``mcp_core.metrics``): read when scraped, never polled."""
        return dict(Counter(live.spec.transport for live in self._live.values()))

    def is_live(self, connection_id: uuid.UUID) -> bool:
        live = self._live.get(connection_id)
        return live is not None and live.usable

    async def call_tool(
        self,
        connection_id: uuid.UUID,
        open_spec: SpecFactory,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float | None = None,
        events: CallEvents | None = None,
        task_support: str | None = None,
    ) -> types.CallToolResult:
        """Call ``tool`` on the connection's session, opening it first if needed.

        A JSON-RPC error from the server comes back as an ``is_error`` result: to the model it
        is the same as a tool that reported failure. The connection's own secrets are scrubbed
        out of the result (a server may echo its token or dump its environment).

        ``events`` hears the server's progress and questions during this call
        (``mcp_core._mid_call``); the call's timeout stops while a question waits. On a
        2025-11-25 session the SDK's own per-request timeout cannot stop, so a call that can
        be asked gets ELICITATION_TIMEOUT_S more of it (one question's worth).

        ``task_support``: the tool's ``execution.taskSupport``; such a tool runs as an MCP task
        where the session takes them (``mcp_core._tasks``), bounded by ``task_timeout_s`` as
        a whole (then cancelled on the server) and each of its requests by the call timeout.
        On a 2026-07-28 session the server may answer any call with a task of the Tasks
        extension (``mcp_core._task_extension``): from then on the same deadline applies.

        Raises:
            McpServerError: the session could not be opened, timed out, died or answered off-spec.
        """
        async with self._borrow(connection_id, open_spec) as live:
            timeout = timeout_s or live.spec.call_timeout_s
            asks = events is not None and events.on_elicit is not None
            sdk_timeout = timeout + (live.mid_call.timeout_s if asks else 0.0)
            assert live.client is not None
            started = time.monotonic()
            as_task = takes_tasks(live.client, task_support)
            with live.mid_call.watching(events, timeout) if events is not None else _NO_WATCH as watch:
                # Without a watch nothing pauses the call's time, so one asyncio timeout in
                # _call_plainly is its clock and no anyio scope is entered (each costs ~10 µs).
                clock = watch.clock if watch is not None else None
                if as_task:  # the task's own time, not one request's
                    clock = anyio.CancelScope(deadline=anyio.current_time() + self._task_timeout_s)
                hear = watch.progress if watch is not None and watch.events.on_progress else None
                try:
                    if as_task:
                        with clock:
                            result = await call_as_task(
                                live.client,
                                tool,
                                arguments,
                                request_timeout_s=sdk_timeout,
                                scrub=live.scrub,
                                on_task=events.on_task if events is not None else None,
                                progress_callback=hear,
                            )
                    else:
                        result, as_task = await self._call_plainly(
                            live, tool, arguments, sdk_timeout, clock, events, hear
                        )
                except MCPError as exc:
                    if exc.code == types.REQUEST_TIMEOUT and time.monotonic() - started >= timeout:
                        raise errors.ServerTimeoutError(live.spec.name, _timed_out(tool, timeout)) from exc
                    if exc.code == types.CONNECTION_CLOSED and live.done.is_set():
                        self._retire(connection_id, live)
                        raise errors.ServerCrashedError(
                            live.spec.name,
                            f"{stopped(live.facts())} while running {tool}. It was not retried because it "
                            "may have run; the next request starts a new session.",
                        ) from exc
                    text = f"The server answered with error {exc.code}: {live.scrub(exc.message)[:500]}"
                    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
                except _TaskDeadline:
                    clock_ran_out = as_task = True
                except _AnswerLate:
                    raise errors.ServerTimeoutError(live.spec.name, _timed_out(tool, timeout)) from None
                except Exception as exc:
                    self._retire(connection_id, live)
                    raise call_error(exc, live.facts(), tool, timeout) from exc
                else:
                    clock_ran_out = clock is not None and clock.cancelled_caught
            if clock_ran_out and as_task:
                raise errors.ServerTimeoutError(
                    live.spec.name,
                    f"{tool} ran as a task for longer than {self._task_timeout_s:g} s, so it was "
                    "cancelled on the server.",
                )
            if clock_ran_out:  # its own time ran out (questions' waits not counted)
                raise errors.ServerTimeoutError(live.spec.name, _timed_out(tool, timeout))
            assert result is not None
            return _scrub_result(result, live.scrub) if live.spec.secret_values else result

    async def _call_plainly(
        self,
        live: _Live,
        tool: str,
        arguments: dict[str, Any],
        sdk_timeout: float,
        clock: anyio.CancelScope | None,
        events: CallEvents | None,
        hear: Any,
    ) -> tuple[types.CallToolResult | None, bool]:
        """One ``tools/call`` (the result, and whether the server made it a task of the
        2026-07-28 extension: then the call's time became the task's). ``clock``: the call's
        pausable deadline, if it has one (None for the result when it ran out); the outer
        timeout is then a backstop for a hung write, and without one it is the call's clock.

        Raises:
            _AnswerLate: without ``clock``, the request was sent and its time ran out.
            _TaskDeadline: the task the call became ran out of time without a clock of its own.
        """
        assert live.client is not None
        assert live.writes is not None
        task_on_outer = False
        result = None
        # Without a clock of ours the outer timeout is the call's only clock and the SDK is
        # given none: its deadline is an anyio timer rescheduled on every request (~20-40 µs
        # a call, and a reference cycle for the collector). Its courtesy cancel still goes out,
        # for a cancelled request as for a timed-out one.
        if clock is None:
            sdk_read_timeout, outer_s = math.inf, sdk_timeout
        else:
            sdk_read_timeout, outer_s = sdk_timeout, sdk_timeout + CALL_GRACE_S
        taken = live.writes.taken
        try:
            async with asyncio.timeout(outer_s) as outer:
                with clock if clock is not None else contextlib.nullcontext():

                    def became_task() -> None:
                        nonlocal task_on_outer
                        deadline = anyio.current_time() + self._task_timeout_s
                        if clock is None:
                            task_on_outer = True  # from now on the outer timeout is the task's
                            outer.reschedule(deadline)
                        else:
                            outer.reschedule(deadline + CALL_GRACE_S)
                            clock.deadline = deadline

                    task_call = TaskCall(
                        scrub=live.scrub,
                        on_task=events.on_task if events is not None else None,
                        became_task=became_task,
                        elicit=functools.partial(live.mid_call.elicit, None),
                    )
                    token = _task_extension.CURRENT.set(task_call)
                    try:
                        result = await live.client.call_tool(
                            tool, arguments, read_timeout_seconds=sdk_read_timeout, progress_callback=hear
                        )
                    finally:
                        _task_extension.CURRENT.reset(token)
        except TimeoutError:
            if task_on_outer:
                raise _TaskDeadline from None
            if clock is None and live.writes.taken > taken:  # sent, and the answer is late
                raise _AnswerLate from None
            raise  # the transport never took the request: stuck (caller retires the session)
        return result, task_call.task_id is not None

    async def follow_task(
        self,
        connection_id: uuid.UUID,
        open_spec: SpecFactory,
        tool: str,
        task_id: str,
        *,
        on_task: TaskHook | None = None,
        stop: asyncio.Event | None = None,
    ) -> types.CallToolResult:
        """Follow the MCP task ``task_id`` of ``tool``, which a session of another process (now
        gone) created, to its result, on this connection's session (opened if needed): for
        remote servers whose tasks outlive a session. Bounded by ``task_timeout_s``, then
        cancelled on the server; ``stop`` set (the person's Stop) cancels it on the server too.
        A follow cancelled from outside (shutdown) leaves the task running for the next process.

        Raises:
            CallStoppedError: ``stop`` was set first (the server was told to cancel the task).
            ServerTimeoutError: the task ran past ``task_timeout_s``.
            McpServerError: the session could not be opened or died, the server does not take
                tasks on this session, or it refused (an unknown task: it forgot it, or bound
                it to the session that is gone).
        """
        async with self._borrow(connection_id, open_spec) as live:
            assert live.client is not None
            client = live.client
            extension = client.protocol_version != "2025-11-25"
            if extension and not _task_extension.offers_tasks(client):
                raise errors.McpServerError(live.spec.name, "the server no longer offers tasks")
            follower = _task_extension.follow if extension else follow_task
            cancel = _task_extension.cancel if extension else cancel_task
            with anyio.move_on_after(self._task_timeout_s) as clock:
                try:
                    result = await _unless_stopped(
                        stop,
                        follower(
                            client,
                            task_id,
                            request_timeout_s=live.spec.call_timeout_s,
                            scrub=live.scrub,
                            on_task=on_task,
                        ),
                    )
                except MCPError as exc:
                    said = live.scrub(exc.message)[:300]
                    raise errors.McpServerError(
                        live.spec.name, f"the server answered error {exc.code}: {said}"
                    ) from exc
                except Exception as exc:
                    self._retire(connection_id, live)
                    raise call_error(exc, live.facts(), tool, live.spec.call_timeout_s) from exc
            if clock.cancelled_caught:
                await cancel(client, task_id)
                raise errors.ServerTimeoutError(
                    live.spec.name,
                    f"{tool} ran as a task for longer than {self._task_timeout_s:g} s, so it was "
                    "cancelled on the server.",
                )
            if result is None:  # the person's Stop came first
                await cancel(client, task_id)
                raise errors.CallStoppedError(f"{tool} was stopped; its server was asked to cancel it.")
            return _scrub_result(result, live.scrub) if live.spec.secret_values else result

    async def list_tools(self, connection_id: uuid.UUID, open_spec: SpecFactory) -> ToolListing:
        """Every page of ``tools/list``; malformed tools are dropped and reported, not fatal.

        Raises:
            McpServerError: as for ``call_tool``.
        """
        async with self._borrow(connection_id, open_spec) as live:
            assert live.client is not None
            live.skipped = []
            tools: list[types.Tool] = []
            cursor: str | None = None
            timeout = live.spec.call_timeout_s
            try:
                with anyio.fail_after(timeout + CALL_GRACE_S):
                    for _ in range(MAX_TOOL_PAGES):
                        page = await live.client.list_tools(cursor=cursor, cache_mode="refresh")
                        tools.extend(page.tools)
                        if not (cursor := page.next_cursor):
                            break
            except MCPError as exc:
                if exc.code == types.REQUEST_TIMEOUT:
                    raise errors.ServerTimeoutError(
                        live.spec.name, f"listing tools took longer than {timeout:g} s."
                    ) from exc
                self._retire(connection_id, live)
                raise call_error(exc, live.facts(), "tools/list", timeout) from exc
            except Exception as exc:
                self._retire(connection_id, live)
                raise call_error(exc, live.facts(), "tools/list", timeout) from exc
            kept, leaking = _scrub_tools(tools, live.scrub, live.spec.secret_values)
            for name in leaking:
                _dropped_tool(live, name, "its name contains one of the connection's secrets")
            return ToolListing(tools=kept, skipped=list(live.skipped))

    async def discard(self, connection_id: uuid.UUID, *, delete_files: bool = False) -> None:
        """Close the connection's session (if any) and wait until its process is gone; with
        ``delete_files``, also delete the private folder its stdio server kept (the connection
        is being removed)."""
        live = self._live.get(connection_id)
        self._locks.pop(connection_id, None)
        if live is not None:
            self._retire(connection_id, live)
            if live.task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(live.task), CLOSE_ALL_TIMEOUT_S)
        if delete_files and self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.remove_private_dir, connection_id)

    async def aclose(self) -> None:
        """Close every session and reap every child process. Safe to call twice."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for key, live in list(self._live.items()):
            self._retire(key, live)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=CLOSE_ALL_TIMEOUT_S)
            for task in still:
                logger.warning("MCP session task %s did not stop in time; cancelling it", task.get_name())
                task.cancel()
        if self._reaper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper

    # -- sessions ------------------------------------------------------------------------

    def _borrow(self, connection_id: uuid.UUID, open_spec: SpecFactory) -> _Borrowed:
        return _Borrowed(self, connection_id, open_spec)

    async def _session(self, key: uuid.UUID, open_spec: SpecFactory) -> _Live:
        if self._closed:
            raise errors.McpCoreError("The bot is shutting down; try again in a moment.")
        live = self._live.get(key)
        if live is not None and live.usable:
            self._live.move_to_end(key)
            return live
        async with self._locks.setdefault(key, asyncio.Lock()):
            live = self._live.get(key)
            if live is not None and live.usable:
                return live
            if live is not None:
                self._retire(key, live)
            spec = await open_spec()
            self._make_room()
            live = await self._open(spec)
            self._live[key] = live
            self._ensure_reaper()
            return live

    async def _open(self, spec: SessionSpec) -> _Live:
        live = _Live(spec, self._elicitation_timeout_s)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The session outlives the turn that opens it: its lines carry no turn id.
        live.task = asyncio.create_task(
            self._own(live, ready), name=f"mcp:{spec.name}", context=outside_turns()
        )
        self._tasks.add(live.task)
        live.task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(ready)
        except asyncio.CancelledError:
            live.done.set()  # the caller gave up; the owner closes the session once connected
            raise
        return live

    async def _own(self, live: _Live, ready: asyncio.Future[None]) -> None:
        """Run one session from connect to close, all inside this task."""
        spec = live.spec
        connect = anyio.CancelScope(deadline=anyio.current_time() + spec.connect_timeout_s)
        try:
            with connect:
                async with AsyncExitStack() as stack:
                    events = TransportEvents(
                        scrub=live.scrub,
                        on_http_status=functools.partial(setattr, live, "http_status"),
                        on_sandbox_stop=functools.partial(setattr, live, "sandbox_stop"),
                    )
                    read, write = await stack.enter_async_context(self._open_transport(spec, events))
                    stream = SanitizingReadStream(
                        read,
                        protocol_version=live.protocol_version,
                        on_dropped_tool=functools.partial(_dropped_tool, live),
                        on_eof=live.done.set,
                    )
                    live.writes = _CountedWrites(write)
                    client = Client(
                        _given_streams(stream, live.writes),
                        read_timeout_seconds=max(spec.call_timeout_s, spec.connect_timeout_s),
                        mode=spec.protocol_mode,
                        message_handler=functools.partial(self._on_message, live),
                        elicitation_callback=live.mid_call.elicit,
                        client_info=CLIENT_INFO,
                        extensions=[TasksExtension()],
                    )
                    await stack.enter_async_context(client)
                    connect.deadline = math.inf
                    live.client = client
                    ready.set_result(None)
                    logger.info(
                        "connected %s over %s (protocol %s)",
                        spec.name,
                        spec.transport,
                        client.protocol_version,
                    )
                    await self._serve(live, client)
            if connect.cancelled_caught and not ready.done():
                raise TimeoutError
        except BaseException as exc:
            if not ready.done():
                timed_out = connect.cancel_called and not isinstance(exc, errors.McpCoreError)
                ready.set_exception(connect_error(TimeoutError() if timed_out else exc, live.facts()))
            elif not isinstance(exc, asyncio.CancelledError):
                logger.warning("session %s ended with %s", spec.name, type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            live.done.set()
            live.client = None
            if self._live.get(spec.connection_id) is live:
                del self._live[spec.connection_id]
            if ready.done() and not ready.cancelled():
                ready.exception()  # mark retrieved: a caller that gave up must not cause a warning

    async def _serve(self, live: _Live, client: Client) -> None:
        """Keep the session open until it is retired, listening for tool-list changes."""
        async with anyio.create_task_group() as tg:
            caps = client.server_capabilities.tools
            if client.protocol_version in MODERN_VERSIONS and caps is not None and caps.list_changed:
                tg.start_soon(self._listen, live, client)
            await live.done.wait()
            tg.cancel_scope.cancel()

    async def _listen(self, live: _Live, client: Client) -> None:
        """2026-07-28 servers announce tool changes only through ``subscriptions/listen``."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._tools_changed(live)
        except (ListenNotSupportedError, MCPError, TimeoutError, Exception) as exc:
            logger.info("%s: not listening for tool changes (%s)", live.spec.name, type(exc).__name__)

    async def _on_message(self, live: _Live, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._tools_changed(live)
        elif isinstance(message, Exception):
            logger.warning("%s sent something unreadable: %s", live.spec.name, live.scrub(str(message))[:300])

    def _tools_changed(self, live: _Live) -> None:
        if self.on_tools_changed is None:
            return
        task = asyncio.create_task(self.on_tools_changed(live.spec.connection_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retire(self, key: uuid.UUID, live: _Live) -> None:
        if self._live.get(key) is live:
            del self._live[key]
        live.done.set()

    def _make_room(self) -> None:
        while len(self._live) >= self._max_sessions:
            victim = next(((k, v) for k, v in self._live.items() if v.in_flight == 0), None)
            if victim is None:
                logger.warning("all %d live MCP sessions are busy; opening one more", len(self._live))
                return
            logger.info(
                "closing least recently used session %s (cap %d)", victim[1].spec.name, self._max_sessions
            )
            self._retire(*victim)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="mcp:idle-reaper", context=outside_turns())

    async def _reap(self) -> None:
        period = max(0.05, min(self._idle_timeout_s / 4, 30.0))
        while self._live:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, live in list(self._live.items()):
                if live.in_flight == 0 and now - live.last_used > self._idle_timeout_s:
                    logger.info("closing %s after %.0f s idle", live.spec.name, now - live.last_used)
                    self._retire(key, live)


def _timed_out(tool: str, timeout: float) -> str:
    return (
        f"{tool} did not answer within {timeout:g} s. It may still be running on the server, "
        "so it was not retried."
    )


class _Borrowed:
    """``async with pool._borrow(...) as live``: the connection's session, counted as in use
    until the block ends. A class, not an ``asynccontextmanager``: it runs on every call, and
    the generator and its wrapper cost ~4 µs of it."""

    __slots__ = ("_connection_id", "_live", "_open_spec", "_pool")

    def __init__(self, pool: ConnectionPool, connection_id: uuid.UUID, open_spec: SpecFactory) -> None:
        self._pool = pool
        self._connection_id = connection_id
        self._open_spec = open_spec
        self._live: _Live | None = None

    async def __aenter__(self) -> _Live:
        live = self._live = await self._pool._session(self._connection_id, self._open_spec)
        live.in_flight += 1
        return live

    async def __aexit__(self, *exc_info: object) -> None:
        live = self._live
        assert live is not None
        live.in_flight -= 1
        live.last_used = time.monotonic()


class _CountedWrites:
    """A session's write stream that counts the messages its transport took. A call whose
    time ran out before its request was taken found the transport stuck (a server that
    stopped reading its input), not a slow tool: the session is retired, not kept."""

    __slots__ = ("_inner", "taken")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.taken = 0

    async def send(self, item: Any) -> None:
        await self._inner.send(item)
        self.taken += 1

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _CountedWrites:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _given_streams(read: Any, write: Any) -> AsyncIterator[Any]:
    """A Transport over streams we already opened, so the Client sees our sanitizing reader."""
    yield read, write


def _dropped_tool(live: _Live, tool: str, problem: str) -> None:
    live.skipped.append((tool, problem))
    logger.warning("%s: skipped malformed tool %r (%s)", live.spec.name, tool, problem)


def _scrub_tree(node: Any, clean: Callable[[str], str]) -> Any:
    """``node`` (JSON-like) with ``clean`` applied to every string in it, keys included."""
    if isinstance(node, str):
        return clean(node)
    if isinstance(node, dict):
        return {clean(k) if isinstance(k, str) else k: _scrub_tree(v, clean) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_scrub_tree(item, clean) for item in node]
    return node


def _scrub_model(model: Any, clean: Callable[[str], str]) -> Any:
    """A pydantic MCP object with every string it carries scrubbed, whatever its content types
    (text, resource links' uri/name/title, embedded resources, annotations, ``_meta``…)."""
    dumped = model.model_dump(by_alias=True, exclude_none=True)
    cleaned = _scrub_tree(dumped, clean)
    return model if cleaned == dumped else type(model).model_validate(cleaned)


def _scrub_tools(
    tools: list[types.Tool], clean: Callable[[str], str], secrets: tuple[str, ...]
) -> tuple[list[types.Tool], list[str]]:
    """Tools with secrets scrubbed from every string (descriptions, titles, schemas) before they
    are stored, shown in /mcp tools or sent to the model; a tool whose *name* holds a secret
    cannot be renamed (the server would not know it), so it is dropped and reported."""
    if not secrets:
        return tools, []
    kept: list[types.Tool] = []
    leaking: list[str] = []
    for tool in tools:
        if clean(tool.name) != tool.name:
            leaking.append(clean(tool.name))
        else:
            kept.append(_scrub_model(tool, clean))
    return kept, leaking


def _scrub_result(result: types.CallToolResult, clean: Callable[[str], str]) -> types.CallToolResult:
    """``result`` with the connection's secrets replaced in every string it carries to Slack or
    the LLM: every content type, structured content and metadata."""
    return _scrub_model(result, clean)


async def _unless_stopped(stop: asyncio.Event | None, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None once ``stop`` is set first (``work`` is then cancelled)."""
    if stop is None:
        return await work
    job = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (job, stopped):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if job.cancelled():
        return None
    return job.result()
