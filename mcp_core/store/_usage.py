"""The SQL behind tool-usage analytics: the batched write and the per-tool summary.

Kept apart from ``_store.py`` because the write path is tuned for the background batcher:
whatever the batch size, it is one executemany UPDATE of the touched connections' counters
and one executemany INSERT of the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mcp_core.models import UsageRecord
from mcp_core.store._tables import UtcDateTime, connections, tool_usage

__all__ = ["BUMP_COUNTERS", "INSERT_ROWS", "ToolUsageSummary", "batch_params", "summary_query"]

# Error texts arrive scrubbed; the cap keeps one chatty server from bloating the table.
MAX_ERROR_MESSAGE_CHARS = 1000


class ToolUsageSummary(BaseModel):
    """Calls of one tool on one connection: how many, how many failed, how fast on average."""

    model_config = ConfigDict(frozen=True)

    connection_id: uuid.UUID | None
    """None once the connection was deleted; its usage is kept."""
    connection_name: str | None
    tool_name: str
    calls: int
    errors: int
    avg_latency_ms: float
    last_called_at: datetime


def _owner_matches() -> tuple[sa.ColumnElement[bool], ...]:
    # Named binds: the row's own team_id/user_id binds are taken by the INSERT's VALUES.
    return (
        connections.c.id == sa.bindparam("owner_connection", type_=sa.Uuid),
        connections.c.team_id == sa.bindparam("owner_team", type_=sa.Text),
        connections.c.user_id == sa.bindparam("owner_user", type_=sa.Text),
    )


_used_at = sa.bindparam("used_at", type_=UtcDateTime())
_last_used = connections.c.last_used_at

BUMP_COUNTERS = (
    sa.update(connections)
    .where(*_owner_matches())
    .values(
        usage_count=connections.c.usage_count + sa.bindparam("calls", type_=sa.BigInteger),
        # Batches may arrive out of order; last_used_at only moves forward.
        last_used_at=sa.case(
            (sa.or_(_last_used.is_(None), _last_used < _used_at), _used_at), else_=_last_used
        ),
    )
)

# The link is looked up, not trusted: a missing or someone else's connection id becomes NULL,
# so a connection deleted while its calls waited in the batcher cannot fail the whole batch.
INSERT_ROWS = sa.insert(tool_usage).values(
    connection_id=sa.select(connections.c.id).where(*_owner_matches()).scalar_subquery()
)


def batch_params(rows: Sequence[UsageRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parameters for :data:`BUMP_COUNTERS` (one per connection) and :data:`INSERT_ROWS`."""
    totals: dict[tuple[str, str, uuid.UUID], tuple[int, datetime]] = {}
    for row in rows:
        if row.connection_id is not None:
            key = (row.team_id, row.user_id, row.connection_id)
            calls, last = totals.get(key, (0, row.created_at))
            totals[key] = (calls + 1, max(last, row.created_at))
    # Sorted so concurrent batches lock connection rows in the same order (no deadlocks).
    counters = [
        {"owner_team": team, "owner_user": user, "owner_connection": cid, "calls": calls, "used_at": last}
        for (team, user, cid), (calls, last) in sorted(totals.items(), key=lambda item: str(item[0][2]))
    ]
    inserts = [
        {
            "team_id": row.team_id,
            "user_id": row.user_id,
            "tool_name": row.tool_name,
            "latency_ms": row.latency_ms,
            "success": row.success,
            "error_class": row.error_class,
            "created_at": row.created_at,
            "error_message": _capped(row.error_message),
            "owner_team": row.team_id,
            "owner_user": row.user_id,
            "owner_connection": row.connection_id,
        }
        for row in rows
    ]
    return counters, inserts


def summary_query(team_id: str, user_id: str, since: datetime | None) -> sa.Select[Any]:
    """Calls, errors, average latency and last call per (connection, tool) for one user."""
    u = tool_usage.c
    query = (
        sa.select(
            u.connection_id,
            connections.c.name.label("connection_name"),
            u.tool_name,
            sa.func.count().label("calls"),
            sa.func.count().filter(u.success == sa.false()).label("errors"),
            sa.func.avg(u.latency_ms).label("avg_latency_ms"),
            sa.func.max(u.created_at).label("last_called_at"),
        )
        .select_from(tool_usage.outerjoin(connections, connections.c.id == u.connection_id))
        .where(u.team_id == team_id, u.user_id == user_id)
        .group_by(u.connection_id, connections.c.name, u.tool_name)
        .order_by(connections.c.name.nulls_last(), u.tool_name)
    )
    return query if since is None else query.where(u.created_at >= since)


def _capped(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
