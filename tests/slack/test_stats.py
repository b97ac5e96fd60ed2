"""/mcp stats [7d|30d] and the App Home's usage section, sent as signed slash commands and
events: real calls recorded through the registry, read back from the daily rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot import texts
from mcp_core.models import TurnRecord, UsageRecord
from mcp_core.store._tables import connections
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, message_text
from tests.support.fake_slack import FakeSlack
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio


async def test_stats_show_calls_success_latency_errors_and_tokens_of_the_person_only(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    await slack.connect("toy", toy_server.url)
    catalog = {e.tool.name: e.name for e in await slack.services.registry.catalog(TEAM, USER)}
    for text in ("a", "b", "c"):
        await slack.services.registry.call(TEAM, USER, catalog["echo"], {"text": text})
    await slack.services.registry.call(TEAM, USER, catalog["fail"], {})
    now = datetime.now(UTC)
    slack.services.usage.record(
        TurnRecord(
            team_id=TEAM,
            user_id=USER,
            model="gpt-4o-mini",
            rounds=1,
            prompt_tokens=1500,
            completion_tokens=40,
            tool_calls=1,
            answered=True,
            created_at=now,
        )
    )
    slack.services.usage.record(  # someone else's: never in this person's stats
        UsageRecord(
            team_id=TEAM,
            user_id=USER_B,
            connection_id=None,
            tool_name="secret_tool",
            latency_ms=5,
            success=True,
            created_at=now,
        )
    )
    await slack.services.usage.flush()

    reply = await slack.command("stats")

    [body] = await slack.replies(reply)
    shown = message_text(body)
    assert body["response_type"] == "ephemeral"
    assert body["text"] == "4 tool calls in the last 7 days · 75% succeeded"
    assert "Your MCP usage, last 7 days" in shown
    assert "toy · `echo` — 3 · 100% ·" in shown
    assert "toy · `fail` — 1 · 0% ·" in shown
    assert "ToolReportedError 1" in shown
    assert "`gpt-4o-mini` — 1 answers · 1,500 prompt + 40 completion tokens" in shown
    assert "Set `MODEL_PRICES` to see estimated costs." in shown
    assert "secret_tool" not in shown


async def test_stats_30d_and_a_wrong_window(slack: SlackDriver) -> None:
    month = await slack.reply_text(await slack.command("stats 30d"))
    wrong = await slack.reply_text(await slack.command("stats 1y"))

    assert "No tool calls in the last 30 days." in month
    assert wrong == texts.STATS_WINDOWS


async def test_stats_suggest_what_to_do_about_an_unused_connection_and_a_failing_tool(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)
    catalog = {e.tool.name: e.name for e in await slack.services.registry.catalog(TEAM, USER)}
    for _ in range(5):
        await slack.services.registry.call(TEAM, USER, catalog["fail"], {})
    await slack.services.usage.flush()
    await slack.connect("old", toy_server.url)
    old = next(c for c in await slack.connections() if c.name == "old")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with slack.services.store._engine.begin() as conn:  # a connection made 40 days ago
        await conn.execute(
            sa.update(connections).where(connections.c.id == old.id).values(created_at=long_ago)
        )

    shown = await slack.reply_text(await slack.command("stats"))

    assert "*Suggestions*" in shown
    assert "`fail` on toy fails more than 20% of the time" in shown
    assert "`old` has not been used for 30 days" in shown
    assert connection.name == "toy"


async def test_the_home_tab_shows_the_last_weeks_usage(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    await slack.connect("toy", toy_server.url)
    catalog = {e.tool.name: e.name for e in await slack.services.registry.catalog(TEAM, USER)}
    await slack.services.registry.call(TEAM, USER, catalog["echo"], {"text": "x"})
    await slack.services.usage.flush()
    published = len(fake.calls("views.publish"))

    await slack.event({"type": "app_home_opened", "user": USER, "tab": "home"})

    [*_, home] = await fake.await_for("views.publish", published + 1)
    shown = message_text(home["body"])
    assert "Usage, last 7 days" in shown
    assert "1 tool calls in the last 7 days · 100% succeeded" in shown
    assert "toy · `echo` — 1 · 100% ·" in shown
