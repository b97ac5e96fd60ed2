"""Typed connection config and secret targets read the stored formats unchanged."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from mcp_core.connection_config import PLACES, ConnectionConfig, SecretTarget
from mcp_core.models import NewConnection, SessionSpec
from mcp_core.settings import CALL_TIMEOUT_S, CONNECT_TIMEOUT_S

STORED_CONFIGS: list[dict[str, Any]] = [
    {},
    {"card_values": {"url": "https://mcp.example.com/mcp", "transport": "streamable_http"}},
    {"query": {"project_ref": "abc", "read_only": "true"}, "card_values": {"project_ref": "abc"}},
    {"headers": {"X-MCP-Readonly": "true"}, "card_values": {"read_only": "true"}},
    {"env": {"SLACK_TEAM_ID": "T000FAKE"}, "card_values": {"team_id": "T000FAKE"}},
    {"endpoints": ["postgresql://reader@db.example.com/app"], "card_values": {"connection_string": "x"}},
    {"env": {"LOG_LEVEL": "debug"}, "call_timeout_s": 5.5, "connect_timeout_s": 3.0},
    {"protocol_mode": "legacy", "cwd": "/srv/mcp"},
]
"""Every shape the card builder and the tests have written to ``mcp_connections.config``."""


@pytest.mark.parametrize("stored", STORED_CONFIGS)
def test_a_stored_config_loads_and_is_kept_exactly_as_it_was(stored: dict[str, Any]) -> None:
    connection = NewConnection(name="x", transport="stdio", command="run", config=stored)

    assert connection.config == stored
    assert connection.typed_config.stored() == stored


def test_a_misspelt_setting_is_refused_where_it_is_written() -> None:
    with pytest.raises(ValidationError, match="connect_timeout"):
        NewConnection(name="x", transport="stdio", command="run", config={"connect_timeout": 3})


@pytest.mark.parametrize(
    ("key", "target"),
    [
        ("header:Authorization", SecretTarget("header", "Authorization")),
        ("env:GITHUB_TOKEN", SecretTarget("env", "GITHUB_TOKEN")),
        ("query:api_key", SecretTarget("query", "api_key")),
        ("header:X:Y", SecretTarget("header", "X:Y")),
    ],
)
def test_a_stored_credential_key_parses_to_its_target_and_back(key: str, target: SecretTarget) -> None:
    assert SecretTarget.parse(key) == target
    assert str(target) == key


@pytest.mark.parametrize("key", ["cookie:x", "header:", "Authorization", "", 7])
def test_a_key_for_no_known_place_is_refused_with_the_shapes_that_work(key: Any) -> None:
    with pytest.raises(ValueError, match=r"^Credential keys look like") as caught:
        SecretTarget.parse(key)

    expected = f"Credential keys look like header:<Name>, env:<NAME> or query:<name>, not {key!r}."
    assert str(caught.value) == expected


def test_every_place_has_its_plain_values_in_the_config() -> None:
    config = ConnectionConfig(headers={"H": "1"}, env={"E": "2"}, query={"q": "3"})

    assert {kind: config.place(kind) for kind in PLACES} == {
        "header": {"H": "1"},
        "env": {"E": "2"},
        "query": {"q": "3"},
    }


def test_a_session_without_overrides_gets_the_settings_default_timeouts() -> None:
    spec = SessionSpec(connection_id=uuid.uuid4(), name="x", transport="stdio", command="run")

    assert (spec.connect_timeout_s, spec.call_timeout_s) == (CONNECT_TIMEOUT_S, CALL_TIMEOUT_S)
