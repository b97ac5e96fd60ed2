"""The fake OAuth server (tests/servers/oauth_server.py) is honest: the SDK's own OAuth client
signs in to every flavor through it, and raw requests prove it refuses what a real
authorization server refuses, the way one does."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, OAuthFlowError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import TextContent

from tests.servers.oauth_server import FLAVORS
from tests.support.oauth_server import (
    OAuthServer,
    afollow_sign_in,
    follow_sign_in,
    oauth_server,  # noqa: F401 - the fixture, as a conftest imports it
    start_oauth_server,
)

CALLBACK = "http://localhost:8765/oauth/callback"
FLOW_TIMEOUT_S = 30
READ_TIMEOUT_S = 10


# --- the SDK's client, as the bot wires it ------------------------------------------------------


@dataclass
class MemoryStorage:
    """The SDK's TokenStorage, in memory (the bot's keeps it in its database)."""

    client_info: OAuthClientInformationFull | None = None
    tokens: OAuthToken | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Browser:
    """redirect_handler/callback_handler pair: the person opens the link, the AS approves at once,
    and the redirect's query is what the bot's /oauth/callback would receive."""

    urls: list[str] = field(default_factory=list)
    results: list[dict[str, str]] = field(default_factory=list)

    async def redirect_handler(self, url: str) -> None:
        self.urls.append(url)
        self.results.append(await afollow_sign_in(url))

    async def callback_handler(self) -> AuthorizationCodeResult:
        result = self.results[-1]
        if "code" not in result:
            raise RuntimeError(f"sign-in refused: {result}")
        return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))


def sdk_provider(
    server: OAuthServer, storage: MemoryStorage, browser: Browser, *, auth_method: str = "none"
) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(
        client_name="Slack MCP bot (test)",
        redirect_uris=[CALLBACK],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method=auth_method,
    )
    return OAuthClientProvider(
        server_url=server.mcp_url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def text_of(result: object) -> str:
    [block] = result.content  # type: ignore[attr-defined]
    assert isinstance(block, TextContent)
    return block.text


async def call_tools(
    provider: OAuthClientProvider, url: str, *calls: tuple[str, dict[str, Any]]
) -> list[Any]:
    """Open a session through `provider` and make the calls; the results, in order."""
    results = []
    async with httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(READ_TIMEOUT_S)) as http:
        with anyio.fail_after(FLOW_TIMEOUT_S):
            async with Client(streamable_http_client(url, http_client=http)) as client:
                for name, arguments in calls:
                    results.append(await client.call_tool(name, arguments))
    return results


# --- raw HTTP, as a buggy or hostile client would send it ---------------------------------------


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@dataclass
class RawClient:
    server: OAuthServer
    http: httpx2.Client
    client_id: str
    secret: str | None
    method: str
    metadata: dict[str, Any]

    def authorize(self, verifier: str, **extra: str) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": CALLBACK,
            "state": "st-1",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "resource": self.server.resource,
            "scope": "read offline_access",
        } | extra
        params = {key: value for key, value in params.items() if value != ""}
        return follow_sign_in(f"{self.metadata['authorization_endpoint']}?{urlencode(params)}")

    def token(self, form: dict[str, str], *, basic: tuple[str, str] | None = None) -> httpx2.Response:
        auth = httpx2.BasicAuth(*basic) if basic else None
        if basic is None and self.method == "client_secret_basic":
            auth = httpx2.BasicAuth(self.client_id, self.secret or "")
        if self.method != "client_secret_basic":
            form = {"client_id": self.client_id} | form
        if self.method == "client_secret_post":
            form = {"client_secret": self.secret or ""} | form
        return self.http.post(self.metadata["token_endpoint"], data=form, auth=auth)

    def sign_in(self, **extra: str) -> dict[str, Any]:
        """Authorize and exchange the code; the token response."""
        verifier = secrets.token_urlsafe(48)
        redirect = self.authorize(verifier, **extra)
        response = self.token(
            {
                "grant_type": "authorization_code",
                "code": redirect["code"],
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
                "resource": self.server.resource,
            }
        )
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str) -> httpx2.Response:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "resource": self.server.resource,
        }
        return self.token(form)


def register(server: OAuthServer, http: httpx2.Client, method: str = "none") -> RawClient:
    metadata = http.get(server.metadata_url).json()
    body = {
        "client_name": "raw",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": method,
    }
    response = http.post(metadata["registration_endpoint"], json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    return RawClient(server, http, answer["client_id"], answer.get("client_secret"), method, metadata)


def mcp_post(
    server: OAuthServer, http: httpx2.Client, token: str | None, message: dict[str, Any]
) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, **message}, headers=headers)


INITIALIZE = {
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
CREATE_ISSUE = {"method": "tools/call", "params": {"name": "create_issue", "arguments": {"title": "x"}}}


def assert_oauth_error(response: httpx2.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text


@pytest.fixture(scope="module")
def generic() -> Iterator[OAuthServer]:
    """One generic server for the refusal tests; each registers its own client, so they stay apart."""
    with start_oauth_server() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=READ_TIMEOUT_S, follow_redirects=False) as client:
        yield client


# --- the SDK signs in -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sdk_signs_in_calls_tools_steps_up_and_refreshes() -> None:
    async with start_oauth_server() as server:
        storage, browser = MemoryStorage(), Browser()
        provider = sdk_provider(server, storage, browser)
        whoami, echo = await call_tools(provider, server.mcp_url, ("whoami", {}), ("echo", {"text": "hi"}))

        me = json.loads(text_of(whoami))
        assert storage.client_info is not None
        assert storage.tokens is not None
        assert me["client_id"] == storage.client_info.client_id
        assert me["scopes"] == ["read", "offline_access"]  # the challenge's scope + SEP-2207 offline_access
        assert me["grant_id"].startswith("grant_")
        assert me["resource"] == server.mcp_url
        assert storage.tokens.access_token not in text_of(whoami)
        assert text_of(echo) == "hi"
        first = browser.results[0]
        assert first["iss"] == server.issuer
        assert first["redirect_uri"] == CALLBACK
        assert f"resource={server.mcp_url}".replace(":", "%3A").replace("/", "%2F") in browser.urls[0]

        # create_issue needs write: 403 insufficient_scope, the SDK re-authorizes with the union.
        [created] = await call_tools(provider, server.mcp_url, ("create_issue", {"title": "Bug"}))
        assert json.loads(text_of(created))["title"] == "Bug"
        assert storage.tokens.scope == "read offline_access write"

        # A known expiry passed: the SDK refreshes (rotation gives a new refresh token).
        old_refresh = storage.tokens.refresh_token
        provider.context.token_expiry_time = time.time() - 1
        [again] = await call_tools(provider, server.mcp_url, ("whoami", {}))
        assert json.loads(text_of(again))["grant_id"] != me["grant_id"]  # the step-up made a new grant
        assert storage.tokens.refresh_token not in (None, old_refresh)

        stats = server.stats()
        assert stats["registrations"] == 1
        assert stats["authorizations"] == 2
        assert stats["token_requests"] == {"authorization_code": 2, "refresh_token": 1}
        assert stats["mcp_forbidden"] == 1
        assert stats["mcp_unauthorized"] >= 1
        assert stats["refresh_reuse"] == 0
        assert stats["live_grants"] == 2

        log = server.requests()
        assert [(entry["method"], entry["path"]) for entry in log] == [
            ("GET", "/.well-known/oauth-authorization-server"),
            ("POST", "/register"),
            ("GET", "/authorize"),
            ("POST", "/token"),
            ("GET", "/authorize"),
            ("POST", "/token"),
            ("POST", "/token"),
        ]
        exchange = log[3]["params"]
        assert exchange["grant_type"] == "authorization_code"
        assert exchange["code"] == exchange["code_verifier"] == "<redacted>"
        assert log[-1]["params"]["refresh_token"] == "<redacted>"
        assert storage.tokens.access_token not in json.dumps(log)


def flavor_options(flavor: str) -> dict[str, Any]:
    if flavor == "github":  # no DCR: an OAuth app registered beforehand
        return {"client_id": "Iv1.test", "client_secret": "gh-secret", "redirect_uris": [CALLBACK]}
    return {}


@pytest.mark.anyio
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_each_flavor_serves_its_metadata_and_the_sdk_signs_in(flavor: str) -> None:
    async with start_oauth_server(flavor, **flavor_options(flavor)) as server:
        settings = server.settings
        async with httpx2.AsyncClient(timeout=READ_TIMEOUT_S) as http:
            challenge = (await http.post(server.mcp_url, json={})).headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert f'resource_metadata="{server.prm_url}"' in challenge
            assert ("scope=" in challenge) == settings["challenge_scope"]
            prm = (await http.get(server.prm_url)).json()
            assert prm["resource"] == server.mcp_url
            assert prm["authorization_servers"] == [server.issuer]
            metadata = (await http.get(server.metadata_url)).json()
        assert metadata["issuer"] == server.issuer
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert ("registration_endpoint" in metadata) == settings["dcr"]
        assert (
            metadata.get("authorization_response_iss_parameter_supported", False) == settings["iss_parameter"]
        )
        assert (server.as_url == server.rs_url) == settings["same_origin"]

        storage, browser = MemoryStorage(), Browser()
        method = "none"
        if flavor == "github":
            method = "client_secret_basic"
            storage.client_info = OAuthClientInformationFull(
                client_id="Iv1.test",
                client_secret="gh-secret",
                redirect_uris=[CALLBACK],
                token_endpoint_auth_method=method,
            )
        provider = sdk_provider(server, storage, browser, auth_method=method)
        [whoami] = await call_tools(provider, server.mcp_url, ("whoami", {}))
        me = json.loads(text_of(whoami))
        assert storage.client_info is not None
        assert me["client_id"] == storage.client_info.client_id
        assert set(me["scopes"]) >= set(settings["base_scopes"])
        assert ("iss" in browser.results[0]) == settings["iss_parameter"]


@pytest.mark.anyio
async def test_atlassian_issuer_mismatch_is_refused_by_the_sdk() -> None:
    async with start_oauth_server("atlassian", issuer_mismatch=True) as server:
        async with httpx2.AsyncClient(timeout=READ_TIMEOUT_S) as http:
            metadata = (await http.get(server.metadata_url)).json()
        assert metadata["issuer"] == server.as_url != server.issuer  # the path dropped
        provider = sdk_provider(server, MemoryStorage(), Browser())
        with pytest.raises(BaseException) as info:  # noqa: PT011 - an ExceptionGroup from the Client
            await call_tools(provider, server.mcp_url, ("whoami", {}))
        [refusal] = [leaf for leaf in leaves(info.value) if isinstance(leaf, OAuthFlowError)]
        assert "issuer mismatch" in str(refusal)
        assert server.stats()["authorizations"] == 0


@pytest.mark.anyio
async def test_legacy_server_without_protected_resource_metadata() -> None:
    legacy = {"prm": "none", "same_origin": True, "issuer_path": ""}  # Atlassian's v1 before PRM
    paths = {"authorize_path": "/v1/authorize", "token_path": "/v1/token", "register_path": "/v1/register"}
    async with start_oauth_server("atlassian", **legacy, **paths) as server:
        assert server.prm_url is None
        async with httpx2.AsyncClient(timeout=READ_TIMEOUT_S) as http:
            response = await http.post(server.mcp_url, json={})
            assert response.headers["www-authenticate"] == "Bearer"
            root = f"{server.rs_url}/.well-known/oauth-protected-resource/v1/mcp"
            assert (await http.get(root)).status_code == 404
        storage, browser = MemoryStorage(), Browser()
        [whoami] = await call_tools(sdk_provider(server, storage, browser), server.mcp_url, ("whoami", {}))
        assert json.loads(text_of(whoami))["resource"] == server.mcp_url


# --- the AS refuses what a real one refuses -------------------------------------------------------


def test_metadata_and_challenge_of_the_generic_flavor(generic: OAuthServer, http: httpx2.Client) -> None:
    response = mcp_post(generic, http, None, INITIALIZE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{generic.rs_url}/.well-known/oauth-protected-resource/mcp", scope="read"'
    )
    metadata = http.get(generic.metadata_url).json()
    assert generic.issuer.startswith("http://localhost:")
    assert generic.mcp_url.startswith("http://127.0.0.1:")
    assert metadata == {
        "issuer": generic.issuer,
        "authorization_endpoint": f"{generic.issuer}/authorize",
        "token_endpoint": f"{generic.issuer}/token",
        "registration_endpoint": f"{generic.issuer}/register",
        "revocation_endpoint": f"{generic.issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": ["read", "write", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": True,
    }
    assert http.get(f"{generic.as_url}/.well-known/openid-configuration").status_code == 404


def test_registration_validates_the_client_metadata(generic: OAuthServer, http: httpx2.Client) -> None:
    url = f"{generic.issuer}/register"
    assert_oauth_error(http.post(url, json={"client_name": "x"}), 400, "invalid_redirect_uri")
    assert_oauth_error(http.post(url, json={"redirect_uris": ["ftp://x/cb"]}), 400, "invalid_redirect_uri")
    bad_method = {"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "private_key_jwt"}
    assert_oauth_error(http.post(url, json=bad_method), 400, "invalid_client_metadata")
    bad_grant = {"redirect_uris": [CALLBACK], "grant_types": ["password"]}
    assert_oauth_error(http.post(url, json=bad_grant), 400, "invalid_client_metadata")
    assert_oauth_error(http.post(url, content=b"nope"), 400, "invalid_client_metadata")

    default = http.post(url, json={"redirect_uris": [CALLBACK]}).json()  # RFC 7591 default method
    assert default["token_endpoint_auth_method"] == "client_secret_basic"
    assert default["client_secret"]
    public = http.post(url, json={"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"}).json()
    assert "client_secret" not in public


def test_authorize_refuses_on_the_page_or_by_redirect(generic: OAuthServer, http: httpx2.Client) -> None:
    client = register(generic, http)
    verifier = secrets.token_urlsafe(48)

    unknown = client.authorize(verifier, client_id="nobody")
    assert unknown["status"] == "400"
    assert unknown["error"] == "invalid_client"
    assert "redirect_uri" not in unknown
    elsewhere = client.authorize(verifier, redirect_uri="http://localhost:8765/other")
    assert elsewhere["status"] == "400"
    assert elsewhere["error"] == "invalid_request"

    for extra, error in [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"resource": "http://127.0.0.1:1/mcp"}, "invalid_target"),
        ({"scope": "read admin"}, "invalid_scope"),
    ]:
        result = client.authorize(verifier, **extra)
        assert result["error"] == error, (extra, result)
        assert result["state"] == "st-1"
        assert result["iss"] == generic.issuer
        assert result["redirect_uri"] == CALLBACK
        assert "code" not in result

    granted = client.authorize(verifier)
    assert granted["code"].startswith("code_")
    assert granted["state"] == "st-1"
    assert granted["iss"] == generic.issuer


def test_token_refuses_a_wrong_verifier_redirect_uri_or_resource(
    generic: OAuthServer, http: httpx2.Client
) -> None:
    client = register(generic, http)
    verifier = secrets.token_urlsafe(48)
    code = client.authorize(verifier)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "resource": generic.resource,
    }
    assert_oauth_error(
        client.token(form | {"code_verifier": secrets.token_urlsafe(48)}), 400, "invalid_grant"
    )
    assert_oauth_error(client.token(form | {"redirect_uri": "http://localhost:8765/x"}), 400, "invalid_grant")
    assert_oauth_error(client.token(form | {"resource": "http://127.0.0.1:1/mcp"}), 400, "invalid_target")
    assert_oauth_error(
        client.token({k: v for k, v in form.items() if k != "code_verifier"}), 400, "invalid_request"
    )
    assert_oauth_error(client.token(form | {"grant_type": "password"}), 400, "unsupported_grant_type")
    other = register(generic, http)
    assert_oauth_error(other.token(form), 400, "invalid_grant")  # the code is another client's
    response = client.token(form)  # failed attempts did not use the code up
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read offline_access"
    assert body["refresh_token"].startswith("rt_")


def test_a_reused_code_is_refused_and_revokes_its_grant(generic: OAuthServer, http: httpx2.Client) -> None:
    client = register(generic, http)
    verifier = secrets.token_urlsafe(48)
    code = client.authorize(verifier)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    first = client.token(form)
    assert first.status_code == 200
    before = generic.stats()["code_reuse"]
    assert_oauth_error(client.token(form), 400, "invalid_grant")
    assert generic.stats()["code_reuse"] == before + 1
    response = mcp_post(generic, http, first.json()["access_token"], INITIALIZE)
    assert response.status_code == 401
    assert (
        'error="invalid_token", error_description="the grant was revoked"'
        in response.headers["www-authenticate"]
    )
    assert_oauth_error(client.refresh(first.json()["refresh_token"]), 400, "invalid_grant")


def test_client_authentication_follows_the_registered_method(
    generic: OAuthServer, http: httpx2.Client
) -> None:
    client = register(generic, http, "client_secret_basic")
    verifier = secrets.token_urlsafe(48)
    code = client.authorize(verifier)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }

    wrong = client.token(form, basic=(client.client_id, "not-the-secret"))
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    posted = http.post(
        client.metadata["token_endpoint"],
        data=form | {"client_id": client.client_id, "client_secret": client.secret or ""},
    )
    assert_oauth_error(posted, 401, "invalid_client")  # registered for Basic, sent in the body
    bare = http.post(client.metadata["token_endpoint"], data=form | {"client_id": client.client_id})
    assert_oauth_error(bare, 401, "invalid_client")
    assert_oauth_error(client.token(form, basic=("nobody", "x")), 401, "invalid_client")
    assert client.token(form).status_code == 200

    public = register(generic, http, "none")
    sneaky = http.post(
        public.metadata["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": "rt_x",
            "client_id": public.client_id,
            "client_secret": "s",
        },
    )
    assert_oauth_error(sneaky, 401, "invalid_client")  # a public client has no secret to send
    assert_oauth_error(
        http.post(public.metadata["token_endpoint"], json={"grant_type": "refresh_token"}),
        400,
        "invalid_request",
    )


def test_replaying_a_rotated_refresh_token_revokes_the_grant(
    generic: OAuthServer, http: httpx2.Client
) -> None:
    client = register(generic, http)
    first = client.sign_in()
    second = client.refresh(first["refresh_token"])
    assert second.status_code == 200
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert mcp_post(generic, http, second_tokens["access_token"], INITIALIZE).status_code == 200

    before = generic.stats()
    # What a second, racing refresh with the same token does: the whole grant goes.
    assert_oauth_error(client.refresh(first["refresh_token"]), 400, "invalid_grant")
    after = generic.stats()
    assert after["refresh_reuse"] == before["refresh_reuse"] + 1
    assert after["live_grants"] == before["live_grants"] - 1
    assert_oauth_error(client.refresh(second_tokens["refresh_token"]), 400, "invalid_grant")
    assert mcp_post(generic, http, second_tokens["access_token"], INITIALIZE).status_code == 401


def test_an_expired_access_token_gets_401_and_refresh_still_works(
    generic: OAuthServer, http: httpx2.Client
) -> None:
    client = register(generic, http)
    tokens = client.sign_in()
    assert mcp_post(generic, http, tokens["access_token"], INITIALIZE).status_code == 200
    assert generic.expire_access() >= 1
    response = mcp_post(generic, http, tokens["access_token"], INITIALIZE)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": "the access token expired"}
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert 'scope="read"' in response.headers["www-authenticate"]
    refreshed = client.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert mcp_post(generic, http, refreshed.json()["access_token"], INITIALIZE).status_code == 200


def test_create_issue_without_write_is_a_403_step_up(generic: OAuthServer, http: httpx2.Client) -> None:
    client = register(generic, http)
    tokens = client.sign_in()
    response = mcp_post(generic, http, tokens["access_token"], CREATE_ISSUE)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="create_issue needs write", '
        f'resource_metadata="{generic.prm_url}", scope="read write"'
    )
    listing = {"method": "tools/call", "params": {"name": "list_issues", "arguments": {}}}
    assert mcp_post(generic, http, tokens["access_token"], listing).status_code != 403
    narrowed = client.token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": "read write"}
    )
    assert_oauth_error(narrowed, 400, "invalid_scope")  # a refresh cannot widen the grant


def test_revocation(generic: OAuthServer, http: httpx2.Client) -> None:
    client = register(generic, http, "client_secret_post")
    tokens = client.sign_in()
    revoke = client.metadata["revocation_endpoint"]
    base = {"client_id": client.client_id, "client_secret": client.secret or ""}
    wrong = http.post(revoke, data=base | {"client_secret": "x", "token": tokens["refresh_token"]})
    assert_oauth_error(wrong, 401, "invalid_client")
    assert http.post(revoke, data=base | {"token": "rt_unknown"}).status_code == 200  # RFC 7009 §2.2
    before = generic.stats()["revocations"]
    response = http.post(
        revoke, data=base | {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert response.content == b""
    assert generic.stats()["revocations"] == before + 1
    assert_oauth_error(client.refresh(tokens["refresh_token"]), 400, "invalid_grant")
    assert mcp_post(generic, http, tokens["access_token"], INITIALIZE).status_code == 401
    already_revoked = http.post(revoke, data=base | {"token": tokens["access_token"]})
    assert already_revoked.status_code == 200
    logged = [entry for entry in generic.requests() if entry["path"] == "/revoke"]
    assert all(entry["params"]["token"] == "<redacted>" for entry in logged)
    assert all(entry["params"]["client_secret"] == "<redacted>" for entry in logged)


def test_preregistered_clients_and_revoke_all(oauth_server: OAuthServer, http: httpx2.Client) -> None:  # noqa: F811
    generic = oauth_server
    with pytest.raises(RuntimeError, match="invalid_client_metadata"):
        generic.add_client(
            "pre-0", redirect_uris=[CALLBACK], token_endpoint_auth_method="client_secret_basic"
        )
    generic.add_client("pre-1", client_secret="pre-secret", redirect_uris=[CALLBACK])
    metadata = http.get(generic.metadata_url).json()
    client = RawClient(generic, http, "pre-1", "pre-secret", "client_secret_basic", metadata)
    tokens = client.sign_in()
    as_post = RawClient(generic, http, "pre-1", "pre-secret", "client_secret_post", metadata)
    assert as_post.refresh(tokens["refresh_token"]).status_code == 200  # either secret method
    assert generic.revoke_all() >= 1
    assert generic.stats()["live_grants"] == 0
    assert mcp_post(generic, http, tokens["access_token"], INITIALIZE).status_code == 401


def test_client_credentials_for_a_confidential_client_registered_for_it(
    generic: OAuthServer, http: httpx2.Client
) -> None:
    off = http.get(generic.metadata_url).json()
    assert "client_credentials" not in off["grant_types_supported"]  # only with --client-credentials
    generic.add_client("pre-cc", client_secret="cc-secret", redirect_uris=[CALLBACK])
    cc = {"grant_type": "client_credentials"}
    refused = http.post(off["token_endpoint"], data=cc, auth=("pre-cc", "cc-secret"))
    assert_oauth_error(refused, 400, "unsupported_grant_type")
    with pytest.raises(RuntimeError, match="invalid_client_metadata"):
        generic.add_client("m-0", client_secret="s", grant_types=["client_credentials"])

    with start_oauth_server(client_credentials=True) as server:
        metadata = http.get(server.metadata_url).json()
        assert "client_credentials" in metadata["grant_types_supported"]
        token_url = metadata["token_endpoint"]
        server.add_client("machine", client_secret="m-secret", grant_types=["client_credentials"])
        server.add_client("person", client_secret="p-secret", redirect_uris=[CALLBACK])
        with pytest.raises(RuntimeError, match="confidential"):  # RFC 6749 §4.4: no public machine
            server.add_client("public", grant_types=["client_credentials"])
        form = cc | {"resource": server.resource, "scope": "read"}

        answer = http.post(token_url, data=form, auth=("machine", "m-secret"))
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        assert tokens["scope"] == "read"
        assert "refresh_token" not in tokens  # §4.4.3: the client just asks again
        assert mcp_post(server, http, tokens["access_token"], INITIALIZE).status_code == 200
        wrong = http.post(token_url, data=form, auth=("machine", "not-it"))
        assert_oauth_error(wrong, 401, "invalid_client")
        person = http.post(token_url, data=form, auth=("person", "p-secret"))
        assert_oauth_error(person, 400, "unauthorized_client")  # not registered for the grant
        elsewhere = http.post(
            token_url, data=form | {"resource": "http://127.0.0.1:9/x"}, auth=("machine", "m-secret")
        )
        assert_oauth_error(elsewhere, 400, "invalid_target")
        unknown = http.post(token_url, data=form | {"scope": "admin"}, auth=("machine", "m-secret"))
        assert_oauth_error(unknown, 400, "invalid_scope")
        assert server.stats()["token_requests"]["client_credentials"] == 5


def test_required_resource_and_audience() -> None:
    other = "http://127.0.0.1:9/other"
    with (
        start_oauth_server(require_resource=True, other_resources=[other]) as server,
        httpx2.Client() as http,
    ):
        client = register(server, http)
        verifier = secrets.token_urlsafe(48)
        assert client.authorize(verifier, resource="")["error"] == "invalid_target"
        code = client.authorize(verifier, resource=other)["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        }
        tokens = client.token(form).json()
        response = mcp_post(server, http, tokens["access_token"], INITIALIZE)  # a token for another resource
        assert response.status_code == 401
        assert f"the access token is for {other}" in response.json()["error_description"]


def test_without_rotation_the_refresh_token_stays_and_oidc_discovery() -> None:
    with start_oauth_server(rotate_refresh=False, oidc_discovery=True) as server, httpx2.Client() as http:
        oidc = http.get(f"{server.as_url}/.well-known/openid-configuration").json()
        assert oidc["issuer"] == server.issuer
        client = register(server, http)
        tokens = client.sign_in()
        for _ in range(2):
            refreshed = client.refresh(tokens["refresh_token"])
            assert refreshed.status_code == 200
            assert "refresh_token" not in refreshed.json()  # RFC 6749 §6: the client keeps its own
        assert server.stats()["refresh_reuse"] == 0
        no_offline = client.sign_in(scope="read")
        assert "refresh_token" not in no_offline  # refresh tokens only for offline_access


def test_cimd_client_ids_and_a_person_who_declines() -> None:
    with start_oauth_server(cimd=True, deny=True) as server, httpx2.Client() as http:
        metadata = http.get(server.metadata_url).json()
        assert metadata["client_id_metadata_document_supported"] is True
        client = RawClient(
            server, http, "https://bot.example.com/oauth/client-metadata.json", None, "none", metadata
        )
        result = client.authorize(secrets.token_urlsafe(48))  # the client is accepted, the person says no
        assert result["error"] == "access_denied"
        assert result["state"] == "st-1"
        assert (
            client.authorize("x" * 43, client_id="http://bot.example.com/m.json")["error"] == "invalid_client"
        )


def test_refresh_grace_keeps_the_previous_token_until_its_replacement_is_used() -> None:
    with start_oauth_server("sentry") as server, httpx2.Client() as http:
        client = register(server, http)
        first = client.sign_in(scope="event:read")
        second = client.refresh(first["refresh_token"]).json()
        retry = client.refresh(first["refresh_token"])  # the response was lost: the old token still works
        assert retry.status_code == 200
        third = client.refresh(retry.json()["refresh_token"]).json()
        assert_oauth_error(client.refresh(first["refresh_token"]), 400, "invalid_grant")  # now spent
        assert_oauth_error(client.refresh(second["refresh_token"]), 400, "invalid_grant")
        assert server.stats()["live_grants"] == 1  # workers-oauth-provider refuses without revoking
        assert mcp_post(server, http, third["access_token"], INITIALIZE).status_code == 200
        revoked = http.post(
            client.metadata["revocation_endpoint"],
            data={"client_id": client.client_id, "token": third["refresh_token"]},
        )
        assert revoked.status_code == 200
        assert client.metadata["revocation_endpoint"] == client.metadata["token_endpoint"]
        assert server.stats()["live_grants"] == 0


def test_bad_options_are_refused_before_starting() -> None:
    with pytest.raises(TypeError):
        start_oauth_server(no_such_option=True)
    with pytest.raises(ValueError, match="flavor"):
        start_oauth_server("okta")
    with pytest.raises(ValueError, match="prm none"):
        start_oauth_server(prm="none")
