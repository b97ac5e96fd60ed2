"""The SQL behind ``mcp_core.team_stats``: a workspace's usage over a window, for its admins.

Tool calls are read from the workspace rollup (``mcp_team_usage_daily``, 0012: per server,
tool and day, so a window is a few thousand rows whatever the workspace's size); turns,
tokens and errors by class from 0011's per-person rollups through their (team, day)
indexes; connections from ``mcp_connections`` (one row per connection). Counts and names of
servers and tools only: never a URL's path, a command's arguments, a call's arguments or a
secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_core.models import Connection, ConnectionStatus
from mcp_core.store._rollups import server_key
from mcp_core.store._tables import connections, team_usage_daily, turns_daily, usage_errors_daily

__all__ = ["TeamRows", "read_team_rollups"]


@dataclass
class TeamRows:
    tools: list[tuple[str, str, int, int, float]]
    """(server, tool, calls, errors, latency sum ms) over the window."""
    per_day: list[tuple[date, int, int]]
    errors_by_class: list[tuple[str, int]]
    models: list[tuple[str, int, int, int]]
    """(model, turns, prompt tokens, completion tokens)."""
    people_asking: int
    cards: list[tuple[str | None, int, int]]
    """(card id or None for custom, connections, people) over every connection of the team."""
    servers: dict[str, int]
    """Connections per server key (``_rollups.server_key``)."""
    needs_auth: list[Connection]


async def read_team_rollups(conn: AsyncConnection, team_id: str, since: date) -> TeamRows:
    u, td, err, c = team_usage_daily.c, turns_daily.c, usage_errors_daily.c, connections.c
    tools_query = (
        sa.select(
            u.server, u.tool_name, sa.func.sum(u.calls), sa.func.sum(u.errors), sa.func.sum(u.latency_ms_sum)
        )
        .where(u.team_id == team_id, u.day >= since)
        .group_by(u.server, u.tool_name)
    )
    days_query = (
        sa.select(u.day, sa.func.sum(u.calls), sa.func.sum(u.errors))
        .where(u.team_id == team_id, u.day >= since)
        .group_by(u.day)
        .order_by(u.day)
    )
    errors_query = (
        sa.select(err.error_class, sa.func.sum(err.calls).label("n"))
        .where(err.team_id == team_id, err.day >= since)
        .group_by(err.error_class)
        .order_by(sa.desc("n"), err.error_class)
    )
    models_query = (
        sa.select(
            td.model, sa.func.sum(td.turns), sa.func.sum(td.prompt_tokens), sa.func.sum(td.completion_tokens)
        )
        .where(td.team_id == team_id, td.day >= since)
        .group_by(td.model)
        .order_by(td.model)
    )
    # count(*) over a GROUP BY, not count(DISTINCT): PostgreSQL's DISTINCT sorts, and spills
    # past the default work_mem at 10M calls (bench/stats.py: 86 → 24 ms).
    askers = sa.select(td.user_id).where(td.team_id == team_id, td.day >= since).group_by(td.user_id)
    people_query = sa.select(sa.func.count()).select_from(askers.subquery())
    cards_query = (
        sa.select(c.card_id, sa.func.count(), sa.func.count(sa.distinct(c.user_id)))
        .where(c.team_id == team_id)
        .group_by(c.card_id)
    )
    servers_query = sa.select(c.card_id, c.url, c.command).where(c.team_id == team_id)
    auth_query = (
        sa.select(connections)
        .where(c.team_id == team_id, c.status == ConnectionStatus.NEEDS_AUTH.value)
        .order_by(c.user_id, c.name)
    )
    servers: dict[str, int] = {}
    for card_id, url, command in (await conn.execute(servers_query)).all():
        key = server_key(card_id, url, command)
        servers[key] = servers.get(key, 0) + 1
    return TeamRows(
        tools=[
            (str(s), str(t), int(n), int(e), float(ms))
            for s, t, n, e, ms in (await conn.execute(tools_query)).all()
        ],
        per_day=[(_day(d), int(n), int(e)) for d, n, e in (await conn.execute(days_query)).all()],
        errors_by_class=[(str(k), int(n)) for k, n in (await conn.execute(errors_query)).all()],
        models=[(str(m), int(n), int(p), int(o)) for m, n, p, o in (await conn.execute(models_query)).all()],
        people_asking=int((await conn.execute(people_query)).scalar_one()),
        cards=[(card, int(n), int(p)) for card, n, p in (await conn.execute(cards_query)).all()],
        servers=servers,
        needs_auth=[
            Connection.model_validate(dict(row._mapping)) for row in (await conn.execute(auth_query)).all()
        ],
    )


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
