"""What a caller of ``ToolRegistry.call`` hears while its call runs: progress and questions.

A server may report progress (``notifications/progress``) and ask the person something
(elicitation) in the middle of a tool call. The caller passes a ``CallEvents`` for that one
call; the pool routes what the server says to it (``mcp_core._mid_call``). Everything handed
over is already cleaned: progress words are plain, short text with the connection's secrets
scrubbed; questions are ``mcp_core.elicitation`` objects.

``on_elicit`` is awaited until the person answers; the pool bounds the wait
(ELICITATION_TIMEOUT_S, then ``cancel``) and pauses the call's own timeout meanwhile. For a
``RefusedRequest`` its answer is ignored: the server gets ``decline`` (the surface only tells
the person). For a ``UrlRequest``, ``accept`` means the link was shown to the person only.

``surface`` names where the questions are shown (a thread, say). On a 2025-11-25 session the
protocol does not say which of several concurrent calls a question belongs to; it goes to the
only call in flight that can ask, or to the oldest of several that share one ``surface``; when
calls of different surfaces are in flight it is answered ``cancel`` (never shown in a place
that may not be the right one). On 2026-07-28 each question arrives in its own call's result,
so it always reaches its own call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mcp_core.elicitation import ElicitAnswer, ElicitRequest

__all__ = ["CallEvents", "ElicitHook", "ProgressHook", "TaskHook", "progress_note"]

ProgressHook = Callable[[float, float | None, str | None], Awaitable[None]]
"""``(progress, total, message)``: ``message`` is the server's words, cleaned (or None)."""
ElicitHook = Callable[[ElicitRequest], Awaitable[ElicitAnswer]]
TaskHook = Callable[[str, str, str | None], Awaitable[None]]
"""``(task id, status, message)`` of a call the server runs as a task (``mcp_core._tasks``):
heard when it is created and whenever its status or message changes; ``message`` cleaned."""


@dataclass(frozen=True)
class CallEvents:
    """Hooks for one call; either may be None (that kind of event is then not listened for)."""

    on_progress: ProgressHook | None = None
    on_elicit: ElicitHook | None = None
    surface: str = ""
    """Where questions are shown (see the module docstring: legacy sessions' routing)."""
    on_task: TaskHook | None = None


def progress_note(progress: float, total: float | None, message: str | None) -> str:
    """A call's progress in a few plain words: "2 of 4 — indexing", "40% — indexing", "3"."""
    if total is not None and total > 0:
        amount = (
            f"{progress:g} of {total:g}"
            if total.is_integer() and total <= 1000
            else f"{progress / total:.0%}"
        )
    else:
        amount = f"{progress:g}"
    return f"{amount} — {message}" if message else amount
