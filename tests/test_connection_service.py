"""The connection service: a form checked once, its plan executed, secrets put and taken back.

Real store (a fresh SQLite file), the real local credential backend on it, real toy servers.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mcp_core.connection_service import (
    ConnectForm,
    ConnectPlan,
    FormProblem,
    NotSaved,
    ProblemKind,
)
from mcp_core.errors import DuplicateConnectionError
from mcp_core.limits import too_many_connections
from mcp_core.models import ConnectionStatus, NewConnection
from mcp_core.registry import ConnectOutcome
from mcp_core.services import Services, build_services
from run_cards import RunCard, load_cards
from tests.support.registry import BEARER, TEAM, USER, make_settings
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio

CUSTOM: RunCard = load_cards().get("custom")  # type: ignore[assignment]
TOY_TOOLS = 9


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """``build_services`` with its own local credential backend (put, get, delete)."""
    built = await build_services(make_settings(tmp_path, mcp_max_connections_per_user=2))
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
def free_url() -> str:
    """An MCP URL on a loopback port where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


def form(name: str, url: str, token: str = "", **changes: object) -> ConnectForm:
    values = {"url": url, "bearer_token": token}
    return ConnectForm(TEAM, USER, CUSTOM, name=name, values=values, **changes)  # type: ignore[arg-type]


async def planned(services: Services, submitted: ConnectForm) -> ConnectPlan:
    checked = await services.connections.check(submitted)
    assert isinstance(checked, ConnectPlan), checked
    return checked


async def connected(services: Services, submitted: ConnectForm) -> ConnectOutcome:
    result = await services.connections.connect(await planned(services, submitted))
    assert isinstance(result, ConnectOutcome), result
    return result


async def credential_records(services: Services) -> int:
    async with services.store.engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM mcp_credentials"))).scalar_one()


async def test_a_checked_form_connects_with_its_token_stored_first(
    services: Services, bearer_server: RunningServer
) -> None:
    plan = await planned(services, form("Mine", bearer_server.url, token=f"Bearer {BEARER}"))

    assert plan.new.name == "mine"
    assert plan.secrets == {"header:Authorization": f"Bearer {BEARER}"}  # pasted prefix not doubled
    assert plan.verdict.covers(plan.verdict.targets)
    result = await services.connections.connect(plan)

    assert isinstance(result, ConnectOutcome)
    assert result.error is None
    assert (result.connection.status, len(result.connection.tools)) == (ConnectionStatus.HEALTHY, TOY_TOOLS)
    assert services.credentials is not None
    assert result.connection.credential_ref is not None
    stored = await services.credentials.get(TEAM, USER, result.connection.credential_ref)
    assert stored == {"header:Authorization": f"Bearer {BEARER}"}


async def test_problems_come_back_by_field_and_nothing_is_stored(services: Services) -> None:
    checked = await services.connections.check(form("bad name!", "https://10.1.2.3/mcp", token="tok"))

    assert isinstance(checked, list)
    by_field = {p.field: p for p in checked}
    assert set(by_field) == {None, "url"}
    assert by_field["url"].kind is ProblemKind.INVALID
    assert "private or local" in by_field["url"].message
    assert await services.store.list_connections(TEAM, USER) == []
    assert await credential_records(services) == 0


async def test_an_operator_value_the_policy_refuses_is_never_shown_back(services: Services) -> None:
    operator_url = "https://10.20.30.40/mcp"
    submitted = ConnectForm(TEAM, USER, CUSTOM, name="ops", values={}, operator={"url": operator_url})

    checked = await services.connections.check(submitted)

    assert checked == [FormProblem("url", ProblemKind.OPERATOR_VALUE_REFUSED)]


async def test_a_duplicate_name_and_the_per_person_limit_are_problems_of_the_name(
    services: Services, toy_server: RunningServer
) -> None:
    await connected(services, form("one", toy_server.url))

    assert await services.connections.check(form("ONE", toy_server.url)) == [
        FormProblem(None, ProblemKind.DUPLICATE_NAME, "one")
    ]
    await connected(services, form("two", toy_server.url))
    assert await services.connections.check(form("three", toy_server.url)) == [
        FormProblem(None, ProblemKind.INVALID, too_many_connections(2))
    ]


async def test_a_new_token_is_taken_back_when_the_connection_cannot_be_stored(
    services: Services, toy_server: RunningServer
) -> None:
    plan = await planned(services, form("racy", toy_server.url, token="tok-racy-1"))
    # The same name is taken between the check and the connect (another tab, say).
    await services.registry.add_connection(
        TEAM, USER, NewConnection(name="racy", transport="streamable_http", url=toy_server.url)
    )

    result = await services.connections.connect(plan)

    assert isinstance(result, NotSaved)
    assert isinstance(result.error, DuplicateConnectionError)
    assert result.name == "racy"
    assert await credential_records(services) == 0


async def test_an_edit_with_a_blank_token_keeps_the_stored_record(
    services: Services, bearer_server: RunningServer, free_url: str
) -> None:
    broken = await connected(services, form("mine", free_url, token=BEARER))
    assert broken.error is not None

    plan = await planned(services, form("mine", bearer_server.url, editing_id=broken.connection.id))
    assert plan.keeps_credential
    edited = await services.connections.connect(plan)

    assert isinstance(edited, ConnectOutcome)
    assert edited.error is None
    assert edited.connection.id == broken.connection.id
    assert edited.connection.credential_ref == broken.connection.credential_ref
    assert await credential_records(services) == 1


async def test_an_edit_with_a_new_token_replaces_the_record(
    services: Services, bearer_server: RunningServer
) -> None:
    first = await connected(services, form("mine", bearer_server.url, token="tok-wrong-0"))

    edited = await connected(
        services, form("mine", bearer_server.url, BEARER, editing_id=first.connection.id)
    )

    assert edited.error is None
    assert edited.connection.credential_ref != first.connection.credential_ref
    assert await credential_records(services) == 1
    assert services.credentials is not None
    assert edited.connection.credential_ref is not None
    stored = await services.credentials.get(TEAM, USER, edited.connection.credential_ref)
    assert stored == {"header:Authorization": f"Bearer {BEARER}"}


async def test_an_edit_id_that_is_not_theirs_adds_a_new_connection(
    services: Services, toy_server: RunningServer
) -> None:
    theirs = await services.registry.add_connection(
        TEAM, "U_SOMEONE_ELSE", NewConnection(name="theirs", transport="streamable_http", url=toy_server.url)
    )

    plan = await planned(services, form("mine", toy_server.url, editing_id=theirs.connection.id))

    assert plan.editing is None


async def test_disconnect_deletes_the_connection_and_then_its_secret(
    services: Services, bearer_server: RunningServer
) -> None:
    outcome = await connected(services, form("mine", bearer_server.url, token=BEARER))

    await services.connections.disconnect(TEAM, USER, outcome.connection)

    assert await services.store.list_connections(TEAM, USER) == []
    assert await credential_records(services) == 0
    assert not services.pool.is_live(outcome.connection.id)


async def test_test_lists_the_tools_again_and_times_it(services: Services, toy_server: RunningServer) -> None:
    outcome = await connected(services, form("toy", toy_server.url))

    report = await services.connections.test(TEAM, USER, outcome.connection.id)

    assert (report.connection, report.ok, report.tool_count) == ("toy", True, TOY_TOOLS)
    assert report.latency_ms >= 0
