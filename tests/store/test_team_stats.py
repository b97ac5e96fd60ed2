"""A workspace's usage for its admins (``mcp_core.team_stats``, migration 0012) on SQLite and
PostgreSQL: calls are summed per server (card, URL host, stdio command name — never a path
or argument), teams stay apart, error rates rank servers, sign-in waits are listed, the CSV
cannot carry a formula, and the migration's backfill keys servers as the writer does."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from mcp_core.models import ConnectionStatus, NewConnection, UsageRecord
from mcp_core.store._migrations import default_sql_dir
from mcp_core.store._rollups import server_key
from mcp_core.store._tables import team_usage_daily
from mcp_core.team_stats import csv_export, team_stats

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

TODAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OTHER_TEAM = "T0002"


def call(connection, tool: str, *, ok: bool = True, latency_ms: float = 20.0) -> UsageRecord:
    return UsageRecord(
        team_id=connection.team_id,
        user_id=connection.user_id,
        connection_id=connection.id,
        tool_name=tool,
        latency_ms=latency_ms,
        success=ok,
        error_class=None if ok else "ServerError",
        created_at=NOON,
    )


async def connections(store):
    card = await store.create_connection(
        TEAM,
        USER,
        NewConnection(
            name="gh", card_id="github", transport="streamable_http", url="https://api.github.example/mcp"
        ),
    )
    url = await store.create_connection(
        TEAM,
        "U0002",
        NewConnection(
            name="wiki", transport="streamable_http", url="https://Wiki.Example.com:8443/mcp/secret-path?x=1"
        ),
    )
    stdio = await store.create_connection(
        TEAM,
        "U0003",
        NewConnection(
            name="files",
            transport="stdio",
            command="/usr/local/bin/mcp-files",
            args=["--root", "/home/secret"],
        ),
    )
    elsewhere = await store.create_connection(
        OTHER_TEAM,
        USER,
        NewConnection(
            name="gh", card_id="github", transport="streamable_http", url="https://api.github.example/mcp"
        ),
    )
    return card, url, stdio, elsewhere


def test_a_server_is_its_card_its_host_or_its_command_name() -> None:
    assert server_key("github", "https://x.example/mcp", None) == "card:github"
    assert server_key(None, "https://Wiki.Example.com:8443/a/b?token=1#f", None) == "url:wiki.example.com"
    assert server_key(None, None, "/usr/bin/node") == "stdio:node"
    assert server_key(None, None, "npx") == "stdio:npx"
    assert server_key("custom", "https://mine.example/mcp", None) == "url:mine.example"


async def test_workspace_stats_sum_calls_per_server_and_keep_teams_apart(store) -> None:
    card, url, stdio, elsewhere = await connections(store)
    await store.record_usage(
        [call(card, "search") for _ in range(6)]
        + [call(url, "page", ok=False) for _ in range(4)]
        + [call(url, "page")]
        + [call(stdio, "read", latency_ms=100.0) for _ in range(2)]
        + [call(elsewhere, "search") for _ in range(50)]
    )

    stats = await team_stats(store, TEAM, 7, {}, today=TODAY)

    assert (stats.calls, stats.errors) == (13, 4)
    assert [(t.server, t.tool, t.calls) for t in stats.busiest] == [
        ("card:github", "search", 6),
        ("url:wiki.example.com", "page", 5),
        ("stdio:mcp-files", "read", 2),
    ]
    assert [(s.server, s.errors, s.calls) for s in stats.servers] == [
        ("url:wiki.example.com", 4, 5),
        ("card:github", 0, 6),
    ]  # stdio:mcp-files has fewer calls than a rate needs
    assert (stats.connections, stats.people_with_connections) == (3, 3)
    assert {(c.card_id, c.connections) for c in stats.cards} == {("github", 1), (None, 2)}
    assert stats.per_day[-1] == (TODAY, 13, 4)
    assert len(stats.per_day) == 7
    assert stats.errors_by_class == [("ServerError", 4)]
    other = await team_stats(store, OTHER_TEAM, 7, {}, today=TODAY)
    assert (other.calls, other.connections) == (50, 1)


async def test_connections_waiting_for_a_sign_in_are_listed(store) -> None:
    oauth = NewConnection(
        name="linear",
        transport="streamable_http",
        url="https://mcp.linear.example/mcp",
        config={"oauth": {"grant": "authorization_code"}},
    )
    waiting = await store.create_connection(TEAM, USER, oauth)
    await store.set_status(TEAM, USER, waiting.id, ConnectionStatus.NEEDS_AUTH)

    stats = await team_stats(store, TEAM, 7, {}, today=TODAY)

    assert [(w.user_id, w.connection_name, w.server) for w in stats.sign_in] == [
        (USER, "linear", "url:mcp.linear.example")
    ]


async def test_the_csv_export_neutralises_formulas_in_tool_names(store) -> None:
    card, *_ = await connections(store)
    await store.record_usage([call(card, '=HYPERLINK("http://evil")'), call(card, "search")])

    rows = list(csv.reader(io.StringIO(csv_export(await team_stats(store, TEAM, 7, {}, today=TODAY)))))

    assert rows[0] == ["since", "days", "server", "tool", "calls", "errors", "error_rate", "avg_ms"]
    tools = {row[3] for row in rows[1:]}
    assert tools == {"search", '\'=HYPERLINK("http://evil")'}


async def test_the_migration_backfill_keys_servers_like_the_writer(store, engine) -> None:
    card, url, stdio, _ = await connections(store)
    await store.record_usage([call(card, "search"), call(url, "page", ok=False), call(stdio, "read")])
    select = sa.select(team_usage_daily).order_by(team_usage_daily.c.server, team_usage_daily.c.tool_name)
    async with engine.begin() as conn:
        written = (await conn.execute(select)).all()
        await conn.execute(sa.delete(team_usage_daily))
        await conn.exec_driver_sql(_backfill_statement(engine.dialect.name))
        backfilled = (await conn.execute(select)).all()
    assert backfilled == written
    assert len(written) == 3


def _backfill_statement(dialect: str) -> str:
    folder = default_sql_dir() / "sqlite" if dialect == "sqlite" else default_sql_dir()
    text = (folder / "0012_admin_policy.sql").read_text()
    start = text.index("INSERT INTO mcp_team_usage_daily")
    return text[start : text.index(";", start)]
