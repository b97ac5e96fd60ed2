"""RunCard validation rules and what build() produces (no servers: see test_launch.py for those)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from run_cards import CardFieldError, RunCard, command_override_var


def stdio_card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": "demo",
        "name": "Demo",
        "description": "A demo card.",
        "transport": "stdio",
        "command": "demo-server",
        "args": ["--fixed"],
        "server_args": ["{target}"],
        "fields": [
            {"key": "target", "label": "Target", "required": True},
            {"key": "token", "label": "Token", "secret": True},
        ],
        "mapping": {"target": "arg", "token": "env:DEMO_TOKEN"},
    }
    return card | changes


def remote_card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": "web",
        "name": "Web",
        "description": "A remote card.",
        "transport": "streamable_http",
        "url": "https://mcp.example.com/mcp",
        "fields": [
            {"key": "token", "label": "Token", "secret": True, "required": True},
            {"key": "region", "label": "Region", "default": "eu"},
            {"key": "mode", "label": "Mode"},
        ],
        "mapping": {
            "token": {"to": "header:Authorization", "format": "Bearer {value}"},
            "region": "query:region",
            "mode": "header:X-Mode",
        },
    }
    return card | changes


def refused(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunCard.model_validate(data)
    assert words in str(caught.value)


# --- validation -------------------------------------------------------------------------------


def test_valid_cards_load() -> None:
    assert RunCard.model_validate(stdio_card()).server_args == ["{target}"]
    assert RunCard.model_validate(remote_card()).mapping["region"].to == "query:region"


def test_placeholder_must_name_a_field() -> None:
    refused(stdio_card(server_args=["{target}", "{nope}"]), "names no field")


def test_placeholder_must_be_a_whole_argument() -> None:
    refused(stdio_card(server_args=["--target={target}"]), "whole argument")
    refused(stdio_card(server_args=["x{target}"]), "whole argument")


def test_launcher_args_take_no_placeholders() -> None:
    refused(stdio_card(args=["{target}"], server_args=[]), "no placeholders")


def test_arg_field_needs_its_slot() -> None:
    refused(stdio_card(server_args=[]), "has no {target}")


def test_secret_field_cannot_be_an_argument() -> None:
    data = stdio_card(server_args=["{target}", "{token}"], mapping={"target": "arg", "token": "arg"})
    refused(data, "argv is visible in ps")


def test_stdio_cards_map_to_env_or_arg_only() -> None:
    refused(stdio_card(mapping={"target": "arg", "token": "header:Authorization"}), "env:NAME or arg")
    refused(stdio_card(mapping={"target": "arg", "token": "query:token"}), "env:NAME or arg")


def test_remote_cards_map_to_header_query_or_url_only() -> None:
    refused(remote_card(mapping={**remote_card()["mapping"], "mode": "env:MODE"}), "header, query or url")
    refused(remote_card(mapping={**remote_card()["mapping"], "mode": "arg"}), "header, query or url")


def test_remote_cards_have_no_command() -> None:
    refused(remote_card(command="sh"), "no command")


def test_user_cards_cannot_be_stdio() -> None:
    refused(stdio_card(source="user"), "only built-in and admin cards")
    assert RunCard.model_validate(stdio_card(source="admin")).source == "admin"
    assert RunCard.model_validate(remote_card(source="user")).source == "user"


def test_url_takes_no_placeholders() -> None:
    refused(remote_card(url="https://{region}.example.com/mcp"), "no placeholders")


def test_every_field_needs_a_mapping_and_every_mapping_a_field() -> None:
    mapping = dict(remote_card()["mapping"])
    del mapping["mode"]
    refused(remote_card(mapping=mapping), "has no mapping")
    refused(remote_card(mapping={**remote_card()["mapping"], "ghost": "query:x"}), "not a field")


def test_bad_mappings_and_formats() -> None:
    refused(remote_card(mapping={**remote_card()["mapping"], "mode": "cookie:x"}), "a mapping is")
    refused(remote_card(mapping={**remote_card()["mapping"], "mode": "header:Bad Name"}), "not a valid")
    bad_format = {"to": "header:Authorization", "format": "Bearer"}
    refused(remote_card(mapping={**remote_card()["mapping"], "token": bad_format}), "{value}")


def test_field_rules() -> None:
    refused(
        remote_card(fields=[*remote_card()["fields"][:2], {"key": "mode", "label": "M", "pattern": "("}]),
        "regular",
    )
    refused(remote_card(description="two\nlines"), "one line")
    refused(remote_card(description="x" * 151), "150")
    refused(remote_card(id="Not A Slug"), "slug")


def test_two_fields_cannot_share_a_destination() -> None:
    refused(remote_card(mapping={**remote_card()["mapping"], "mode": "query:region"}), "same destination")


# --- build ------------------------------------------------------------------------------------


def test_build_splits_secrets_from_config() -> None:
    card = RunCard.model_validate(remote_card())
    new, secrets = card.build({"token": " tok-1\n", "mode": "fast"}, name="My-Web")
    assert new.name == "my-web"
    assert new.card_id == "web"
    assert new.url == "https://mcp.example.com/mcp"
    assert new.transport == "streamable_http"
    assert new.config == {
        "query": {"region": "eu"},
        "headers": {"X-Mode": "fast"},
        "card_values": {"region": "eu", "mode": "fast"},  # for the edit form; never the token
    }
    assert secrets == {"header:Authorization": "Bearer tok-1"}
    assert new.credential_ref is None  # the caller stores the secrets, then sets it


def test_build_stdio_fills_whole_argument_slots() -> None:
    card = RunCard.model_validate(stdio_card())
    new, secrets = card.build({"target": "a b; $(rm -rf /)\nc", "token": "s3cret"})
    assert new.command == "demo-server"
    assert new.args == ["--fixed", "a b; $(rm -rf /)\nc"]
    assert secrets == {"env:DEMO_TOKEN": "s3cret"}
    assert new.config == {"card_values": {"target": "a b; $(rm -rf /)\nc"}}
    assert new.name == "demo"


def test_optional_empty_arg_drops_its_slot() -> None:
    data = stdio_card(
        server_args=["{target}", "{extra}"],
        fields=[*stdio_card()["fields"], {"key": "extra", "label": "Extra"}],
        mapping={**stdio_card()["mapping"], "extra": "arg"},
    )
    new, _ = RunCard.model_validate(data).build({"target": "/a", "extra": "  "})
    assert new.args == ["--fixed", "/a"]


@pytest.mark.parametrize("value", ["-x", "--help", "--config=/etc/passwd"])
def test_leading_dash_refused_for_arg_fields(value: str) -> None:
    card = RunCard.model_validate(stdio_card())
    with pytest.raises(CardFieldError) as caught:
        card.build({"target": value})
    assert caught.value.field_key == "target"
    assert "option" in caught.value.message


def test_leading_dash_allowed_in_env_and_headers() -> None:
    new, secrets = RunCard.model_validate(stdio_card()).build({"target": "t", "token": "--not-an-option"})
    assert secrets == {"env:DEMO_TOKEN": "--not-an-option"}
    new, _ = RunCard.model_validate(remote_card()).build({"token": "t", "mode": "--fast"})
    assert new.config["headers"] == {"X-Mode": "--fast"}


def test_field_errors_name_the_field() -> None:
    card = RunCard.model_validate(
        remote_card(
            fields=[
                {"key": "token", "label": "Token", "secret": True, "required": True, "pattern": "tok-[0-9]+"},
                {"key": "region", "label": "Region", "default": "eu"},
                {"key": "mode", "label": "Mode"},
            ]
        )
    )
    for values, key, words in [
        ({}, "token", "required"),
        ({"token": "nope"}, "token", "expected format"),
        ({"token": "tok-1", "mode": "a\r\nX-Evil: 1"}, "mode", "single line"),
        ({"token": "tok-1", "mode": "a\x00"}, "mode", "NUL"),
        ({"token": "tok-1", "ghost": "x"}, "ghost", "no such field"),
    ]:
        with pytest.raises(CardFieldError) as caught:
            card.build(values)
        assert (caught.value.field_key, words in caught.value.message) == (key, True), caught.value


def test_nul_refused_in_arguments() -> None:
    with pytest.raises(CardFieldError, match="NUL"):
        RunCard.model_validate(stdio_card()).build({"target": "a\x00b"})


def test_command_override_replaces_launcher_only() -> None:
    card = RunCard.model_validate(stdio_card())
    assert command_override_var("my-card") == "RUN_CARD_MY_CARD_COMMAND"
    swapped = card.with_command("node '/opt/mcp servers/demo/index.js'")
    new, _ = swapped.build({"target": "x"})
    assert (new.command, new.args) == ("node", ["/opt/mcp servers/demo/index.js", "x"])
    with pytest.raises(ValueError, match="remote card"):
        RunCard.model_validate(remote_card()).with_command("node x")


# --- endpoints and what the edit form may show ---------------------------------------------------


def endpoint_card() -> dict[str, Any]:
    fields = [
        {"key": "target", "label": "Database URL", "required": True, "endpoint": True},
        {"key": "token", "label": "Token", "secret": True},
    ]
    return stdio_card(fields=fields)


def test_endpoint_fields_are_for_non_secret_stdio_values_only() -> None:
    secret = [{"key": "target", "label": "T", "required": True, "endpoint": True, "secret": True}]
    refused(stdio_card(fields=secret, mapping={"target": "env:TARGET"}, server_args=[]), "endpoint")
    remote = remote_card(
        fields=[{"key": "mode", "label": "Mode", "endpoint": True}], mapping={"mode": "header:X"}
    )
    refused(remote, "endpoint")


def test_an_endpoint_value_is_listed_for_the_network_policy() -> None:
    card = RunCard.model_validate(endpoint_card())
    new, _ = card.build({"target": "postgresql://reader@db.example.com/app", "token": "s3cret"})
    assert new.config["endpoints"] == ["postgresql://reader@db.example.com/app"]


@pytest.mark.parametrize("value", ["db.example.com:5432", "postgresql:///app", "postgresql://db example/x"])
def test_an_endpoint_without_a_host_is_a_field_error(value: str) -> None:
    with pytest.raises(CardFieldError) as caught:
        RunCard.model_validate(endpoint_card()).build({"target": value})
    assert caught.value.field_key == "target"


def test_card_values_keep_non_secret_values_but_not_unshown_ones() -> None:
    card = RunCard.model_validate(remote_card())
    new, secrets = card.build({"token": "tok-1", "mode": "fast"}, unshown={"mode"})
    assert new.config["card_values"] == {"region": "eu"}
    assert new.config["headers"] == {"X-Mode": "fast"}  # still used, just never shown back
    assert "tok-1" not in str(new.config)
    assert secrets == {"header:Authorization": "Bearer tok-1"}
