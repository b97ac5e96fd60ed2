"""A connection's secrets are scrubbed from every string its server sends, before it is stored,
shown or given to the model: discovery (names, titles, descriptions, schemas, ``_meta``) and
every part of a result (each content type, structured content, errors).

The server is ``tests/servers/hostile.py``, which receives its secret in the environment (as a
run card's secret arrives) and puts it in every field MCP has.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from mcp_core.models import NewConnection
from mcp_core.services import Services
from mcp_core.tool_specs import function_specs
from tests.support.registry import CREDENTIAL_REF, TEAM, USER, add, call, services  # noqa: F401
from tests.support.secrets import DictSecrets

pytestmark = pytest.mark.anyio

HOSTILE = Path(__file__).resolve().parent / "servers" / "hostile.py"
TOKEN = "hostile-tok-8c1e7a9b"


def hostile(name: str = "hostile") -> NewConnection:
    return NewConnection(
        name=name,
        transport="stdio",
        command=sys.executable,
        args=[str(HOSTILE)],
        credential_ref=CREDENTIAL_REF,
    )


@pytest.fixture
async def connected(services: Services, secrets: DictSecrets) -> Services:  # noqa: F811
    secrets.put(TEAM, USER, CREDENTIAL_REF, {"env:HOSTILE_TOKEN": TOKEN})
    outcome = await add(services, hostile())
    assert outcome.error is None, outcome.error
    return services


async def test_discovered_tools_are_stored_without_the_secret(connected: Services) -> None:
    [connection] = await connected.store.list_connections(TEAM, USER)

    stored = json.dumps([tool.model_dump() for tool in connection.tools])
    assert TOKEN not in stored
    about = next(tool for tool in connection.tools if tool.name == "about")
    assert about.description == "Look things up. Use the key [redacted] when asked."
    assert about.title == "About ([redacted])"
    assert about.input_schema["properties"]["query"]["default"] == "[redacted]"


async def test_a_tool_whose_name_holds_the_secret_is_skipped_with_its_reason(connected: Services) -> None:
    discovery = await connected.registry.discover(
        TEAM, USER, (await connected.store.list_connections(TEAM, USER))[0].id
    )

    assert sorted(tool.name for tool in discovery.tools) == ["about", "fail_with", "leak"]
    assert ("by_[redacted]", "its name contains one of the connection's secrets") in discovery.skipped


async def test_the_model_never_sees_the_secret_in_tool_definitions(connected: Services) -> None:
    catalog = await connected.registry.catalog(TEAM, USER)

    assert TOKEN not in json.dumps(function_specs(catalog))


async def test_every_part_of_a_result_is_scrubbed(
    connected: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    result = await call(connected, "hostile__leak")

    assert TOKEN not in result.text
    assert "[resource report-[redacted]: https://files.example/[redacted]/report]" in result.text
    assert "[binary resource file:///[redacted].bin application/octet-stream]" in result.text
    assert result.structured == {"token": "[redacted]", "nested": [{"k": "x[redacted]y"}]}
    assert TOKEN not in caplog.text


async def test_a_server_error_quoting_the_secret_is_scrubbed(connected: Services) -> None:
    result = await call(connected, "hostile__fail_with")

    assert result.is_error
    assert "backend refused key [redacted]" in result.text
    assert TOKEN not in result.text


async def test_the_redactor_scrubs_text_a_model_wrote_after_reading_a_leak(connected: Services) -> None:
    await call(connected, "hostile__about", query="x")

    redact = connected.registry.redactor(TEAM, USER)

    assert redact(f"Your key is {TOKEN}.") == "Your key is [redacted]."
    assert connected.registry.redactor(TEAM, "U_SOMEONE_ELSE")(TOKEN) == TOKEN  # only the asker's secrets
