"""The newest usage chart per person (migration 0012), on SQLite and PostgreSQL: a new one
replaces the old, people and workspaces stay apart, and the Home reads it with the usage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from mcp_core.models import UsageRecord
from mcp_core.stats import home_stats

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

OTHER_USER, OTHER_TEAM = "U0002", "T0002"


async def test_a_person_has_no_chart_until_one_is_saved_and_a_new_one_replaces_it(store) -> None:
    assert await store.usage_chart(TEAM, USER) is None

    first = await store.save_usage_chart(TEAM, USER, file_id="F1", permalink="https://x/files/F1", days=7)
    second = await store.save_usage_chart(TEAM, USER, file_id="F2", permalink="https://x/files/F2", days=30)

    newest = await store.usage_chart(TEAM, USER)
    assert newest == second
    assert (newest.file_id, newest.permalink, newest.days) == ("F2", "https://x/files/F2", 30)
    assert newest.created_at >= first.created_at
    assert newest.created_at.tzinfo is not None


async def test_charts_are_kept_per_team_and_user(store) -> None:
    await store.save_usage_chart(TEAM, USER, file_id="F1", permalink="https://x/1", days=7)
    await store.save_usage_chart(TEAM, OTHER_USER, file_id="F2", permalink="https://x/2", days=7)
    await store.save_usage_chart(OTHER_TEAM, USER, file_id="F3", permalink="https://x/3", days=30)

    found = {
        (team, user): chart.file_id if (chart := await store.usage_chart(team, user)) else None
        for team in (TEAM, OTHER_TEAM)
        for user in (USER, OTHER_USER)
    }
    assert found == {
        (TEAM, USER): "F1",
        (TEAM, OTHER_USER): "F2",
        (OTHER_TEAM, USER): "F3",
        (OTHER_TEAM, OTHER_USER): None,
    }


async def test_the_home_reads_usage_and_the_chart_in_one_transaction(store) -> None:
    today = datetime.now(UTC).date()
    await store.record_usage(
        [
            UsageRecord(
                team_id=TEAM,
                user_id=USER,
                connection_id=None,
                tool_name="echo",
                latency_ms=5,
                success=True,
                created_at=datetime.now(UTC) - timedelta(days=1),
            )
        ]
    )
    await store.save_usage_chart(TEAM, USER, file_id="F1", permalink="https://x/1", days=7)
    begun = 0

    def on_begin(conn: sa.Connection) -> None:
        nonlocal begun
        begun += 1

    sa.event.listen(store.engine.sync_engine, "begin", on_begin)
    try:
        stats, chart = await home_stats(store, TEAM, USER, 7, today=today)
    finally:
        sa.event.remove(store.engine.sync_engine, "begin", on_begin)

    assert begun == 1
    assert chart is not None
    assert chart.file_id == "F1"
    assert stats.calls == 1
    assert [calls for _, calls, _ in stats.per_day] == [0, 0, 0, 0, 0, 1, 0]
    assert stats.since == today - timedelta(days=6)
    assert isinstance(stats.since, date)
