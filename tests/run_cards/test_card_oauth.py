"""Cards that sign in with OAuth (``auth: oauth``): the built-in ones, the rules an admin's card
must satisfy, and the ``OAuthOptions`` that ``build()`` puts into the connection's config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from mcp_core.connection_config import OAuthOptions
from run_cards import BUILTIN_DIR, CardFieldError, RunCard, load_cards
from run_cards.model import MAX_SCOPE_CHARS, MAX_SCOPE_TOKENS, oauth_client_var

OAUTH_CARDS = {
    "atlassian": "https://mcp.atlassian.com/v1/mcp",
    "github-oauth": "https://api.githubcopilot.com/mcp/",
    "linear": "https://mcp.linear.app/mcp",
    "notion": "https://mcp.notion.com/mcp",
    "sentry": "https://mcp.sentry.dev/mcp",
}
OLD_CARDS = {"custom", "filesystem", "github", "postgres", "slack", "supabase"}


def oauth_card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": "notes",
        "name": "Notes",
        "description": "A remote notes server that signs in.",
        "transport": "streamable_http",
        "url": "https://mcp.example.com/mcp",
        "auth": "oauth",
    }
    return card | changes


def refused(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunCard.model_validate(data)
    assert words in str(caught.value), caught.value


def builtin(card_id: str) -> RunCard:
    card = load_cards(BUILTIN_DIR, environ={}).get(card_id)
    assert card is not None, card_id
    return card


# --- the built-in OAuth cards -------------------------------------------------------------------


@pytest.mark.parametrize("card_id", sorted(OAUTH_CARDS))
def test_a_builtin_oauth_card_builds_a_connection_that_signs_in_without_an_authorization_header(
    card_id: str,
) -> None:
    card = builtin(card_id)
    assert (card.auth, card.transport, card.url, card.approval) == (
        "oauth",
        "streamable_http",
        OAUTH_CARDS[card_id],
        "writes",
    )
    assert urlsplit(card.docs_url or "").scheme == "https"
    assert "revoke" in (card.advice or "").lower(), "the advice says how to revoke"
    assert not any(f.secret for f in card.fields), "nothing to paste: the person signs in"

    new, secrets = card.build({})

    assert new.typed_config.oauth is not None
    assert "oauth" in new.config
    assert secrets == {}
    assert not any(k.lower() == "authorization" for k in new.typed_config.headers)


def test_the_github_oauth_card_tells_the_operator_to_register_an_oauth_app() -> None:
    card = builtin("github-oauth")
    advice = card.advice or ""
    assert oauth_client_var(card.id, "CLIENT_ID") == "OAUTH_GITHUB_OAUTH_CLIENT_ID"
    assert oauth_client_var(card.id, "CLIENT_ID") in advice
    assert oauth_client_var(card.id, "CLIENT_SECRET") in advice
    assert "OAuth App" in advice
    assert "callback" in advice.lower()
    new, _ = card.build({})
    assert new.typed_config.oauth == OAuthOptions(scope="repo read:org", client_auth="client_secret_post")
    assert new.typed_config.headers == {"X-MCP-Readonly": "true"}  # read-only unless the person says not


def test_the_old_cards_are_all_still_in_the_catalog_and_none_signs_in_by_card() -> None:
    catalog = load_cards(BUILTIN_DIR, environ={})
    assert {card.id for card in catalog.all()} == OLD_CARDS | set(OAUTH_CARDS)
    for card_id in OLD_CARDS:
        card = catalog.get(card_id)
        assert card is not None, card_id
        assert (card.auth, card.oauth) == ("none", None), card_id
    new, _ = catalog.get("custom").build({"url": "https://mcp.example.com/mcp"})  # type: ignore[union-attr]
    assert new.typed_config.oauth is None  # the core still signs in when that server asks


def test_oauth_cards_are_visible_to_everyone() -> None:
    visible = {card.id for card in load_cards(BUILTIN_DIR, environ={}).for_user(is_admin=False)}
    assert set(OAUTH_CARDS) <= visible


# --- what build() stores --------------------------------------------------------------------------


def test_a_card_with_no_fields_builds_a_connection_whose_config_is_only_its_oauth_options() -> None:
    card = RunCard.model_validate(oauth_card())
    new, secrets = card.build({}, name="My-Notes")
    assert (new.name, new.card_id, new.url, secrets) == (
        "my-notes",
        "notes",
        "https://mcp.example.com/mcp",
        {},
    )
    assert new.config == {"oauth": {}}
    assert new.typed_config.oauth == OAuthOptions()


def test_the_oauth_block_is_stored_as_the_cores_oauth_options() -> None:
    card = RunCard.model_validate(
        oauth_card(oauth={"scope": "  read write\n", "client_auth": "client_secret_basic"})
    )
    new, _ = card.build({})
    assert new.config == {"oauth": {"scope": "read write", "client_auth": "client_secret_basic"}}
    assert new.typed_config.oauth == OAuthOptions(scope="read write", client_auth="client_secret_basic")


def test_a_card_without_auth_stores_no_oauth_options() -> None:
    card = RunCard.model_validate(oauth_card(auth="none"))
    new, _ = card.build({})
    assert "oauth" not in new.config
    assert new.typed_config.oauth is None


def test_an_oauth_card_may_still_send_other_headers_and_query_parameters() -> None:
    card = RunCard.model_validate(
        oauth_card(
            fields=[{"key": "site", "label": "Site"}, {"key": "key", "label": "Key", "secret": True}],
            mapping={"site": "query:site", "key": "header:X-Api-Key"},
        )
    )
    new, secrets = card.build({"site": "eu", "key": "k-1"})
    assert new.config["query"] == {"site": "eu"}
    assert secrets == {"header:X-Api-Key": "k-1"}
    assert new.typed_config.oauth == OAuthOptions()


# --- refusals --------------------------------------------------------------------------------------


def test_an_oauth_block_without_auth_oauth_is_refused() -> None:
    refused(oauth_card(auth="none", oauth={"scope": "read"}), "an oauth: block needs auth: oauth")
    data = oauth_card(oauth={"scope": "read"})
    del data["auth"]
    refused(data, "an oauth: block needs auth: oauth")


def test_an_oauth_stdio_card_is_refused() -> None:
    data = oauth_card(transport="stdio", command="notes-server")
    del data["url"]
    refused(data, "auth: oauth is for remote servers")
    refused({**data, "source": "admin"}, "auth: oauth is for remote servers")


@pytest.mark.parametrize("target", ["header:Authorization", "header:authorization", "header:AUTHORIZATION"])
def test_an_oauth_card_cannot_map_a_field_to_the_authorization_header(target: str) -> None:
    fields = [{"key": "token", "label": "Token", "secret": True}]
    refused(oauth_card(fields=fields, mapping={"token": target}), "cannot set the Authorization header")
    with_format = {"token": {"to": target, "format": "Bearer {value}"}}
    refused(oauth_card(fields=fields, mapping=with_format), "cannot set the Authorization header")


def test_an_oauth_card_refuses_authorization_as_a_header_name_typed_in_the_form() -> None:
    card = RunCard.model_validate(
        oauth_card(
            fields=[
                {"key": "header_name", "label": "Header name"},
                {"key": "header_value", "label": "Header value", "secret": True},
            ],
            mapping={"header_name": "header_name", "header_value": "header:{header_name}"},
        )
    )
    for name in ("Authorization", "authorization"):
        with pytest.raises(CardFieldError) as caught:
            card.build({"header_name": name, "header_value": "Bearer stolen"})
        assert caught.value.field_key == "header_name"
        assert "signing in" in caught.value.message
    _, secrets = card.build({"header_name": "X-Api-Key", "header_value": "k"})
    assert secrets == {"header:X-Api-Key": "k"}


@pytest.mark.parametrize(
    ("scope", "words"),
    [
        pytest.param("", "scope is empty", id="empty"),
        pytest.param("   ", "scope is empty", id="blank"),
        pytest.param('read "write"', "RFC 6749", id="quote"),
        pytest.param("read\\write", "RFC 6749", id="backslash"),
        pytest.param("read  write", "RFC 6749", id="two-spaces"),
        pytest.param("read\twrite", "RFC 6749", id="tab"),
        pytest.param("read\nwrite", "RFC 6749", id="newline"),
        pytest.param("lire écrire", "RFC 6749", id="not-ascii"),
        pytest.param("read\x00", "RFC 6749", id="nul"),
        pytest.param("read\x7f", "RFC 6749", id="del"),
        pytest.param("read read", "twice", id="duplicate"),
        pytest.param("s" * (MAX_SCOPE_CHARS + 1), "too long", id="too-long"),
        pytest.param(" ".join(f"s{i}" for i in range(MAX_SCOPE_TOKENS + 1)), "too many", id="too-many"),
    ],
)
def test_a_scope_that_is_not_space_separated_scope_tokens_is_refused(scope: str, words: str) -> None:
    refused(oauth_card(oauth={"scope": scope}), words)


@pytest.mark.parametrize(
    "scope", ["read", "read write offline_access", "repo read:org", "https://graph.example.com/.default"]
)
def test_scope_tokens_of_printable_ascii_are_accepted(scope: str) -> None:
    assert RunCard.model_validate(oauth_card(oauth={"scope": scope})).oauth.scope == scope  # type: ignore[union-attr]


def test_unknown_oauth_settings_and_client_auth_methods_are_refused() -> None:
    refused(oauth_card(oauth={"client_id": "abc"}), "client_id")
    refused(oauth_card(oauth={"client_auth": "private_key_jwt"}), "client_auth")
    refused(oauth_card(auth="bearer"), "auth")


def test_oauth_client_var_names_the_operators_variables() -> None:
    assert oauth_client_var("linear", "CLIENT_SECRET") == "OAUTH_LINEAR_CLIENT_SECRET"
    with pytest.raises(ValueError, match="CLIENT_ID"):
        oauth_client_var("linear", "TOKEN")


def test_an_admin_card_with_a_bad_scope_is_logged_with_its_field_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = tmp_path / "cards"
    admin.mkdir()
    bad = admin / "notes.yaml"
    bad.write_text(
        "id: notes\nname: Notes\ndescription: d\ntransport: streamable_http\n"
        "url: https://mcp.example.com/mcp\nauth: oauth\noauth:\n  scope: 'read \"all\"'\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.ERROR, logger="run_cards.loader"):
        catalog = load_cards(BUILTIN_DIR, admin, environ={})
    assert "notes" not in catalog
    assert any(str(bad) in r.getMessage() and "oauth.scope" in r.getMessage() for r in caplog.records)
