"""``slack-mcp-bot manifest``: manifest.yml as is for Socket Mode, or rewritten for HTTP mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from bot.cli import main
from tests.support.servers import REPO

MANIFEST = REPO / "manifest.yml"
SCHEMA = REPO.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"
"""Slack's published schema, kept next to the repository for local checks (never committed)."""

EVENTS = "https://bot.example.com/slack/events"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["manifest", *args], catch_exceptions=False)


def http_manifest(base_url: str) -> dict[str, Any]:
    result = invoke("--http", base_url)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def request_urls(manifest: dict[str, Any]) -> list[str | None]:
    settings = manifest["settings"]
    return [
        settings["event_subscriptions"].get("request_url"),
        settings["interactivity"].get("request_url"),
        *(command.get("url") for command in manifest["features"]["slash_commands"]),
    ]


def test_without_options_it_prints_manifest_yml_byte_for_byte() -> None:
    result = invoke()

    assert result.exit_code == 0
    assert result.output == MANIFEST.read_text(encoding="utf-8")


def test_http_mode_turns_socket_mode_off_and_points_every_request_url_at_slack_events() -> None:
    manifest = http_manifest("https://bot.example.com")

    assert manifest["settings"]["socket_mode_enabled"] is False
    assert request_urls(manifest) == [EVENTS, EVENTS, EVENTS]


def test_http_mode_changes_nothing_else_in_the_manifest() -> None:
    original = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    manifest = http_manifest("https://bot.example.com")

    del manifest["settings"]["event_subscriptions"]["request_url"]
    del manifest["settings"]["interactivity"]["request_url"]
    for command in manifest["features"]["slash_commands"]:
        del command["url"]
    manifest["settings"]["socket_mode_enabled"] = True
    assert manifest == original


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://bot.example.com/", EVENTS),
        ("https://bot.example.com/slack/events", EVENTS),
        ("  https://bot.example.com  ", EVENTS),
        ("https://example.com:8443/bots/mcp/", "https://example.com:8443/bots/mcp/slack/events"),
        ("http://localhost:3000", "http://localhost:3000/slack/events"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000/slack/events"),
    ],
)
def test_the_base_url_may_carry_a_port_a_path_or_a_trailing_slash(base_url: str, expected: str) -> None:
    assert set(request_urls(http_manifest(base_url))) == {expected}


@pytest.mark.parametrize(
    ("base_url", "complaint"),
    [
        ("http://bot.example.com", "must use https"),
        ("bot.example.com", "is not a base URL"),
        ("ftp://bot.example.com", "is not a base URL"),
        ("https://", "is not a base URL"),
        ("https://bot.example.com:99999", "invalid port"),
        ("https://bot.example.com/?x=1", "without user, query or fragment"),
        ("https://user:pw@bot.example.com", "without user, query or fragment"),
    ],
)
def test_a_base_url_slack_cannot_use_is_refused_with_the_reason(base_url: str, complaint: str) -> None:
    result = CliRunner().invoke(main, ["manifest", "--http", base_url])

    assert result.exit_code == 2
    assert "Invalid value for --http" in result.output
    assert complaint in result.output
    assert "_metadata" not in result.output


def test_the_http_manifest_validates_against_slacks_schema() -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is not here (Slack's manifest schema, for local checks only)")
    schema = json.loads(Path(SCHEMA).read_text(encoding="utf-8"))

    jsonschema.Draft7Validator(schema).validate(http_manifest("https://bot.example.com"))


def test_the_manifest_lets_the_bot_read_threads_in_every_kind_of_conversation() -> None:
    """conversations.replies (bot/chat.py) needs the history scope of the conversation's type;
    without mpim:history a mention in a group DM could not read its thread."""
    scopes = set(yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["oauth_config"]["scopes"]["bot"])

    assert {"channels:history", "groups:history", "im:history", "mpim:history"} <= scopes


def test_a_distributed_apps_manifest_adds_the_install_redirect_and_the_lifecycle_events() -> None:
    result = invoke("--http", "https://bot.example.com", "--distributed")
    manifest = yaml.safe_load(result.output)

    assert manifest["oauth_config"]["redirect_urls"] == ["https://bot.example.com/slack/oauth_redirect"]
    assert {"app_uninstalled", "tokens_revoked"} <= set(
        manifest["settings"]["event_subscriptions"]["bot_events"]
    )
    assert set(request_urls(manifest)) == {EVENTS}
    if SCHEMA.is_file():
        jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).validate(manifest)
    refused = CliRunner().invoke(main, ["manifest", "--distributed"])
    assert refused.exit_code != 0
    assert "--distributed needs --http" in refused.output
