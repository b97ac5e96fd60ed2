"""Slack's side of Socket Mode for the fake (tests/support/fake_slack.py): several connections
per app token, each envelope delivered to one of them, delivered again when nobody acked it.

What Slack does, and so this does (Slack's Socket Mode docs; slackapi/bolt-python #448, #1071;
bolt-js #2225; ../shared/reference/slack-testing.md §8-9):

* Up to ``MAX_CONNECTIONS`` (10) WebSockets may be open at once per app. Each gets a ``hello``
  with ``num_connections``; one more is sent ``{"type": "disconnect", "reason":
  "too_many_websockets"}`` and closed.
* Each envelope goes to **one** open connection. Slack picks arbitrarily; the fake takes the
  next in turn, so envelopes spread over every connection, and a test may pick one itself
  (``connection=``, the number the connection got when it opened: 1, 2, …).
* The app acks with ``{"envelope_id": …}`` within ``ack_timeout_s`` (3 s). An ack arriving on any
  of the app's connections counts (slack_sdk sends acks on its current connection, which after
  a reconnect is not the one the envelope came on).
* An ``events_api`` envelope not acked in time (the app was slow, refused it, or its connection
  closed before it acked) is delivered again after ``retry_delays_s[n]`` with ``retry_attempt``
  n + 1 and ``retry_reason`` ``"timeout"``, to the connection after the one that failed to ack
  (Slack may pick any; this one makes "another process" the case tests see). Slack retries nearly
  at once, after about a minute and after about five (tests shorten the list); after the last, the
  event is given up (``given_up``). The retry keeps the envelope_id (Bolt acks whatever id it
  received, and the event_id inside, which apps dedupe on, is the same either way). No open
  connection at a retry is one more failed attempt.
* Other envelopes (commands, clicks, submissions) are not delivered again: a person saw an
  error instead (``expired``).

Everything runs on the fake's own event loop; the blocking waits take the fake's condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["ACK_TIMEOUT_S", "MAX_CONNECTIONS", "RETRY_DELAYS_S", "Ack", "Delivery", "SocketModeLinks"]

MAX_CONNECTIONS = 10
ACK_TIMEOUT_S = 3.0
RETRY_DELAYS_S = (0.0, 60.0, 300.0)
"""Events API retries after a failed delivery: nearly immediately, ~1 min, ~5 min."""
_WS_CLOSE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Delivery:
    """One envelope sent on one connection."""

    envelope_id: str
    connection: int
    retry_attempt: int
    at: float


@dataclass(frozen=True)
class Ack:
    """One ack received: on which connection, when, and whether within the envelope's deadline."""

    envelope_id: str
    connection: int
    at: float
    in_time: bool


@dataclass
class _Link:
    number: int
    ws: web.WebSocketResponse
    opened_at: float
    closed_at: float | None = None


@dataclass
class _Envelope:
    body: dict[str, Any]
    deadline: float = 0.0
    acked: bool = False
    last_connection: int | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class SocketModeLinks:
    """The app's Socket Mode connections on the fake (see the module docstring).

    ``acks`` (envelope_id → the ack's JSON) and ``cond`` are the fake's own, shared so its
    ``all_traffic_text`` and waits see the acks."""

    def __init__(
        self,
        cond: threading.Condition,
        acks: dict[str, dict[str, Any]],
        run: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> None:
        self.ack_timeout_s = ACK_TIMEOUT_S
        self.retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
        self.deliveries: list[Delivery] = []
        self.ack_log: list[Ack] = []
        self.given_up: list[str] = []
        """events_api envelope ids delivered ``1 + len(retry_delays_s)`` times, never acked."""
        self.expired: list[str] = []
        """Other envelope ids not acked in time (Slack showed the person an error)."""
        self.refused_connections = 0
        """Connections turned away with ``too_many_websockets``."""
        self._cond = cond
        self._acks = acks
        self._run = run
        self._links: dict[int, _Link] = {}
        self._numbers = itertools.count(1)
        self._turn = 0
        self._envelopes: dict[str, _Envelope] = {}

    # -- the WebSocket endpoint -------------------------------------------------------------------

    async def serve(self, request: web.Request, hello: dict[str, Any]) -> web.WebSocketResponse:
        """One connection, ``/link``: ``hello`` (its ``num_connections`` filled in) or
        too_many_websockets, then acks until it closes."""
        ws = web.WebSocketResponse(timeout=_WS_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        with self._cond:
            full = len(self.open_connections()) >= MAX_CONNECTIONS
        if full:
            refusal = {"type": "disconnect", "reason": "too_many_websockets"}
            await ws.send_json(refusal | {"debug_info": hello.get("debug_info", {})})
            await ws.close()
            with self._cond:
                self.refused_connections += 1
                self._cond.notify_all()
            return ws
        with self._cond:
            link = _Link(next(self._numbers), ws, time.time())
            count = len(self.open_connections()) + 1
        await ws.send_json(hello | {"type": "hello", "num_connections": count})
        with self._cond:
            self._links[link.number] = link
            self._cond.notify_all()
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._received(link, json.loads(msg.data))
        finally:
            with self._cond:
                link.closed_at = time.time()
                self._cond.notify_all()
        return ws

    def _received(self, link: _Link, data: Any) -> None:
        if not isinstance(data, dict) or "envelope_id" not in data:
            return
        envelope_id, now = str(data["envelope_id"]), time.time()
        with self._cond:
            envelope = self._envelopes.get(envelope_id)
            in_time = envelope is not None and not envelope.acked and now <= envelope.deadline
            if envelope is not None and in_time:
                envelope.acked = True
                for timer in envelope.timers:
                    timer.cancel()
            self.ack_log.append(Ack(envelope_id, link.number, now, in_time))
            self._acks[envelope_id] = data
            self._cond.notify_all()

    # -- delivering --------------------------------------------------------------------------------

    def open_connections(self) -> list[int]:
        """The numbers of the connections open now, oldest first."""
        return [n for n, link in self._links.items() if link.closed_at is None and not link.ws.closed]

    def push(self, envelope: dict[str, Any], *, connection: int | None, timeout_s: float) -> None:
        """Deliver ``envelope`` once a connection is open (waiting up to ``timeout_s``).

        Raises:
            AssertionError: no connection opened in time, or ``connection`` is not open.
        """

        def ready() -> bool:
            open_now = self.open_connections()
            return connection in open_now if connection is not None else bool(open_now)

        with self._cond:
            if not self._cond.wait_for(ready, timeout_s):
                which = f"connection {connection} not" if connection else "no Socket Mode client"
                open_now = self.open_connections()
                raise AssertionError(f"{which} connected within {timeout_s} s; open: {open_now}")
        self._run(self._deliver(envelope, connection))

    async def _deliver(self, body: dict[str, Any], connection: int | None = None) -> bool:
        """Send ``body`` on ``connection`` or the next open one in turn; arm its deadline. False
        when no connection is open (the attempt failed at once)."""
        envelope_id = body["envelope_id"]
        loop = asyncio.get_running_loop()
        with self._cond:
            envelope = self._envelopes.setdefault(envelope_id, _Envelope(body))
            envelope.body = body
            open_now = self.open_connections()
            if connection is None and open_now and envelope.last_connection is not None:
                later = [n for n in open_now if n > envelope.last_connection]  # a retry: the one after
                connection = (later or open_now)[0]
            elif connection is None and open_now:
                connection = open_now[self._turn % len(open_now)]
                self._turn += 1
            link = self._links.get(connection) if connection is not None else None
        if link is None:
            self._timed_out(envelope_id)
            return False
        with contextlib.suppress(ConnectionError, RuntimeError):  # closed under us: the attempt failed
            await link.ws.send_json(body)
        now = time.time()
        with self._cond:
            envelope.last_connection = link.number
            envelope.deadline = now + self.ack_timeout_s
            envelope.timers.append(loop.call_later(self.ack_timeout_s, self._timed_out, envelope_id))
            self.deliveries.append(Delivery(envelope_id, link.number, int(body.get("retry_attempt", 0)), now))
            self._cond.notify_all()
        return True

    def _timed_out(self, envelope_id: str) -> None:
        """No ack within the deadline: an event is delivered again (or given up), anything else expires."""
        loop = asyncio.get_running_loop()
        with self._cond:
            envelope = self._envelopes[envelope_id]
            if envelope.acked:
                return
            body = envelope.body
            attempt = int(body.get("retry_attempt", 0))
            if body.get("type") != "events_api":
                self.expired.append(envelope_id)
                self._cond.notify_all()
                return
            if attempt >= len(self.retry_delays_s):
                self.given_up.append(envelope_id)
                self._cond.notify_all()
                return
            again = body | {"retry_attempt": attempt + 1, "retry_reason": "timeout"}
            delay = self.retry_delays_s[attempt]
            envelope.timers.append(loop.call_later(delay, lambda: loop.create_task(self._deliver(again))))

    def cancel_timers(self) -> None:
        """Stop every pending deadline and retry (the fake is stopping)."""
        with self._cond:
            for envelope in self._envelopes.values():
                for timer in envelope.timers:
                    timer.cancel()

    async def close_all(self) -> None:
        for link in list(self._links.values()):
            await link.ws.close()

    # -- queries (any thread) ------------------------------------------------------------------------

    def delivered(self, envelope_id: str) -> list[Delivery]:
        """Every delivery of ``envelope_id``, first first."""
        with self._cond:
            return [d for d in self.deliveries if d.envelope_id == envelope_id]

    def unacked(self) -> list[str]:
        """Envelopes delivered and not (yet) acked in time."""
        with self._cond:
            return [eid for eid, envelope in self._envelopes.items() if not envelope.acked]

    def closed_at(self, connection: int) -> float | None:
        with self._cond:
            return self._links[connection].closed_at

    def wait(self, what: Callable[[], Any], timeout_s: float, failure: Callable[[], str]) -> Any:
        """Block until ``what()`` is truthy (evaluated under the condition); its value.

        Raises:
            AssertionError: ``failure()`` on timeout.
        """
        with self._cond:
            if not self._cond.wait_for(what, timeout_s):
                raise AssertionError(failure())
            return what()
