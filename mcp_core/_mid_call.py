"""Routing what a server says during a call (progress, elicitation) to that call's ``CallEvents``.

Sessions are pooled per connection and several calls may be in flight on one, while the SDK
takes one elicitation callback per session. So each call in flight is a ``CallWatch``, and:

* Progress goes by progress token: the SDK's per-call ``progress_callback`` is the call's own
  watch (at most one update per ``PROGRESS_INTERVAL_S`` passes, so a chatty server cannot
  flood the surface).
* An elicitation embedded in a 2026-07-28 ``input_required`` result is dispatched by the SDK
  inside the call's own task, where the context variable ``_CURRENT`` names the call: exact.
* A 2025-11-25 ``elicitation/create`` arrives on the session's receive loop and names no call
  (the protocol carries no related request id to the client). It goes to the only call in
  flight that listens for questions, or the oldest of those when all share one ``surface``;
  otherwise it is answered ``cancel`` and logged (see ``mcp_core.call_events``). (The SDK's
  in-memory streams carry the sender's context across, so with in-process test servers even
  these arrive in the asking call's context; real transports carry none.)

While a question waits for the person the call's own timeout is paused (``CallWatch.clock``);
the wait itself is bounded by ELICITATION_TIMEOUT_S (then ``cancel``), and a question still
open when its call ends is withdrawn.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import anyio
import mcp_types as types

from mcp_core.call_events import CallEvents
from mcp_core.elicitation import ElicitAnswer, FormRequest, RefusedRequest, UrlRequest, clean, read_request

__all__ = ["CallWatch", "MidCall"]

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
PROGRESS_MESSAGE_CHARS = 200

_CURRENT: ContextVar[CallWatch | None] = ContextVar("mcp_core_current_call", default=None)


class CallWatch:
    """One call in flight: its events, its pausable deadline, its progress throttle."""

    def __init__(self, events: CallEvents, timeout_s: float, scrub: Callable[[str], str]) -> None:
        self.events = events
        self.clock = anyio.CancelScope(deadline=anyio.current_time() + timeout_s)
        """The call's own timeout; infinite while a question waits for the person."""
        self.asks: set[anyio.CancelScope] = set()
        self._scrub = scrub
        self._waiting = 0
        self._remaining_s = timeout_s
        self._last_progress = -math.inf

    def pause(self) -> None:
        if self._waiting == 0:
            self._remaining_s = max(0.0, self.clock.deadline - anyio.current_time())
            self.clock.deadline = math.inf
        self._waiting += 1

    def resume(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.clock.deadline = anyio.current_time() + self._remaining_s

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """The SDK's progress_callback for this call: cleaned, throttled, never raising."""
        hook = self.events.on_progress
        now = time.monotonic()
        if hook is None or now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        words = clean(self._scrub(message), PROGRESS_MESSAGE_CHARS) if isinstance(message, str) else ""
        try:
            await hook(float(progress), float(total) if total is not None else None, words or None)
        except Exception:  # the surface's hook: a failed display must not fail the call
            logger.exception("a progress hook failed")


class MidCall:
    """The calls in flight on one session, and the session's elicitation callback."""

    def __init__(self, server: str, scrub: Callable[[str], str], timeout_s: float) -> None:
        self._server = server
        self._scrub = scrub
        self._timeout_s = timeout_s
        self._calls: list[CallWatch] = []

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @contextlib.contextmanager
    def watching(self, events: CallEvents | None, timeout_s: float) -> Iterator[CallWatch | None]:
        """For the duration of one call (in the caller's task): its watch, or None without events."""
        if events is None:
            yield None
            return
        watch = CallWatch(events, timeout_s, self._scrub)
        self._calls.append(watch)
        token = _CURRENT.set(watch)
        try:
            yield watch
        finally:
            _CURRENT.reset(token)
            self._calls.remove(watch)
            for ask in watch.asks:
                ask.cancel()  # the call ended: its open question is withdrawn

    async def elicit(self, context: Any, params: Any) -> types.ElicitResult:
        """The session's ``elicitation_callback``: find the call, ask its surface, answer."""
        watch = self._route()
        if watch is None or watch.events.on_elicit is None:
            logger.info("%s asked a question no call in flight can show; answered cancel", self._server)
            return types.ElicitResult(action="cancel")
        raw = params.model_dump(by_alias=True, exclude_none=True) if hasattr(params, "model_dump") else params
        request = read_request(self._server, _scrubbed(raw, self._scrub))
        answer = await self._ask(watch, request)
        if isinstance(request, RefusedRequest):
            logger.info("%s: refused a question (%s)", self._server, request.why)
            return types.ElicitResult(action="decline")
        if answer.action != "accept" or isinstance(request, UrlRequest):
            return types.ElicitResult(action=answer.action)
        assert isinstance(request, FormRequest)
        names = {f.name for f in request.fields}
        content = {k: v for k, v in (answer.content or {}).items() if k in names}
        return types.ElicitResult(action="accept", content=content)

    def _route(self) -> CallWatch | None:
        current = _CURRENT.get()
        if current is not None and current in self._calls:
            return current  # a 2026-07-28 input request, dispatched inside its own call
        able = [c for c in self._calls if c.events.on_elicit is not None]
        if len({c.events.surface for c in able}) > 1:
            logger.info("%s: a question while calls of several conversations run; not shown", self._server)
            return None
        return able[0] if able else None

    async def _ask(self, watch: CallWatch, request: Any) -> ElicitAnswer:
        assert watch.events.on_elicit is not None
        watch.pause()
        answer = ElicitAnswer("cancel")
        try:
            with anyio.move_on_after(self._timeout_s) as ask:
                watch.asks.add(ask)
                answer = await watch.events.on_elicit(request)
        except Exception:  # the surface's hook: the server is told cancel, the call goes on
            logger.exception("asking %s's question failed", self._server)
        finally:
            watch.asks.discard(ask)
            watch.resume()
        return ElicitAnswer("cancel") if ask.cancelled_caught else answer


def _scrubbed(node: Any, scrub: Callable[[str], str]) -> Any:
    """``node`` (JSON-like) with the connection's secrets out of every string (a server may
    put the token it was sent into its question)."""
    if isinstance(node, str):
        return scrub(node)
    if isinstance(node, dict):
        return {k: _scrubbed(v, scrub) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrubbed(v, scrub) for v in node]
    return node
