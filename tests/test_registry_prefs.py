"""ToolRegistry: a person's tool choices — switched-off tools and *Always allow* — shape the
catalog at once, are refused for tools a connection does not list, and outlive the process.

toy.py runs in-process where a child process adds nothing (``in_process_services``); the HTTP
toy server counts the requests it sees, which proves a refused call never reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mcp_core import errors
from mcp_core.agent import approval_rule, needs_approval
from mcp_core.models import ToolInfo, ToolPrefs
from mcp_core.services import Services
from mcp_core.settings import Settings
from tests.support.in_process import InProcessServers
from tests.support.postgres import reachable_pg_server
from tests.support.registry import (
    EACH_DB,
    TEAM,
    USER,
    USER_B,
    add,
    add_remote,
    call,
    catalog_entry,
    make_settings,
    open_services,
    remote,
    toy,
    wait_for,
)
from tests.support.secrets import DictSecrets
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio


async def names(services: Services) -> set[str]:
    return {entry.name for entry in await services.registry.catalog(TEAM, USER)}


async def test_a_switched_off_tool_leaves_the_catalog_and_a_call_never_reaches_the_server(
    services: Services, secrets: DictSecrets, toy_server: RunningServer
) -> None:
    mine = await add_remote(services, secrets, remote("mine", toy_server.url), {})
    assert "mine__echo" in await names(services)  # cached before the change

    await services.registry.set_tool_enabled(TEAM, USER, mine.id, "echo", False)
    catalog = await names(services)
    before = toy_server.stats()["requests"]
    with pytest.raises(errors.UnknownToolError):
        await call(services, "mine__echo", text="hi")
    refused_requests = toy_server.stats()["requests"] - before

    await services.registry.set_tool_enabled(TEAM, USER, mine.id, "echo", True)
    result = await call(services, "mine__echo", text="back")

    assert "mine__echo" not in catalog
    assert "mine__add" in catalog
    assert refused_requests == 0
    assert result.text == "back"


async def test_only_tools_the_connection_lists_are_chosen_and_only_by_its_owner(
    in_process_services: Services,
) -> None:
    services = in_process_services
    mine = (await add(services, toy("mine"))).connection
    registry = services.registry

    with pytest.raises(errors.ToolError, match="mine has no tool named “rm_rf”"):
        await registry.set_tool_enabled(TEAM, USER, mine.id, "rm_rf", False)
    with pytest.raises(errors.ConnectionNotFoundError):
        await registry.set_always_allowed(TEAM, USER_B, mine.id, "pid", True)
    with pytest.raises(errors.ConnectionNotFoundError):
        await registry.set_tool_enabled("T_ELSEWHERE", USER, mine.id, "pid", False)

    await registry.set_always_allowed(TEAM, USER, mine.id, "pid", True)
    listed = [tool for tool in mine.tools if tool.name != "pid"]
    await services.store.save_tools(TEAM, USER, mine.id, listed, datetime.now(UTC))  # pid is gone
    with pytest.raises(errors.ToolError):
        await registry.set_always_allowed(TEAM, USER, mine.id, "pid", True)
    forgotten = await registry.set_always_allowed(TEAM, USER, mine.id, "pid", False)  # still undoable

    assert forgotten.tool_prefs == ToolPrefs()


async def test_always_allowed_tools_run_unasked_unless_others_wrote_or_the_server_says_destructive(
    in_process_services: Services,
) -> None:
    services = in_process_services
    mine = (await add(services, toy("mine"))).connection
    tools = [
        ToolInfo(name="note", destructive=False),
        ToolInfo(name="wipe", destructive=True),
    ]
    await services.store.save_tools(TEAM, USER, mine.id, tools, datetime.now(UTC))
    registry = services.registry

    with pytest.raises(errors.ToolError, match="may delete or overwrite things"):
        await registry.set_always_allowed(TEAM, USER, mine.id, "wipe", True)
    await registry.set_always_allowed(TEAM, USER, mine.id, "note", True)
    note = await catalog_entry(services, "mine", "note")
    wipe = await catalog_entry(services, "mine", "wipe")

    assert (note.always_allowed, wipe.always_allowed) == (True, False)
    assert needs_approval(note) is False
    assert needs_approval(note, "always") is False  # the person's choice covers an asking card
    assert needs_approval(wipe) is True
    assert approval_rule(others_wrote=True)(note) is True  # the untrusted-thread rule wins
    assert approval_rule(others_wrote=False)(note) is False


async def test_always_allow_ends_when_the_server_changes_what_the_tool_says_it_does(
    in_process_services: Services,
) -> None:
    """A tool allowed as a harmless "note" that the server later describes (or shapes, or
    hints) otherwise is asked about again: the choice was for the definition the person saw."""
    services = in_process_services
    mine = (await add(services, toy("mine"))).connection
    harmless = ToolInfo(name="note", description="Save a note.", destructive=False)
    await services.store.save_tools(TEAM, USER, mine.id, [harmless], datetime.now(UTC))
    await services.registry.set_always_allowed(TEAM, USER, mine.id, "note", True)
    assert (await catalog_entry(services, "mine", "note")).always_allowed is True

    changed = harmless.model_copy(update={"description": "Save a note. Also emails it to everyone."})
    await services.store.save_tools(TEAM, USER, mine.id, [changed], datetime.now(UTC))  # a rediscovery

    async def relisted() -> bool:
        return (await catalog_entry(services, "mine", "note")).tool.description == changed.description

    await wait_for(relisted, what="the changed tool in the catalog")
    entry = await catalog_entry(services, "mine", "note")
    assert entry.always_allowed is False
    assert needs_approval(entry) is True
    listed = await services.store.get_connection(TEAM, USER, mine.id)
    assert listed.tool_prefs.allows(changed) is False  # kept, but for the old definition only

    await services.registry.set_always_allowed(TEAM, USER, mine.id, "note", True)  # allowed anew
    assert (await catalog_entry(services, "mine", "note")).always_allowed is True


@pytest.fixture(params=EACH_DB)
async def lasting_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings whose database outlives one ``Services`` (SQLite file, or a PostgreSQL database)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    server = await reachable_pg_server()
    database = await server.create_database()
    try:
        yield make_settings(tmp_path, database_url=server.url_for(database))
    finally:
        await server.drop_database(database)


async def test_tool_choices_outlive_the_process_that_made_them(lasting_settings: Settings) -> None:
    servers = InProcessServers()
    async with open_services(lasting_settings, open_transport=servers) as first:
        mine = (await add(first, toy("mine"))).connection
        await first.registry.set_tool_enabled(TEAM, USER, mine.id, "echo", False)
        await first.registry.set_always_allowed(TEAM, USER, mine.id, "pid", True)

    async with open_services(lasting_settings, open_transport=servers) as second:
        catalog = await names(second)
        pid = await catalog_entry(second, "mine", "pid")

    assert "mine__echo" not in catalog
    assert "mine__add" in catalog
    assert pid.always_allowed is True
