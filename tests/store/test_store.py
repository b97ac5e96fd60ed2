"""Store behaviour on connections, usage, Slack events and run cards, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import sqlalchemy as sa

from mcp_core.errors import ConnectionNotFoundError, DuplicateConnectionError
from mcp_core.models import ConnectionStatus, NewConnection, ToolInfo, ToolPrefs, UsageRecord
from mcp_core.store import Store, create_engine
from mcp_core.store._tables import tool_usage
from mcp_core.store._usage import MAX_ERROR_MESSAGE_CHARS

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def usage(connection_id: uuid.UUID | None, *, at: datetime = T0, user: str = USER, **fields) -> UsageRecord:
    values = {"tool_name": "search", "latency_ms": 10.0, "success": True} | fields
    return UsageRecord(team_id=TEAM, user_id=user, connection_id=connection_id, created_at=at, **values)


# -- connections -------------------------------------------------------------------------------


async def test_new_connection_reads_back_exactly_with_defaults(store):
    new = NewConnection(
        name="Files",
        transport="stdio",
        command="npx",
        args=["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
        config={"env": {"LOG_LEVEL": "debug"}, "call_timeout_s": 5.5},
        card_id="filesystem",
        credential_ref="local:abc",
    )
    created = await store.create_connection(TEAM, USER, new)

    assert created.model_dump(include=set(NewConnection.model_fields)) == new.model_dump()
    assert (created.name, created.status, created.tools, created.usage_count) == ("files", "new", [], 0)
    assert created.created_at.tzinfo is UTC
    assert created.last_used_at is None
    assert await store.get_connection(TEAM, USER, created.id) == created


async def test_duplicate_name_is_refused_and_nothing_is_written(store, connect):
    first = await connect("github")
    again = NewConnection(name="GitHub", transport="sse", url="https://elsewhere.example.com/sse")

    with pytest.raises(DuplicateConnectionError) as raised:
        await store.create_connection(TEAM, USER, again)

    assert raised.value.name == "github"
    assert await store.list_connections(TEAM, USER) == [first]


async def test_names_match_case_insensitively(store, connect):
    created = await connect("GitHub")

    assert await store.find_connection(TEAM, USER, "  GITHUB ") == created
    assert await store.find_connection(TEAM, USER, "gitlab") is None
    assert await store.find_connection(TEAM, USER, "not a valid name!") is None


async def test_the_same_name_is_free_for_other_users_and_teams(store, connect):
    await connect("github")
    await connect("github", user="U0002")
    await connect("github", team="T0002")

    assert [c.name for c in await store.list_connections(TEAM, USER)] == ["github"]


async def test_one_user_cannot_read_or_delete_another_users_connection(store, connect):
    mine = await connect("github")

    for team, user in [(TEAM, "U0002"), ("T0002", USER)]:
        with pytest.raises(ConnectionNotFoundError):
            await store.get_connection(team, user, mine.id)
        assert await store.find_connection(team, user, "github") is None
        assert await store.list_connections(team, user) == []
        assert await store.delete_connection(team, user, mine.id) is False
        with pytest.raises(ConnectionNotFoundError):
            await store.set_status(team, user, mine.id, ConnectionStatus.ERROR, "hijacked")
        with pytest.raises(ConnectionNotFoundError):
            await store.save_tools(team, user, mine.id, [], T0)
        with pytest.raises(ConnectionNotFoundError):
            await store.update_connection(team, user, mine.id, url="https://evil.example.com")

    assert await store.get_connection(TEAM, USER, mine.id) == mine


async def test_connections_are_listed_by_name(store, connect):
    for name in ("zeta", "alpha", "mid"):
        await connect(name)

    assert [c.name for c in await store.list_connections(TEAM, USER)] == ["alpha", "mid", "zeta"]


async def test_saving_tools_marks_the_connection_healthy(store, connect):
    created = await connect("github")
    await store.set_status(TEAM, USER, created.id, ConnectionStatus.ERROR, "Handshake timed out.")
    tools = [
        ToolInfo(name="search_issues", description="Find issues", read_only=True),
        ToolInfo(name="create_issue", input_schema={"type": "object", "required": ["title"]}),
    ]

    await store.save_tools(TEAM, USER, created.id, tools, T0)

    saved = await store.get_connection(TEAM, USER, created.id)
    assert (saved.status, saved.status_detail) == (ConnectionStatus.HEALTHY, None)
    assert saved.tools == tools
    assert saved.last_verified_at == T0
    assert saved.updated_at >= created.updated_at


async def test_status_and_its_detail_are_recorded(store, connect):
    created = await connect("github")

    await store.set_status(TEAM, USER, created.id, ConnectionStatus.NEEDS_AUTH, "The token was revoked.")

    saved = await store.get_connection(TEAM, USER, created.id)
    assert (saved.status, saved.status_detail) == (ConnectionStatus.NEEDS_AUTH, "The token was revoked.")


async def test_renaming_is_canonical_and_refused_when_the_name_is_taken(store, connect):
    await connect("github")
    other = await connect("gitlab")

    renamed = await store.update_connection(
        TEAM, USER, other.id, name="GitLab-Work", config={"query": {"a": "1"}}
    )
    assert (renamed.name, renamed.config) == ("gitlab-work", {"query": {"a": "1"}})

    with pytest.raises(DuplicateConnectionError):
        await store.update_connection(TEAM, USER, other.id, name="GITHUB")
    assert (await store.get_connection(TEAM, USER, other.id)).name == "gitlab-work"


async def test_update_refuses_fixed_fields_and_invalid_results(store, connect):
    created = await connect("github")

    with pytest.raises(ValueError, match="card_id"):
        await store.update_connection(TEAM, USER, created.id, card_id="other")
    with pytest.raises(ValueError, match="command"):
        await store.update_connection(TEAM, USER, created.id, transport="stdio")
    with pytest.raises(ValueError, match="URL"):
        await store.update_connection(TEAM, USER, created.id, url=None)
    assert await store.get_connection(TEAM, USER, created.id) == created


async def test_tool_prefs_are_added_and_removed_one_name_at_a_time_and_outlive_the_store(
    store, connect, database_url
):
    github = await connect("github")
    assert github.tool_prefs == ToolPrefs()

    await store.set_tool_pref(TEAM, USER, github.id, "off", "delete_repo", True)
    await store.set_tool_pref(TEAM, USER, github.id, "off", "fork", True)
    await store.set_tool_pref(TEAM, USER, github.id, "always", "search", True)
    changed = await store.set_tool_pref(TEAM, USER, github.id, "off", "fork", False)
    await store.set_tool_pref(TEAM, USER, github.id, "off", "never_there", False)  # a no-op

    assert changed.tool_prefs == ToolPrefs(off={"delete_repo"}, always={"search"})
    assert changed.updated_at > github.updated_at  # a change others can see
    other_engine = create_engine(database_url)  # another process, after a restart
    try:
        reread = await Store(other_engine).get_connection(TEAM, USER, github.id)
    finally:
        await other_engine.dispose()
    assert reread.tool_prefs == changed.tool_prefs


async def test_one_user_cannot_change_another_users_tool_prefs(store, connect):
    mine = await connect("github")

    for team, user in ((TEAM, "U_OTHER"), ("T_OTHER", USER)):
        with pytest.raises(ConnectionNotFoundError):
            await store.set_tool_pref(team, user, mine.id, "always", "search", True)

    assert (await store.get_connection(TEAM, USER, mine.id)).tool_prefs == ToolPrefs()


async def test_concurrent_tool_pref_changes_keep_each_other(store, connect):
    github = await connect("github")
    names = [f"tool_{n}" for n in range(8)]

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(store.set_tool_pref, TEAM, USER, github.id, "off", name, True)

    assert (await store.get_connection(TEAM, USER, github.id)).tool_prefs.off == set(names)


async def test_a_missing_connection_is_reported_not_found(store):
    missing = uuid.uuid4()

    with pytest.raises(ConnectionNotFoundError):
        await store.get_connection(TEAM, USER, missing)
    assert await store.delete_connection(TEAM, USER, missing) is False


# -- usage -------------------------------------------------------------------------------------


async def test_usage_batch_updates_counts_and_last_used(store, connect):
    a, b = await connect("a"), await connect("b")
    later = T0 + timedelta(seconds=2)

    await store.record_usage(
        [
            usage(a.id),
            usage(a.id, at=later),
            usage(a.id, at=T0 + timedelta(seconds=1)),
            usage(b.id),
            usage(None),
        ]
    )
    await store.record_usage([usage(a.id, at=T0 - timedelta(days=1))])  # a late straggler

    a, b = [await store.get_connection(TEAM, USER, c.id) for c in (a, b)]
    assert (a.usage_count, a.last_used_at) == (4, later)
    assert (b.usage_count, b.last_used_at) == (1, T0)


async def test_usage_naming_a_missing_or_foreign_connection_is_kept_unlinked(store, connect):
    theirs = await connect("github", user="U0002")

    await store.record_usage([usage(theirs.id), usage(uuid.uuid4())])

    assert (await store.get_connection(TEAM, "U0002", theirs.id)).usage_count == 0
    [summary] = await store.usage_summary(TEAM, USER)
    assert (summary.connection_id, summary.calls) == (None, 2)


async def test_deleting_connection_keeps_usage_rows_with_null_connection(store, connect):
    created = await connect("github")
    await store.record_usage([usage(created.id), usage(created.id, success=False)])

    assert await store.delete_connection(TEAM, USER, created.id) is True

    [summary] = await store.usage_summary(TEAM, USER)
    assert (summary.connection_id, summary.connection_name, summary.calls, summary.errors) == (
        None,
        None,
        2,
        1,
    )


async def test_usage_summary_counts_calls_errors_and_latency_per_tool(store, connect):
    created = await connect("github")
    await store.record_usage(
        [
            usage(created.id, tool_name="search", latency_ms=10.0, at=T0),
            usage(
                created.id, tool_name="search", latency_ms=30.0, success=False, error_class="Timeout", at=T0
            ),
            usage(created.id, tool_name="create", latency_ms=5.0, at=T0 + timedelta(minutes=1)),
            usage(created.id, tool_name="create", latency_ms=500.0, at=T0 - timedelta(days=2)),
            usage(None, tool_name="search", user="U0002"),
        ]
    )

    summary = await store.usage_summary(TEAM, USER, since=T0 - timedelta(hours=1))

    assert [(s.tool_name, s.calls, s.errors, s.avg_latency_ms, s.last_called_at) for s in summary] == [
        ("create", 1, 0, 5.0, T0 + timedelta(minutes=1)),
        ("search", 2, 1, 20.0, T0),
    ]
    assert {(s.connection_id, s.connection_name) for s in summary} == {(created.id, "github")}
    assert sum(s.calls for s in await store.usage_summary(TEAM, USER)) == 4


async def test_long_error_messages_are_capped(store, connect):
    created = await connect("github")

    await store.record_usage([usage(created.id, success=False, error_message="x" * 10_000)])

    async with store.engine.connect() as conn:
        stored = (await conn.execute(sa.select(tool_usage.c.error_message))).scalar_one()
    assert len(stored) == MAX_ERROR_MESSAGE_CHARS


async def test_an_empty_usage_batch_writes_nothing(store):
    await store.record_usage([])

    assert await store.usage_summary(TEAM, USER) == []


# -- Slack events ------------------------------------------------------------------------------


async def test_event_is_claimed_once_across_stores(store, database_url):
    other_engine = create_engine(database_url)
    try:
        stores = [store, Store(other_engine)]
        results: list[bool] = []

        async def claim(s: Store) -> None:
            results.append(await s.claim_event("Ev0001", TEAM))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(claim, stores[i % 2])
    finally:
        await other_engine.dispose()

    assert sorted(results) == [False] * 7 + [True]


async def test_old_event_claims_are_purged_and_can_be_claimed_again(store):
    assert await store.claim_event("Ev0001", None) is True

    assert await store.purge_events(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.purge_events(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store.claim_event("Ev0001", TEAM) is True


# -- health --------------------------------------------------------------------------------------


async def test_healthcheck_passes_on_a_live_database(store):
    await store.healthcheck()
