"""ToolRegistry: the catalog, calls, usage recording and isolation between users.

Where a child process adds nothing, toy.py runs in-process (``in_process_services``; see
tests/support/in_process.py), where its ``pid`` tool answers the session number.

Connecting, discovery, failures and removal live in test_registry.py.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from mcp_core import errors
from mcp_core.models import NewConnection, ToolInfo, UsageRecord
from mcp_core.registry import ToolRegistry, function_name
from mcp_core.services import Services
from mcp_core.store import Store, create_engine
from mcp_core.store._tables import connections, tool_usage
from mcp_core.usage import UsageRecorder
from tests.support.pool import WAIT_S, wait_process_gone
from tests.support.registry import (
    BEARER,
    MAX_OUTPUT_CHARS,
    TEAM,
    TEAM_2,
    USER,
    USER_B,
    add,
    add_remote,
    assert_neighbour_served,
    call,
    catalog_entry,
    make_settings,
    open_services,
    remote,
    toy,
)
from tests.support.secrets import DictSecrets
from tests.support.servers import RunningServer, assert_no_zombies, require_npm

pytestmark = pytest.mark.anyio

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SECRET_ARGUMENT = "arg-value-3b9f0c2e"


async def table_dump(services: Services, *tables: sa.Table) -> str:
    """Every row of ``tables`` as text, to search for values that must not be there."""
    async with services.store.engine.connect() as conn:
        rows = [row for table in tables for row in (await conn.execute(sa.select(table))).all()]
    return "\n".join(repr(tuple(row)) for row in rows)


# --- calls ------------------------------------------------------------------------------------------


async def test_a_call_returns_the_tools_text_and_structured_content(in_process_services: Services) -> None:
    services = in_process_services
    await add(services, toy("mine"))

    echoed = await call(services, "mine__echo", text="hello")
    added = await call(services, "mine__add", a=2, b=3)

    assert (echoed.text, echoed.is_error, echoed.truncated) == ("hello", False, False)
    assert echoed.latency_ms > 0
    assert added.structured == {"result": 5}
    assert added.text == "5"


async def test_a_tool_reported_error_is_an_error_result_recorded_as_unsuccessful_usage(
    in_process_services: Services,
) -> None:
    services = in_process_services
    await add(services, toy("mine"))

    result = await call(services, "mine__fail")
    await services.usage.aclose()

    assert result.is_error
    assert "toy tool failed on purpose" in result.text
    [summary] = await services.store.usage_summary(TEAM, USER)
    assert (summary.tool_name, summary.calls, summary.errors) == ("fail", 1, 1)
    async with services.store.engine.connect() as conn:
        [row] = (await conn.execute(sa.select(tool_usage))).all()
    assert row.success is False
    assert row.error_class == "ToolReportedError"
    assert "toy tool failed on purpose" in row.error_message


async def test_arguments_that_do_not_match_the_schema_are_refused_before_anything_is_sent(
    services: Services, toy_server: RunningServer
) -> None:
    await add(services, remote("strict", toy_server.url))
    await call(services, "strict__echo", text="session is open")
    before = toy_server.stats()["requests"]

    with pytest.raises(errors.ToolArgumentsError) as wrong_type:
        await call(services, "strict__echo", text=5)
    with pytest.raises(errors.ToolArgumentsError) as missing:
        await call(services, "strict__slow")

    assert toy_server.stats()["requests"] == before
    assert wrong_type.value.tool == "strict__echo"
    assert wrong_type.value.problems == ["text: 5 is not of type 'string'"]
    assert missing.value.problems == ["(arguments): 'seconds' is a required property"]
    assert "strict__slow" in str(missing.value)


@pytest.mark.parametrize("ref", ["#/$defs/missing", "https://schemas.example.com/arguments.json"])
async def test_a_schema_with_an_unresolvable_ref_fails_as_an_mcp_core_error(
    services: Services, ref: str
) -> None:
    # Stored as discovery would store it: the $ref is valid JSON Schema, it just points nowhere.
    new = NewConnection(name="refs", transport="streamable_http", url="https://refs.example.com/mcp")
    stored = await services.store.create_connection(TEAM, USER, new)
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    tool = ToolInfo(name="tool", input_schema=schema)
    await services.store.save_tools(TEAM, USER, stored.id, [tool], datetime.now(UTC))

    with pytest.raises(errors.McpCoreError):
        await call(services, "refs__tool", a=1)


async def test_a_5_mb_answer_is_cut_to_the_cap_with_a_note_and_still_recorded(
    services: Services, neighbour: str
) -> None:
    await add(services, toy("big"))

    result = await call(services, "big__huge", size=5_000_000)
    await assert_neighbour_served(services, neighbour)
    await services.usage.aclose()

    assert result.truncated
    assert not result.is_error
    assert result.structured is None
    shown, note = result.text.split("\n", 1)
    assert shown == "x" * MAX_OUTPUT_CHARS
    assert "truncated" in note
    assert "5,000,000" in note
    assert len(note) < 100
    summaries = {s.tool_name: s for s in await services.store.usage_summary(TEAM, USER)}
    assert (summaries["huge"].calls, summaries["huge"].errors) == (1, 0)


# --- usage ------------------------------------------------------------------------------------------


async def test_every_call_is_recorded_once_and_counted_on_its_connection(
    in_process_services_on_each_db: Services,
) -> None:
    services = in_process_services_on_each_db
    outcome = await add(services, toy("counted"))
    before = datetime.now(UTC)
    for n in range(5):
        await call(services, "counted__echo", text=str(n))
    await call(services, "counted__fail")
    with pytest.raises(errors.ToolArgumentsError):
        await call(services, "counted__echo")

    await services.usage.aclose()

    summaries = {s.tool_name: s for s in await services.store.usage_summary(TEAM, USER)}
    assert {name: (s.calls, s.errors) for name, s in summaries.items()} == {"echo": (5, 0), "fail": (1, 1)}
    assert all(s.connection_id == outcome.connection.id for s in summaries.values())
    assert all(s.connection_name == "counted" for s in summaries.values())
    stored = await services.store.get_connection(TEAM, USER, outcome.connection.id)
    assert stored.usage_count == 6
    assert stored.last_used_at is not None
    assert stored.last_used_at >= before.replace(microsecond=0)


async def test_usage_rows_hold_neither_arguments_nor_secrets(
    services_on_each_db: Services, secrets: DictSecrets, bearer_server: RunningServer
) -> None:
    services = services_on_each_db
    await add_remote(
        services, secrets, remote("remote", bearer_server.url), {"header:Authorization": f"Bearer {BEARER}"}
    )

    await call(services, "remote__echo", text=SECRET_ARGUMENT)
    await call(services, "remote__env", name=SECRET_ARGUMENT)
    await call(services, "remote__fail")
    await services.usage.aclose()

    assert len(await services.store.usage_summary(TEAM, USER)) == 3
    dump = await table_dump(services, tool_usage, connections)
    assert "remote" in dump
    assert SECRET_ARGUMENT not in dump
    assert BEARER not in dump


class BrokenSink:
    """A usage sink whose database is down."""

    def __init__(self) -> None:
        self.attempts = 0

    async def record_usage(self, rows: list[UsageRecord]) -> None:
        self.attempts += 1
        raise OSError("database is down")


class StuckSink:
    """A usage sink that does not answer until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.rows: list[UsageRecord] = []

    async def record_usage(self, rows: list[UsageRecord]) -> None:
        await self.release.wait()
        self.rows.extend(rows)


def registry_with(services: Services, usage: UsageRecorder) -> ToolRegistry:
    """The services' registry, but recording usage into ``usage``."""
    return ToolRegistry(services.store, services.pool, usage, services.settings)


async def test_calls_succeed_while_the_usage_sink_fails(in_process_services: Services) -> None:
    services = in_process_services
    await add(services, toy("mine"))
    sink = BrokenSink()
    recorder = UsageRecorder(sink, flush_interval_s=0.01)
    registry = registry_with(services, recorder)

    with anyio.fail_after(WAIT_S):
        results = [await registry.call(TEAM, USER, "mine__echo", {"text": str(n)}) for n in range(3)]
        await recorder.aclose()

    assert [r.text for r in results] == ["0", "1", "2"]
    assert sink.attempts >= 1
    assert recorder.dropped == 3


async def test_calls_do_not_wait_for_a_usage_sink_that_hangs(in_process_services: Services) -> None:
    services = in_process_services
    await add(services, toy("mine"))
    sink = StuckSink()
    recorder = UsageRecorder(sink, flush_interval_s=0.01)
    registry = registry_with(services, recorder)

    with anyio.fail_after(WAIT_S):
        results = [await registry.call(TEAM, USER, "mine__echo", {"text": str(n)}) for n in range(3)]
    sink.release.set()
    with anyio.fail_after(WAIT_S):
        await recorder.aclose()

    assert [r.text for r in results] == ["0", "1", "2"]
    assert [row.tool_name for row in sink.rows] == ["echo"] * 3


# --- the catalog -------------------------------------------------------------------------------------


ODD_TOOLS = [
    "echo",
    "t" * 80,
    "t" * 80 + "2",  # same first 55 characters as the one before
    "with space",
    "dots.and/slashes",
    "ünïcödé",
    "a.b",
    "a_b",  # the same name as a.b once made valid
    "x" * 200,
]


async def test_catalog_names_are_unique_valid_function_names_that_map_back_to_their_tool(
    services: Services,
) -> None:
    store = services.store
    now = datetime.now(UTC)
    owners = {}
    for name in ("c" * 32, "odd-name_1", "x"):
        new = NewConnection(name=name, transport="streamable_http", url=f"https://{name}.example.com/mcp")
        stored = await store.create_connection(TEAM, USER, new)
        await store.save_tools(TEAM, USER, stored.id, [ToolInfo(name=t) for t in ODD_TOOLS], now)
        owners[stored.id] = name

    entries = await services.registry.catalog(TEAM, USER)

    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)) == 3 * len(ODD_TOOLS)
    assert all(FUNCTION_NAME.fullmatch(name) for name in names), names
    assert {(owners[e.connection_id], e.tool.name) for e in entries} == {
        (connection, tool) for connection in owners.values() for tool in ODD_TOOLS
    }
    assert all(e.connection_name == owners[e.connection_id] for e in entries)
    rebuilt = await registry_with(services, services.usage).catalog(TEAM, USER)
    assert {e.name: (e.connection_id, e.tool.name) for e in rebuilt} == {
        e.name: (e.connection_id, e.tool.name) for e in entries
    }


async def test_two_connections_with_the_same_tools_both_appear_and_reach_their_own_server(
    in_process_services: Services,
) -> None:
    services = in_process_services
    one = (await add(services, toy("one"))).connection
    two = (await add(services, toy("two"))).connection

    entries = {e.name: e for e in await services.registry.catalog(TEAM, USER)}

    assert {"one__echo", "two__echo", "one__pid", "two__pid"} <= set(entries)
    assert entries["one__pid"].connection_id == one.id
    assert entries["two__pid"].connection_id == two.id
    one_pid = (await call(services, "one__pid")).text
    two_pid = (await call(services, "two__pid")).text
    assert one_pid != two_pid
    assert (await call(services, "one__pid")).text == one_pid


def test_function_name_keeps_short_names_and_replaces_invalid_characters() -> None:
    assert function_name("github", "create_issue", set()) == "github__create_issue"
    assert function_name("my-db", "run query.v2/ü", set()) == "my-db__run_query_v2__"


def test_function_name_cuts_long_names_to_64_characters_ending_in_a_hash() -> None:
    first = function_name("c" * 32, "t" * 80, set())
    second = function_name("c" * 32, "t" * 80 + "2", set())

    assert len(first) == len(second) == 64
    assert first != second
    assert first[:54] == second[:54] == ("c" * 32 + "__" + "t" * 80)[:54]
    assert re.fullmatch(r"_[0-9a-f]{8}", first[-9:])
    assert function_name("c" * 32, "t" * 80, set()) == first  # stable across catalog rebuilds


def test_function_name_avoids_names_already_taken() -> None:
    taken = {function_name("db", "a.b", set())}

    name = function_name("db", "a_b", taken)

    assert name not in taken
    assert FUNCTION_NAME.fullmatch(name)
    assert name.startswith("db__a_b_")


def test_function_name_stays_valid_however_many_candidates_are_taken() -> None:
    taken: set[str] = set()
    for _ in range(40):
        name = function_name("c" * 30, "t" * 60, taken)
        assert FUNCTION_NAME.fullmatch(name), name
        assert name not in taken
        taken.add(name)


# --- isolation ------------------------------------------------------------------------------------------


async def test_other_users_can_neither_see_nor_call_nor_remove_a_users_tools(
    in_process_services_on_each_db: Services,
) -> None:
    services = in_process_services_on_each_db
    outcome = await add(services, toy("mine"))
    mine = await catalog_entry(services, "mine", "echo")

    for team, user in [(TEAM, USER_B), (TEAM_2, USER)]:
        assert await services.registry.catalog(team, user) == []
        with pytest.raises(errors.UnknownToolError):
            await call(services, mine.name, team=team, user=user, text="not yours")
        with pytest.raises(errors.ConnectionNotFoundError):
            await services.registry.remove_connection(team, user, outcome.connection.id)
        with pytest.raises(errors.ConnectionNotFoundError):
            await services.registry.test(team, user, outcome.connection.id)

    assert (await call(services, mine.name, text="still mine")).text == "still mine"
    assert len(await services.store.list_connections(TEAM, USER)) == 1


# --- npm reference servers -------------------------------------------------------------------------------


@pytest.mark.npm
async def test_server_everything_echoes_through_the_catalog_over_stdio(services: Services) -> None:
    entry = require_npm("server-everything")
    new = NewConnection(
        name="everything",
        transport="stdio",
        command=shutil.which("node") or "node",
        args=[str(entry), "stdio"],
    )

    outcome = await add(services, new)
    echo = await catalog_entry(services, "everything", "echo")
    result = await call(services, echo.name, message="hello npm")

    assert outcome.error is None
    assert echo.tool.read_only is True
    assert result.text == "Echo: hello npm"


@pytest.mark.npm
async def test_server_memory_keeps_entities_in_the_file_its_env_names(
    services: Services, tmp_path: Path
) -> None:
    entry = require_npm("server-memory")
    memory_file = tmp_path / "memory.jsonl"
    new = NewConnection(
        name="memory",
        transport="stdio",
        command=shutil.which("node") or "node",
        args=[str(entry)],
        config={"env": {"MEMORY_FILE_PATH": str(memory_file)}},
    )
    await add(services, new)
    entity = {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]}

    created = await call(services, "memory__create_entities", entities=[entity])
    graph = await call(services, "memory__read_graph")

    assert not created.is_error, created.text
    assert "wrote the first program" in graph.text
    assert "Ada" in memory_file.read_text()


# --- shutting down -----------------------------------------------------------------------------------------


async def test_closing_services_reaps_every_child_and_writes_pending_usage(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_services(settings) as services:
        await add(services, toy("one"))
        await add(services, toy("two"))
        pids = [int((await call(services, f"{name}__pid")).text) for name in ("one", "two")]
        await call(services, "one__echo", text="last words")
        assert services.pool.live_count == 2

    for pid in pids:
        await wait_process_gone(pid, timeout_s=0.5)  # aclose itself waited for them
    assert_no_zombies()
    assert services.pool.live_count == 0
    engine = create_engine(settings)
    try:
        summaries = await Store(engine).usage_summary(TEAM, USER)
    finally:
        await engine.dispose()
    assert sum(s.calls for s in summaries) == 3
