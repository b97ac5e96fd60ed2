"""The whole sign-in through the bot's services against a real local authorization server.

The server (tests/servers/oauth_server.py) is a separate process speaking OAuth 2.1 and MCP over
HTTP; the person's browser is ``follow_sign_in`` (GET the link, read the redirect), whose query
goes to ``ConnectionService.complete_sign_in`` exactly as ``/oauth/callback`` hands it over.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcp_core import errors
from mcp_core.models import Connection, ConnectionStatus, NewConnection
from mcp_core.oauth import Owner
from mcp_core.services import Services
from mcp_core.settings import Settings
from tests.credentials.conftest import KEY_1
from tests.support.oauth_server import OAuthServer, afollow_sign_in, start_oauth_server
from tests.support.registry import make_settings, open_services

pytestmark = pytest.mark.anyio

TEAM, USER = "T0001", "U000A"
REDIRECT = "http://localhost:3999/oauth/callback"


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(tmp_path, credential_keys=f"k1:{KEY_1}", oauth_redirect_url=REDIRECT, **overrides)


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    with start_oauth_server("generic", access_ttl=3600, rotate_refresh=True) as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with open_services(settings_for(tmp_path)) as built:
        yield built


def new_connection(server: OAuthServer, name: str = "tracker") -> NewConnection:
    return NewConnection(name=name, transport="streamable_http", url=server.mcp_url, config={"oauth": {}})


async def sign_in(services: Services, url: str) -> Connection:
    done = await services.connections.complete_sign_in(await afollow_sign_in(url))
    assert done.error is None, done.error
    return done.connection


async def connected(services: Services, server: OAuthServer) -> Connection:
    outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
    assert isinstance(outcome.error, errors.SignInRequiredError), outcome.error
    return await sign_in(services, outcome.error.authorize_url)


async def whoami(services: Services) -> str:
    result = await services.registry.call(TEAM, USER, "tracker__whoami", {})
    assert not result.is_error, result.text
    return result.text


async def test_connecting_asks_for_a_sign_in_and_the_callback_connects(
    services: Services, server: OAuthServer
) -> None:
    outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
    assert isinstance(outcome.error, errors.SignInRequiredError)
    assert outcome.connection.needs_sign_in
    assert "code_challenge_method=S256" in outcome.error.authorize_url
    connection = await sign_in(services, outcome.error.authorize_url)
    assert connection.status == ConnectionStatus.HEALTHY
    assert {t.name for t in connection.tools} >= {"whoami", "echo"}
    assert "scope" in await whoami(services)


async def test_a_request_refused_for_want_of_a_sign_in_is_sent_once(
    services: Services, server: OAuthServer
) -> None:
    """Without a grant the request goes out before the SDK's OAuth flow runs; its 401 is what
    the flow starts from, not a reason to send it again."""
    outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
    assert isinstance(outcome.error, errors.SignInRequiredError)
    stats = server.stats()
    assert (stats["mcp_requests"], stats["mcp_unauthorized"]) == (1, 1)


async def test_a_sign_in_link_works_once(services: Services, server: OAuthServer) -> None:
    outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
    assert isinstance(outcome.error, errors.SignInRequiredError)
    query = await afollow_sign_in(outcome.error.authorize_url)
    await services.connections.complete_sign_in(query)
    with pytest.raises(errors.SignInError, match="already used"):
        await services.connections.complete_sign_in(query)


async def test_a_declined_sign_in_says_so_and_leaves_the_connection_waiting(
    services: Services, tmp_path: Path
) -> None:
    with start_oauth_server("generic", deny=True) as server:
        outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
        assert isinstance(outcome.error, errors.SignInRequiredError)
        with pytest.raises(errors.SignInError, match="access_denied"):
            await services.connections.complete_sign_in(await afollow_sign_in(outcome.error.authorize_url))
    connection = await services.store.get_connection(TEAM, USER, outcome.connection.id)
    assert connection.needs_sign_in


async def test_an_expired_access_token_is_refreshed_once(services: Services, server: OAuthServer) -> None:
    await connected(services, server)
    server.expire_access()
    await whoami(services)
    await whoami(services)
    assert server.stats()["token_requests"].get("refresh_token") == 1


async def test_refresh_works_after_a_restart(tmp_path: Path, server: OAuthServer) -> None:
    async with open_services(settings_for(tmp_path)) as first:
        await connected(first, server)
    server.expire_access()
    async with open_services(settings_for(tmp_path)) as second:  # the same database and key
        await whoami(second)
    stats = server.stats()
    assert stats["token_requests"].get("refresh_token") == 1
    assert stats["authorizations"] == 1  # nobody was asked to sign in again


async def test_a_revoked_grant_asks_the_person_to_sign_in_again(
    services: Services, server: OAuthServer
) -> None:
    await connected(services, server)
    server.revoke_all()
    with pytest.raises(errors.SignInRequiredError) as raised:
        await services.registry.call(TEAM, USER, "tracker__whoami", {})
    connection = await services.store.find_connection(TEAM, USER, "tracker")
    assert connection is not None
    assert connection.needs_sign_in
    await sign_in(services, raised.value.authorize_url)
    await whoami(services)


async def test_sign_in_again_gives_a_fresh_link(services: Services, server: OAuthServer) -> None:
    connection = await connected(services, server)
    assert await services.connections.sign_in_url(TEAM, USER, connection.id) is None  # still signed in
    server.revoke_all()
    url = await services.connections.sign_in_url(TEAM, USER, connection.id)
    assert url is not None
    await sign_in(services, url)
    await whoami(services)


async def test_a_tool_that_needs_more_scope_asks_to_sign_in_with_it(
    services: Services, server: OAuthServer
) -> None:
    await connected(services, server)
    with pytest.raises(errors.SignInRequiredError) as raised:
        await services.registry.call(TEAM, USER, "tracker__create_issue", {"title": "t"})
    assert "write" in (raised.value.scope or "").split()
    await sign_in(services, raised.value.authorize_url)
    result = await services.registry.call(TEAM, USER, "tracker__create_issue", {"title": "t"})
    assert not result.is_error, result.text


async def test_disconnect_revokes_the_tokens(services: Services, server: OAuthServer) -> None:
    connection = await connected(services, server)
    await services.connections.disconnect(TEAM, USER, connection)
    assert server.stats()["revocations"] >= 1
    assert server.stats()["live_grants"] == 0


async def test_no_token_or_code_reaches_the_log(
    services: Services, server: OAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await services.registry.add_connection(TEAM, USER, new_connection(server))
    assert isinstance(outcome.error, errors.SignInRequiredError)
    before = len(caplog.records)
    query = await afollow_sign_in(outcome.error.authorize_url)  # the browser's own traffic is not the bot's
    browser = range(before, len(caplog.records))
    await services.connections.complete_sign_in(query)
    server.expire_access()
    await whoami(services)  # a refresh too
    grant = await services.oauth.grants.load(Owner(TEAM, USER, outcome.connection.id))
    assert grant is not None
    assert grant.tokens is not None
    secrets = [query["code"], query["state"], grant.tokens["access_token"], grant.tokens["refresh_token"]]
    bot_log = "\n".join(
        f"{r.name} {r.getMessage()}" for i, r in enumerate(caplog.records) if i not in browser
    )
    for secret in secrets:
        assert secret not in bot_log
