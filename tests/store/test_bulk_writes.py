"""``execute_many`` (the usage writer's one-trip executemany on SQLite) writes exactly what
SQLAlchemy's own ``conn.execute(stmt, rows)`` writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.errors import StoreError
from mcp_core.models import UsageRecord
from mcp_core.store import create_engine, migrate
from mcp_core.store._bulk import execute_many
from mcp_core.store._rollups import _adding
from mcp_core.store._tables import connections, tool_usage, usage_daily
from mcp_core.store._usage import BUMP_COUNTERS, INSERT_ROWS, batch_params

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

BERLIN = timezone(timedelta(hours=1))


def _calls(connection_id: uuid.UUID) -> list[UsageRecord]:
    common = {"team_id": TEAM, "user_id": USER, "tool_name": "sök ✓"}
    return [
        UsageRecord(
            **common,
            connection_id=connection_id,
            latency_ms=1.25,
            success=True,
            created_at=datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        UsageRecord(  # someone else's connection id: kept with no link
            **common,
            connection_id=uuid.uuid4(),
            latency_ms=0,
            success=False,
            error_class="McpServerError",
            error_message="it said “no”",
            created_at=datetime(2026, 3, 10, 13, 30, tzinfo=BERLIN),
        ),
    ]


async def _written(engine: AsyncEngine, bulk: bool, connection_id: uuid.UUID) -> tuple[list, list, list]:
    """Write one batch's counters, rows and a daily rollup added twice; read back what landed."""
    counters, inserts = batch_params(_calls(connection_id))
    daily = [
        {
            "team_id": TEAM,
            "user_id": USER,
            "connection_id": connection_id,
            "tool_name": "sök ✓",
            "day": date(2026, 3, 10),
            "calls": 2,
            "errors": 1,
            "latency_ms_sum": 1.25,
        }
    ]
    async with engine.begin() as conn:
        for table in (tool_usage, usage_daily):
            await conn.execute(sa.delete(table))
        await conn.execute(sa.update(connections).values(usage_count=0, last_used_at=None))
        upsert = _adding(conn, usage_daily, ("calls", "errors", "latency_ms_sum"))
        for stmt, rows in (
            (BUMP_COUNTERS, counters),
            (INSERT_ROWS, inserts),
            (upsert, daily),
            (upsert, daily),
        ):
            if bulk:
                await execute_many(conn, stmt, rows)
            else:
                await conn.execute(stmt, rows)
    async with engine.connect() as conn:
        usage = (await conn.execute(sa.select(tool_usage).order_by(tool_usage.c.created_at))).all()
        rollup = (await conn.execute(sa.select(usage_daily))).all()
        counted = (await conn.execute(sa.select(connections.c.usage_count, connections.c.last_used_at))).all()
    return [{k: v for k, v in row._mapping.items() if k != "id"} for row in usage], rollup, counted


async def test_a_usage_batch_lands_the_same_through_execute_many_and_sqlalchemy(engine, connect) -> None:
    connection = await connect()
    expected = await _written(engine, False, connection.id)
    assert await _written(engine, True, connection.id) == expected
    usage, rollup, counted = expected
    assert [(row["connection_id"], row["error_message"]) for row in usage] == [
        (connection.id, None),
        (None, "it said “no”"),
    ]
    assert [(row.calls, row.errors) for row in rollup] == [(4, 2)]
    assert counted == [(1, datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC))]


async def test_execute_many_refuses_rows_that_leave_a_parameter_unset(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")  # other databases: SQLAlchemy's own error
    await migrate(engine)
    try:
        async with engine.begin() as conn:
            with pytest.raises(TypeError, match="owner_team"):
                await execute_many(conn, INSERT_ROWS, [{"team_id": TEAM, "user_id": USER}])
    finally:
        await engine.dispose()


async def test_a_batch_the_database_refuses_is_a_store_error_and_writes_nothing(
    store, engine, connect
) -> None:
    connection = await connect()
    good, bad = (
        UsageRecord(
            team_id=TEAM,
            user_id=USER,
            connection_id=connection.id,
            tool_name="echo",
            latency_ms=latency,
            success=True,
            created_at=datetime(2026, 3, 10, 12, tzinfo=UTC),
        )
        for latency in (1.0, -1.0)  # the table's CHECK refuses a negative latency
    )

    with pytest.raises(StoreError):
        await store.record_usage([good, bad])

    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one() == 0
        assert (await conn.execute(sa.select(sa.func.count()).select_from(usage_daily))).scalar_one() == 0
