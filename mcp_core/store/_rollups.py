"""Daily rollups of usage (migration 0011), written with the raw rows they sum.

A batch of tool calls and agent turns is summed in Python per (team, user, connection, tool,
UTC day) — calls, errors, latency sum, calls per latency bucket, calls per error class — and
per (team, user, model, day) for turns and tokens; each sum is one row of an executemany
upsert that adds to what the day already holds (``ON CONFLICT … DO UPDATE SET calls =
calls + excluded.calls``, the same on PostgreSQL and SQLite). So stats read a few rows per
day whatever the volume, and survive the pruning of raw rows (``USAGE_RETENTION_DAYS``).
Keys are sorted so concurrent batches lock rows in one order.

The calls are summed once more per (team, server, tool, day) for ``/mcp admin`` (0012): the
server is the connection's run card, its URL's host or its stdio command's name
(``server_key``; never a path, query or argument, which may hold secrets), looked up in the
same transaction.
"""

from __future__ import annotations

import bisect
import functools
import posixpath
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_core.models import TurnRecord, UsageRecord
from mcp_core.store._bulk import execute_many
from mcp_core.store._tables import (
    connections,
    team_usage_daily,
    turns_daily,
    usage_daily,
    usage_errors_daily,
    usage_latency_daily,
)

__all__ = [
    "LATENCY_EDGES_MS",
    "NO_CONNECTION",
    "REMOVED_SERVER",
    "latency_bucket",
    "server_key",
    "write_rollups",
]

LATENCY_EDGES_MS = (
    1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000,
    15000, 20000, 30000, 60000, 120000,
)  # fmt: skip
"""Upper edges of the latency buckets (bucket i holds latencies below edge i; the last bucket,
``len(LATENCY_EDGES_MS)``, everything slower). Also in migration 0011's backfill."""
NO_CONNECTION = uuid.UUID(int=0)
"""The connection id of a call whose connection was gone before its row was written."""
DEFAULT_ERROR_CLASS = "Error"
CUSTOM_CARD = "custom"
REMOVED_SERVER = "removed"
"""The server of calls whose connection is gone."""


def server_key(card_id: str | None, url: str | None, command: str | None) -> str:
    """Which server a connection talks to, for workspace stats: ``card:<id>``, ``url:<host>``
    or ``stdio:<command name>``. The built-in ``custom`` card's connections are each a server
    of the person's choosing, so they count by host. Migration 0012's backfill computes the
    same in SQL."""
    if card_id and card_id != CUSTOM_CARD:
        return f"card:{card_id}"
    if url:
        host = urlsplit(url).netloc.split("@")[-1]
        return f"url:{host.split(':')[0].lower()}"
    return f"stdio:{posixpath.basename(command or '')}"


def latency_bucket(latency_ms: float) -> int:
    return bisect.bisect_right(LATENCY_EDGES_MS, latency_ms)


async def write_rollups(
    conn: AsyncConnection, calls: Sequence[UsageRecord], turns: Sequence[TurnRecord]
) -> None:
    """Add one batch to the daily rollups, in the caller's transaction."""
    daily: dict[tuple[Any, ...], list[float]] = {}
    latency: dict[tuple[Any, ...], int] = {}
    errors: dict[tuple[Any, ...], int] = {}
    for call in calls:
        key = (
            call.team_id,
            call.user_id,
            call.connection_id or NO_CONNECTION,
            call.tool_name,
            call.created_at.date(),
        )
        sums = daily.setdefault(key, [0, 0, 0.0])
        sums[0] += 1
        sums[1] += 0 if call.success else 1
        sums[2] += call.latency_ms
        bucket = (*key, latency_bucket(call.latency_ms))
        latency[bucket] = latency.get(bucket, 0) + 1
        if not call.success:
            failed = (*key, (call.error_class or DEFAULT_ERROR_CLASS)[:100])
            errors[failed] = errors.get(failed, 0) + 1
    tokens: dict[tuple[Any, ...], list[int]] = {}
    for turn in turns:
        key = (turn.team_id, turn.user_id, turn.model[:200], turn.created_at.date())
        sums_t = tokens.setdefault(key, [0, 0, 0, 0])
        sums_t[0] += 1
        sums_t[1] += 1 if turn.answered else 0
        sums_t[2] += turn.prompt_tokens or 0
        sums_t[3] += turn.completion_tokens or 0
    owner = ("team_id", "user_id", "connection_id", "tool_name", "day")
    if daily:
        known = {(c.team_id, c.connection_id): c.server for c in calls if c.server and c.connection_id}
        await _write_team_rollup(conn, daily, known)
        rows = [
            {**dict(zip(owner, key, strict=True)), "calls": c, "errors": e, "latency_ms_sum": s}
            for key, (c, e, s) in sorted(daily.items(), key=_order)
        ]
        await execute_many(conn, _adding(conn, usage_daily, ("calls", "errors", "latency_ms_sum")), rows)
    if latency:
        rows = [
            {**dict(zip((*owner, "bucket"), key, strict=True)), "calls": n}
            for key, n in sorted(latency.items(), key=_order)
        ]
        await execute_many(conn, _adding(conn, usage_latency_daily, ("calls",)), rows)
    if errors:
        rows = [
            {**dict(zip((*owner, "error_class"), key, strict=True)), "calls": n}
            for key, n in sorted(errors.items(), key=_order)
        ]
        await execute_many(conn, _adding(conn, usage_errors_daily, ("calls",)), rows)
    if tokens:
        names = ("team_id", "user_id", "model", "day")
        rows = [
            {
                **dict(zip(names, key, strict=True)),
                "turns": t,
                "answered": a,
                "prompt_tokens": p,
                "completion_tokens": c,
            }
            for key, (t, a, p, c) in sorted(tokens.items(), key=_order)
        ]
        columns = ("turns", "answered", "prompt_tokens", "completion_tokens")
        await execute_many(conn, _adding(conn, turns_daily, columns), rows)


async def _write_team_rollup(
    conn: AsyncConnection, daily: dict[tuple[Any, ...], list[float]], known: dict[tuple[str, uuid.UUID], str]
) -> None:
    """``known``: server keys the calls carried (the registry's); the others are read here."""
    ids = sorted({key[2] for key in daily if key[2] != NO_CONNECTION and (key[0], key[2]) not in known})
    servers: dict[tuple[str, uuid.UUID], str] = dict(known)
    if ids:
        c = connections.c
        query = sa.select(c.team_id, c.id, c.card_id, c.url, c.command).where(c.id.in_(ids))
        for team_id, cid, card_id, url, command in (await conn.execute(query)).all():
            servers[(team_id, cid)] = server_key(card_id, url, command)
    team: dict[tuple[Any, ...], list[float]] = {}
    for (team_id, _user, cid, tool, day), (calls, errors, total) in daily.items():
        key = (team_id, servers.get((team_id, cid), REMOVED_SERVER), tool, day)
        sums = team.setdefault(key, [0, 0, 0.0])
        sums[0] += calls
        sums[1] += errors
        sums[2] += total
    names = ("team_id", "server", "tool_name", "day")
    rows = [
        {**dict(zip(names, key, strict=True)), "calls": c, "errors": e, "latency_ms_sum": t}
        for key, (c, e, t) in sorted(team.items(), key=_order)
    ]
    await execute_many(conn, _adding(conn, team_usage_daily, ("calls", "errors", "latency_ms_sum")), rows)


def _adding(conn: AsyncConnection, table: sa.Table, counted: tuple[str, ...]) -> Any:
    """INSERT … ON CONFLICT (primary key) DO UPDATE adding ``counted`` to the stored row."""
    return _upsert(conn.dialect.name, table, counted)


@functools.cache
def _upsert(dialect: str, table: sa.Table, counted: tuple[str, ...]) -> Any:
    """Built once per (dialect, table): building the construct and its cache key again cost
    more than executing it (~0.5 ms of every batch's write)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    keys = [column.name for column in table.primary_key.columns]
    return insert.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + insert.excluded[name] for name in counted},
    )


def _order(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])
