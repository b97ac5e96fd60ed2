"""Models often send ``null`` for every optional property they were shown; such a call is meant,
so those nulls are dropped before validation (and before an approval question shows them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcp_core.models import ToolInfo
from mcp_core.services import Services
from mcp_core.tool_catalog import without_optional_nulls
from tests.support.registry import TEAM, USER, add, call, remote
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "note": {"type": "string"},
        "nullable": {"type": ["string", "null"]},
        "either": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "choice": {"enum": ["a", None]},
    },
    "required": ["text"],
}


def test_a_null_for_an_optional_property_that_takes_no_null_is_dropped() -> None:
    assert without_optional_nulls(SCHEMA, {"text": "hi", "note": None}) == {"text": "hi"}


@pytest.mark.parametrize("key", ["nullable", "either", "choice"])
def test_a_null_the_propertys_schema_allows_is_kept(key: str) -> None:
    assert without_optional_nulls(SCHEMA, {"text": "hi", key: None}) == {"text": "hi", key: None}


def test_a_null_for_a_required_or_undeclared_property_is_kept_for_validation_to_judge() -> None:
    assert without_optional_nulls(SCHEMA, {"text": None}) == {"text": None}
    assert without_optional_nulls(SCHEMA, {"text": "hi", "other": None}) == {"text": "hi", "other": None}


def test_arguments_without_nulls_or_a_schema_without_properties_are_left_as_they_are() -> None:
    arguments = {"text": "hi", "note": "n"}
    assert without_optional_nulls(SCHEMA, arguments) is arguments
    assert without_optional_nulls({"type": "object"}, {"note": None}) == {"note": None}


async def test_a_call_with_a_null_optional_argument_reaches_the_server_without_it(
    services: Services, toy_server: RunningServer
) -> None:
    outcome = await add(services, remote("nulls", toy_server.url))
    assert outcome.error is None, outcome.error
    # As a server that declares an optional `note` would list echo (the toy's echo takes text only,
    # so a `note` that reached it would be refused by the server itself).
    schema = {**SCHEMA, "properties": {"text": {"type": "string"}, "note": {"type": "string"}}}
    tool = ToolInfo(name="echo", input_schema=schema)
    await services.store.save_tools(TEAM, USER, outcome.connection.id, [tool], datetime.now(UTC))

    result = await call(services, "nulls__echo", text="hi", note=None)

    assert not result.is_error, result.text
    assert "hi" in result.text
