"""A removed workspace's data after its grace period (``mcp_core.workspace_purge``): every
person's connections go through the connection service (sessions closed, secrets deleted),
then every row of the team; another workspace keeps everything, and a workspace whose grace
period is not over (or that reinstalled) is not touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mcp_core.models import UsageRecord
from mcp_core.policy import Policy, change_policy
from mcp_core.store._tables import credentials, tool_usage
from mcp_core.workspace_purge import WorkspacePurger
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver
from tests.support.registry import BEARER, toy
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio

OTHER = "T_OTHER_WS"


async def test_a_workspace_past_its_grace_period_loses_everything_and_others_nothing(
    slack: SlackDriver, bearer_server: RunningServer
) -> None:
    services = slack.services
    await slack.connect("mine", bearer_server.url, token=BEARER)
    await slack.connect("bobs", bearer_server.url, token=BEARER, user=USER_B)
    kept = await services.registry.add_connection(OTHER, USER, toy("kept"))
    assert kept.error is None
    await change_policy(services.store, TEAM, USER, Policy(custom_urls=False))
    services.usage.record(
        UsageRecord(
            team_id=TEAM,
            user_id=USER,
            connection_id=None,
            tool_name="t",
            latency_ms=1,
            success=True,
            created_at=datetime.now(UTC),
        )
    )
    await services.usage.flush()
    await services.store.schedule_workspace_removal(
        "", TEAM, "app_uninstalled", datetime.now(UTC) - timedelta(seconds=1)
    )
    await services.store.schedule_workspace_removal(
        "", "T_LATER", "app_uninstalled", datetime.now(UTC) + timedelta(days=1)
    )

    purged = await WorkspacePurger(services.store, services.connections).purge_due()

    assert purged == 1
    assert await slack.connections() == []
    assert await slack.connections(USER_B) == []
    assert [c.name for c in await services.store.list_connections(OTHER, USER)] == ["kept"]
    assert await services.store.workspace_policy(TEAM) is None
    async with services.store.engine.connect() as conn:
        owners = {r.team_id for r in (await conn.execute(sa.select(credentials.c.team_id))).all()}
        usage = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(tool_usage).where(tool_usage.c.team_id == TEAM)
            )
        ).scalar_one()
    assert TEAM not in owners
    assert usage == 0
    assert await services.store.due_workspace_removals() == []
    assert await WorkspacePurger(services.store, services.connections).purge_due() == 0
