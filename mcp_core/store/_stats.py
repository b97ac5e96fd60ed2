"""The SQL behind ``mcp_core.stats``: one person's daily rollups over a window, in one read.

Every query filters on the verified (team, user) and ``day >= since``, which the rollups'
primary keys (team, user, …) and their (team, day) indexes serve; none reads the raw rows,
except 👍 / 👎, which are few (one per vote) and joined to the turns they were given on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_core.store._tables import (
    agent_turns,
    answer_feedback,
    connections,
    turns_daily,
    usage_daily,
    usage_errors_daily,
    usage_latency_daily,
)

__all__ = ["RollupRows", "ToolRollup", "read_rollups"]


@dataclass
class ToolRollup:
    connection_id: uuid.UUID
    connection_name: str | None
    tool_name: str
    calls: int
    errors: int
    latency_ms_sum: float
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass
class RollupRows:
    tools: list[ToolRollup]
    errors_by_class: list[tuple[str, int]]
    models: list[tuple[str, int, int, int]]
    """(model, turns, prompt tokens, completion tokens)."""
    per_day: list[tuple[date, int, int]]
    feedback: dict[str, int]


async def read_rollups(conn: AsyncConnection, team_id: str, user_id: str, since: date) -> RollupRows:
    d, lat, err, td = usage_daily.c, usage_latency_daily.c, usage_errors_daily.c, turns_daily.c
    tools_query = (
        sa.select(
            d.connection_id,
            connections.c.name,
            d.tool_name,
            sa.func.sum(d.calls),
            sa.func.sum(d.errors),
            sa.func.sum(d.latency_ms_sum),
        )
        .select_from(
            usage_daily.outerjoin(
                connections,
                sa.and_(
                    connections.c.id == d.connection_id,
                    connections.c.team_id == team_id,
                    connections.c.user_id == user_id,
                ),
            )
        )
        .where(d.team_id == team_id, d.user_id == user_id, d.day >= since)
        .group_by(d.connection_id, connections.c.name, d.tool_name)
    )
    tools = {
        (cid, tool): ToolRollup(cid, name, tool, int(calls), int(errors), float(total))
        for cid, name, tool, calls, errors, total in (await conn.execute(tools_query)).all()
    }
    buckets_query = (
        sa.select(lat.connection_id, lat.tool_name, lat.bucket, sa.func.sum(lat.calls))
        .where(lat.team_id == team_id, lat.user_id == user_id, lat.day >= since)
        .group_by(lat.connection_id, lat.tool_name, lat.bucket)
    )
    for cid, tool, bucket, calls in (await conn.execute(buckets_query)).all():
        if (rollup := tools.get((cid, tool))) is not None:
            rollup.buckets[int(bucket)] = int(calls)
    errors_query = (
        sa.select(err.error_class, sa.func.sum(err.calls).label("n"))
        .where(err.team_id == team_id, err.user_id == user_id, err.day >= since)
        .group_by(err.error_class)
        .order_by(sa.desc("n"), err.error_class)
    )
    models_query = (
        sa.select(
            td.model,
            sa.func.sum(td.turns),
            sa.func.sum(td.prompt_tokens),
            sa.func.sum(td.completion_tokens),
        )
        .where(td.team_id == team_id, td.user_id == user_id, td.day >= since)
        .group_by(td.model)
        .order_by(td.model)
    )
    days_query = (
        sa.select(d.day, sa.func.sum(d.calls), sa.func.sum(d.errors))
        .where(d.team_id == team_id, d.user_id == user_id, d.day >= since)
        .group_by(d.day)
        .order_by(d.day)
    )
    f, t = answer_feedback.c, agent_turns.c
    asked_by_them = (
        sa.select(t.turn_id)
        .where(t.team_id == f.team_id, t.turn_id == f.turn_id, t.user_id == user_id)
        .exists()
    )
    feedback_query = (
        sa.select(f.vote, sa.func.count())
        .where(f.team_id == team_id, f.created_at >= _start_of(since), asked_by_them)
        .group_by(f.vote)
    )
    return RollupRows(
        tools=list(tools.values()),
        errors_by_class=[(str(c), int(n)) for c, n in (await conn.execute(errors_query)).all()],
        models=[(str(m), int(n), int(p), int(c)) for m, n, p, c in (await conn.execute(models_query)).all()],
        per_day=[(_day(day), int(c), int(e)) for day, c, e in (await conn.execute(days_query)).all()],
        feedback={str(v): int(n) for v, n in (await conn.execute(feedback_query)).all()},
    )


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
