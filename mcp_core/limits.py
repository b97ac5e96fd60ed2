"""Per-person limits, so one member of a workspace cannot exhaust the bot for everyone else.

* Agent answers in progress at once (``AGENT_MAX_TURNS_PER_USER``): a turn holds a slot from
  its first message to its answer, waiting for an approval included.
* Tool calls per rolling minute (``MCP_MAX_CALLS_PER_MINUTE``): counted when a call is sent.
* Connections kept (``MCP_MAX_CONNECTIONS_PER_USER``) is a property of stored data, so the
  registry checks it against the store; this module only words the refusal.

The first two are counted in this process: with several processes behind one Slack app a
person gets at most that many per process. They live in memory on purpose — a database round
trip per tool call would cost more than the abuse it prevents — and every key is the verified
(team, user), so one person's count never touches another's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mcp_core.errors import LimitError

__all__ = ["CALL_WINDOW_S", "UserLimits", "too_many_connections"]

CALL_WINDOW_S = 60.0

Person = tuple[str, str]


def too_many_connections(limit: int) -> str:
    return (
        f"You already have {limit} connections, the most this bot allows per person "
        "(MCP_MAX_CONNECTIONS_PER_USER). Remove one with `/mcp disconnect <name>` first."
    )


class UserLimits:
    """Answers in progress and tool calls per minute, per (team, user)."""

    def __init__(
        self, *, max_turns: int, max_calls_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._max_turns = max_turns
        self._max_calls = max_calls_per_minute
        self._turns: dict[Person, int] = {}
        self._calls: dict[Person, deque[float]] = {}

    @contextmanager
    def turn(self, team_id: str, user_id: str) -> Iterator[None]:
        """Hold one of the person's answer slots for the duration of the block.

        Raises:
            LimitError: the person already has ``max_turns`` answers in progress.
        """
        key = (team_id, user_id)
        running = self._turns.get(key, 0)
        if running >= self._max_turns:
            raise LimitError(
                f"You already have {running} answer{'s' if running != 1 else ''} in progress, the most "
                "this bot works on at once for one person. Ask again when one of them is done."
            )
        self._turns[key] = running + 1
        try:
            yield
        finally:
            left = self._turns[key] - 1
            if left:
                self._turns[key] = left
            else:
                del self._turns[key]

    def count_call(self, team_id: str, user_id: str) -> None:
        """Count one tool call now.

        Raises:
            LimitError: the person made ``max_calls_per_minute`` calls in the last minute
                (this one is not counted and must not be sent).
        """
        now = self._clock()
        window = self._calls.setdefault((team_id, user_id), deque())
        while window and now - window[0] >= CALL_WINDOW_S:
            window.popleft()
        if len(window) >= self._max_calls:
            wait_s = max(1, round(CALL_WINDOW_S - (now - window[0])))
            raise LimitError(
                f"You made {len(window)} tool calls in the last minute, the most this bot allows "
                f"per person (MCP_MAX_CALLS_PER_MINUTE). This call was not sent; try again in {wait_s} s."
            )
        window.append(now)
