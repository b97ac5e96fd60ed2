"""How log lines look (LOG_FORMAT) and which turn they belong to.

    use_format("json")                  # bot.cli, once the settings are read
    with in_turn(turn.id): ...          # bot.chat, around one agent turn

``json`` writes one JSON object per line — ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``turn_id`` while an agent turn runs, ``exception`` with the traceback's text —
for a log collector to index; ``text`` is the plain line people read.

The turn's id lives in a ``ContextVar``: tasks started during the turn copy it, so their lines
carry it too. Tasks that outlive the turn (an MCP session's owner, the idle reaper, the usage
writer) are started in :func:`outside_turns` instead, or every later line of theirs would name
the turn that happened to start them.

Secrets: the formatter writes ``record.getMessage()``, what the loggers' own filters already
cleaned (``bot.oauth_web.NoQueryStrings``, ``mcp_core._transports``' URL redaction, …), since
logger filters run before any handler; it adds no field of its own that could carry one.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "TEXT_FORMAT",
    "TURN_ID",
    "JsonFormatter",
    "LogFormat",
    "TurnIdFilter",
    "in_turn",
    "outside_turns",
    "use_format",
]

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TURN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("turn_id", default=None)
"""The id of the agent turn the current task works for (``bot.stops.RunningTurn.id``), if any."""


@contextmanager
def in_turn(turn_id: str) -> Iterator[None]:
    """Lines logged inside the block (and in tasks it starts) carry ``turn_id``."""
    token = TURN_ID.set(turn_id)
    try:
        yield
    finally:
        TURN_ID.reset(token)


def outside_turns() -> contextvars.Context:
    """A copy of the current context without a turn id: for ``asyncio.create_task(...,
    context=outside_turns())`` of a task that outlives the turn starting it."""
    context = contextvars.copy_context()
    context.run(TURN_ID.set, None)
    return context


class TurnIdFilter(logging.Filter):
    """Puts the running turn's id on each record (``record.turn_id``, None outside turns).
    A handler's filter, so it sees every record that reaches the handler, from any logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.turn_id = TURN_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        turn_id = getattr(record, "turn_id", None)
        if turn_id is None:
            turn_id = TURN_ID.get()
        if turn_id is not None:
            line["turn_id"] = turn_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def use_format(log_format: LogFormat, handlers: Iterable[logging.Handler] | None = None) -> None:
    """Format the root logger's handlers (or ``handlers``) as ``log_format``, each with the
    turn id filter (added once)."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
        if not any(isinstance(f, TurnIdFilter) for f in handler.filters):
            handler.addFilter(TurnIdFilter())
