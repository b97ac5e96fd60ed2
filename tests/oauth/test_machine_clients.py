"""Machine clients (``OAuthOptions.grant == "client_credentials"``) through the bot's own path,
against the local authorization server with its client_credentials grant on
(tests/servers/oauth_server.py ``--client-credentials``): the connection's credentials are its
secrets in the credential manager, it gets a token without anyone signing in, keeps it across a
restart, asks the token endpoint again once it expires, and never shows its secrets."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_core import errors
from mcp_core.models import Connection, ConnectionStatus, NewConnection
from mcp_core.oauth import Owner
from mcp_core.oauth.machine import MachineKeyProvider, machine_provider
from mcp_core.services import Services
from mcp_core.session_specs import session_spec
from mcp_core.settings import Settings
from mcp_core.store import create_engine
from tests.credentials.conftest import KEY_1
from tests.support.oauth_server import OAuthServer, start_oauth_server
from tests.support.registry import make_settings, open_services

pytestmark = pytest.mark.anyio

TEAM, USER = "T0001", "U000A"
CLIENT_ID = f"machine-{secrets.token_hex(6)}"
CLIENT_SECRET = f"cs-{secrets.token_urlsafe(24)}"


def settings_for(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, credential_keys=f"k1:{KEY_1}")


@pytest.fixture(scope="module")
def server() -> Iterator[OAuthServer]:
    with start_oauth_server("generic", client_credentials=True) as running:
        running.add_client(
            CLIENT_ID,
            client_secret=CLIENT_SECRET,
            token_endpoint_auth_method="client_secret_basic",
            grant_types=["client_credentials"],
        )
        yield running


async def connect(
    services: Services, server: OAuthServer, *, secret: str = CLIENT_SECRET, **oauth: str
) -> tuple[Connection, errors.McpCoreError | None]:
    """What an admin's form would do: the credentials into the credential manager, the grant
    into the config."""
    assert services.credentials is not None
    values = {"oauth:client_id": CLIENT_ID, "oauth:client_secret": secret}
    ref = await services.credentials.put(TEAM, USER, values)
    new = NewConnection(
        name="tracker",
        transport="streamable_http",
        url=server.mcp_url,
        config={"oauth": {"grant": "client_credentials", **oauth}},
        credential_ref=ref,
    )
    outcome = await services.registry.add_connection(TEAM, USER, new)
    return outcome.connection, outcome.error


def stored(new: NewConnection) -> Connection:
    """``new`` as the store would hand it back (for tests that open no session)."""
    now = datetime.now(UTC)
    fields = {"id": uuid.uuid4(), "team_id": TEAM, "user_id": USER, "created_at": now, "updated_at": now}
    return Connection(**new.model_dump(), **fields)


def client_credentials_requests(server: OAuthServer) -> int:
    return server.stats()["token_requests"].get("client_credentials", 0)


def metadata_requests(server: OAuthServer) -> int:
    return sum(1 for request in server.requests() if "/.well-known/" in request["path"])


async def test_a_client_credentials_connection_gets_a_token_and_calls_a_tool(
    tmp_path: Path, server: OAuthServer
) -> None:
    before = server.stats()
    async with open_services(settings_for(tmp_path)) as services:
        connection, error = await connect(services, server, scope="read")
        assert error is None, error
        assert connection.status == ConnectionStatus.HEALTHY
        assert not connection.needs_sign_in
        result = await services.registry.call(TEAM, USER, "tracker__whoami", {})
    assert not result.is_error, result.text
    caller = json.loads(result.text)
    # The client itself, no person; its id is one of the connection's secrets, so scrubbed.
    assert caller["client_id"] == caller["subject"] == "[redacted]"
    assert caller["scopes"] == ["read"]
    assert caller["resource"] == server.resource  # RFC 8707 resource sent on the token request
    asked = [r for r in server.requests() if r["params"].get("grant_type") == "client_credentials"]
    token_request = asked[-1]
    assert "client_secret" not in token_request["params"]  # in the Basic header, not the body
    assert token_request["client_auth"] == "basic"
    after = server.stats()
    assert client_credentials_requests(server) == before["token_requests"].get("client_credentials", 0) + 1
    assert after["authorizations"] == before["authorizations"]  # nobody was sent to /authorize
    assert after["registrations"] == before["registrations"]


async def test_the_credentials_are_never_in_config_or_in_clear_in_the_database(
    tmp_path: Path, server: OAuthServer
) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings) as services:
        connection, error = await connect(services, server)
        assert error is None, error
        owner = Owner(TEAM, USER, connection.id)
        grant = await services.oauth.grants.load(owner)
    assert grant is not None
    assert grant.tokens
    access_token = grant.tokens["access_token"]
    assert CLIENT_SECRET not in json.dumps(connection.config)
    assert CLIENT_ID not in json.dumps(connection.config)
    assert connection.config["oauth"] == {"grant": "client_credentials"}
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            rows = [
                str(tuple(row))
                for name in names
                for row in (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all()
            ]
    finally:
        await engine.dispose()
    text = "\n".join(rows)
    assert "client_credentials" in text  # the dump did read the connection's row
    for value in (CLIENT_SECRET, CLIENT_ID, access_token):
        assert value not in text


async def test_a_server_echoing_the_secret_or_the_token_gets_them_scrubbed(
    tmp_path: Path, server: OAuthServer
) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        connection, error = await connect(services, server)
        assert error is None, error
        grant = await services.oauth.grants.load(Owner(TEAM, USER, connection.id))
        assert grant is not None
        assert grant.tokens
        token = grant.tokens["access_token"]
        echoed = f"secret {CLIENT_SECRET} token {token} id {CLIENT_ID}"
        result = await services.registry.call(TEAM, USER, "tracker__echo", {"text": echoed})
        redact = services.registry.redactor(TEAM, USER)
        shown = redact(f"the answer quotes {CLIENT_SECRET}")
    assert not result.is_error, result.text
    for value in (CLIENT_SECRET, token, CLIENT_ID):
        assert value not in result.text
        assert value not in (json.dumps(result.structured) if result.structured else "")
    assert result.text.startswith("secret ")
    assert CLIENT_SECRET not in shown


async def test_a_restarted_bot_keeps_its_token_then_asks_the_token_endpoint_again_once_it_expires(
    tmp_path: Path, server: OAuthServer
) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings) as services:
        connection, error = await connect(services, server)
        assert error is None, error
    owner = Owner(TEAM, USER, connection.id)
    tokens_so_far = client_credentials_requests(server)

    async with open_services(settings) as services:  # a restart: the stored token is still good
        result = await services.registry.call(TEAM, USER, "tracker__whoami", {})
        assert not result.is_error, result.text
    assert client_credentials_requests(server) == tokens_so_far

    async with open_services(settings) as services:  # another restart, after the token expired
        grant = await services.oauth.grants.load(owner)
        assert grant is not None
        assert grant.tokens
        past = datetime.now(UTC) - timedelta(seconds=1)
        await services.oauth.grants.save(owner, tokens=grant.tokens, expires_at=past)
        server.expire_access()
        discoveries = metadata_requests(server)
        result = await services.registry.call(TEAM, USER, "tracker__whoami", {})
        assert not result.is_error, result.text
        renewed = await services.oauth.grants.load(owner)
    assert client_credentials_requests(server) == tokens_so_far + 1
    assert metadata_requests(server) == discoveries  # straight to the remembered token endpoint
    assert renewed is not None
    assert renewed.tokens
    assert renewed.tokens["access_token"] != grant.tokens["access_token"]
    assert renewed.expires_at is not None
    assert renewed.expires_at > datetime.now(UTC)


async def test_refused_credentials_mark_the_connection_needs_auth_and_say_what_to_fix(
    tmp_path: Path, server: OAuthServer
) -> None:
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    async with open_services(settings_for(tmp_path)) as services:
        connection, error = await connect(services, server, secret=wrong)
    assert isinstance(error, errors.ServerAuthError)
    assert "refused the client credentials" in str(error)
    assert "Update the connection's client credentials" in str(error)
    assert wrong not in str(error)
    assert connection.status == ConnectionStatus.NEEDS_AUTH
    assert not connection.needs_sign_in  # nobody can sign in for a machine: new credentials fix it


async def test_credentials_pinned_to_an_issuer_are_sent_to_no_other_server(
    tmp_path: Path, server: OAuthServer
) -> None:
    tokens_so_far = client_credentials_requests(server)
    async with open_services(settings_for(tmp_path)) as services:
        _, error = await connect(services, server, issuer="https://auth.elsewhere.example")
    assert isinstance(error, errors.ServerAuthError)
    assert client_credentials_requests(server) == tokens_so_far  # the secret never left


async def test_machine_credentials_go_into_no_header_but_are_scrubbed(tmp_path: Path) -> None:
    new = NewConnection(
        name="tracker",
        transport="streamable_http",
        url="https://mcp.example.com/mcp",
        config={"oauth": {"grant": "client_credentials"}},
    )
    connection = stored(new)
    values = {"oauth:client_id": CLIENT_ID, "oauth:client_secret": CLIENT_SECRET, "header:X-Extra": "x1"}
    spec = session_spec(connection, values, settings_for(tmp_path))
    assert spec.headers == {"X-Extra": "x1"}
    assert CLIENT_SECRET in spec.secret_values
    assert CLIENT_ID in spec.secret_values


async def test_a_private_key_connection_signs_its_assertion_with_the_keys_algorithm(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    new = NewConnection(
        name="tracker",
        transport="streamable_http",
        url="https://mcp.example.com/mcp",
        config={"oauth": {"grant": "client_credentials", "client_auth": "private_key_jwt"}},
    )
    connection = stored(new)
    async with open_services(settings_for(tmp_path)) as services:
        provider = machine_provider(
            services.oauth, connection, {"oauth:client_id": CLIENT_ID, "oauth:private_key": pem}
        )
        assert isinstance(provider, MachineKeyProvider)
        assertion = await provider._assertion_provider("https://as.example.com")
        with pytest.raises(errors.ConfigError, match="needs a private key"):
            machine_provider(services.oauth, connection, {"oauth:client_id": CLIENT_ID})
    assert jwt.get_unverified_header(assertion)["alg"] == "ES256"
    claims = jwt.decode(assertion, key.public_key(), algorithms=["ES256"], audience="https://as.example.com")
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert pem not in provider.secret_values()  # no secret of its own: the PEM is scrubbed via the spec
