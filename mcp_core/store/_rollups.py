"""Daily rollups of usage (migration 0011), written with the raw rows they sum.

A batch of tool calls and agent turns is summed in Python per (team, user, connection, tool,
UTC day) — calls, errors, latency sum, calls per latency bucket, calls per error class — and
per (team, user, model, day) for turns and tokens; each sum is one row of an executemany
upsert that adds to what the day already holds (``ON CONFLICT … DO UPDATE SET calls =
calls + excluded.calls``, the same on PostgreSQL and SQLite). So stats read a few rows per
day whatever the volume, and survive the pruning of raw rows (``USAGE_RETENTION_DAYS``).
Keys are sorted so concurrent batches lock rows in one order.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_core.models import TurnRecord, UsageRecord
from mcp_core.store._tables import turns_daily, usage_daily, usage_errors_daily, usage_latency_daily

__all__ = ["LATENCY_EDGES_MS", "NO_CONNECTION", "latency_bucket", "write_rollups"]

LATENCY_EDGES_MS = (
    1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000,
    15000, 20000, 30000, 60000, 120000,
)  # fmt: skip
"""Upper edges of the latency buckets (bucket i holds latencies below edge i; the last bucket,
``len(LATENCY_EDGES_MS)``, everything slower). Also in migration 0011's backfill."""
NO_CONNECTION = uuid.UUID(int=0)
"""The connection id of a call whose connection was gone before its row was written."""
DEFAULT_ERROR_CLASS = "Error"


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
        rows = [
            {**dict(zip(owner, key, strict=True)), "calls": c, "errors": e, "latency_ms_sum": s}
            for key, (c, e, s) in sorted(daily.items(), key=_order)
        ]
        await conn.execute(_adding(conn, usage_daily, ("calls", "errors", "latency_ms_sum")), rows)
    if latency:
        rows = [
            {**dict(zip((*owner, "bucket"), key, strict=True)), "calls": n}
            for key, n in sorted(latency.items(), key=_order)
        ]
        await conn.execute(_adding(conn, usage_latency_daily, ("calls",)), rows)
    if errors:
        rows = [
            {**dict(zip((*owner, "error_class"), key, strict=True)), "calls": n}
            for key, n in sorted(errors.items(), key=_order)
        ]
        await conn.execute(_adding(conn, usage_errors_daily, ("calls",)), rows)
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
        await conn.execute(_adding(conn, turns_daily, columns), rows)


def _adding(conn: AsyncConnection, table: sa.Table, counted: Sequence[str]) -> Any:
    """INSERT … ON CONFLICT (primary key) DO UPDATE adding ``counted`` to the stored row."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    keys = [column.name for column in table.primary_key.columns]
    return insert.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + insert.excluded[name] for name in counted},
    )


def _order(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])
