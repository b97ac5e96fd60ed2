"""Each built-in OAuth card signs in against a local server that behaves like its provider.

The flavors of tests/servers/oauth_server.py copy what each provider publishes (metadata
layout, registration or pre-registered clients, scopes, token lifetimes, refresh rotation);
the connection is the card's own build with only the host swapped for the local server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_core import errors
from mcp_core.services import Services
from run_cards import load_cards
from run_cards.oauth_clients import oauth_client_var, read_oauth_clients
from tests.support.oauth_server import afollow_sign_in, start_oauth_server
from tests.support.registry import make_settings, open_services

from .test_sign_in import REDIRECT, TEAM, USER, settings_for

pytestmark = pytest.mark.anyio

CARDS = {
    "linear": "linear",
    "notion": "notion",
    "atlassian": "atlassian",
    "sentry": "sentry",
    "github-oauth": "github",
}
CARD_VALUES = {"github-oauth": {"read_only": "true"}}


async def sign_in_and_call(services: Services, card_id: str, url: str) -> None:
    card = load_cards().get(card_id)
    new, secrets = card.build(CARD_VALUES.get(card_id, {}), name=card_id.replace("-", "_"))
    assert secrets == {}
    outcome = await services.registry.add_connection(TEAM, USER, new.model_copy(update={"url": url}))
    assert isinstance(outcome.error, errors.SignInRequiredError), outcome.error
    done = await services.connections.complete_sign_in(await afollow_sign_in(outcome.error.authorize_url))
    assert done.error is None, done.error
    catalog = {entry.tool.name: entry.name for entry in await services.registry.catalog(TEAM, USER)}
    result = await services.registry.call(TEAM, USER, catalog["whoami"], {})
    assert not result.is_error, result.text


@pytest.mark.parametrize("card_id", sorted(set(CARDS) - {"github-oauth"}))
async def test_a_registering_providers_card_signs_in_and_calls_a_tool(card_id: str, tmp_path: Path) -> None:
    with start_oauth_server(CARDS[card_id]) as server:
        async with open_services(settings_for(tmp_path)) as services:
            await sign_in_and_call(services, card_id, server.mcp_url)
        assert server.stats()["registrations"] == 1


async def test_github_signs_in_with_the_operators_client_only_for_its_own_url(tmp_path: Path) -> None:
    client_id, secret = "Iv1.operator", "operator-secret-7b1e"
    with start_oauth_server(
        "github", client_id=client_id, client_secret=secret, redirect_uris=[REDIRECT]
    ) as server:
        card = load_cards().get("github-oauth")
        local_card = card.model_copy(update={"url": server.mcp_url})
        environ = {
            oauth_client_var(card.id, "CLIENT_ID"): client_id,
            oauth_client_var(card.id, "CLIENT_SECRET"): secret,
        }
        clients = read_oauth_clients([local_card], env_file=None, environ=environ)
        async with open_services(settings_for(tmp_path)) as services:
            services.oauth.use_clients(clients)
            await sign_in_and_call(services, card.id, server.mcp_url)
            # The same card pointed anywhere else never gets the operator's client.
            other = card.build({"read_only": "true"}, name="elsewhere")[0]
            outcome = await services.registry.add_connection(
                TEAM, USER, other.model_copy(update={"url": server.mcp_url + "?via=elsewhere"})
            )
            assert isinstance(outcome.error, errors.OAuthClientMissingError), outcome.error
        assert server.stats()["registrations"] == 0


async def test_without_the_operators_client_github_says_an_admin_must_register_the_bot(
    tmp_path: Path,
) -> None:
    with start_oauth_server("github") as server:
        async with open_services(
            make_settings(tmp_path, credential_keys=settings_for(tmp_path).credential_keys)
        ) as services:
            card = load_cards().get("github-oauth")
            new = card.build({"read_only": "true"}, name="github")[0]
            outcome = await services.registry.add_connection(
                TEAM, USER, new.model_copy(update={"url": server.mcp_url})
            )
    assert isinstance(outcome.error, errors.OAuthClientMissingError), outcome.error
    assert "register" in str(outcome.error)


async def test_a_client_an_admin_adds_in_slack_lets_the_teams_people_sign_in(tmp_path: Path) -> None:
    with start_oauth_server("github") as server:
        async with open_services(settings_for(tmp_path)) as services:
            card = load_cards().get("github-oauth")
            new = card.build({"read_only": "true"}, name="github")[0].model_copy(
                update={"url": server.mcp_url}
            )
            outcome = await services.registry.add_connection(TEAM, USER, new)
            missing = outcome.error
            assert isinstance(missing, errors.OAuthClientMissingError)
            assert missing.server_url == server.mcp_url
            assert outcome.connection.needs_sign_in
            server.add_client(
                "admin-client",
                redirect_uris=[REDIRECT],
                client_secret="admin-secret-55",
                token_endpoint_auth_method="client_secret_basic",
            )
            await services.oauth.add_team_client(
                TEAM, "UADMIN", missing.server_url, "admin-client", "admin-secret-55", issuer=missing.issuer
            )
            url = await services.connections.sign_in_url(TEAM, USER, outcome.connection.id)
            assert url is not None
            assert "client_id=admin-client" in url
            done = await services.connections.complete_sign_in(await afollow_sign_in(url))
            assert done.error is None, done.error
            # Another workspace's connection to the same server does not get that client.
            other = await services.registry.add_connection("T0OTHER", USER, new)
            assert isinstance(other.error, errors.OAuthClientMissingError)
