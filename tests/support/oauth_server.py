"""Start the fake OAuth 2.1 authorization server + protected MCP server (tests/servers/oauth_server.py).

The fake runs as a subprocess (like the toy servers, see tests/support/servers.py), so a test can
kill, restart or share it exactly as it would a hosted server, and its event loop is never the
test's. Options are the server's command-line options as keyword arguments (`access_ttl=5`,
`dcr=False`, `scopes=["read", "write"]`, `redirect_uris=[...]`), checked here before it starts.

    with start_oauth_server("github", client_id="app", client_secret="s", redirect_uris=[cb]) as oauth:
        oauth.mcp_url        # http://127.0.0.1:P1/mcp: the MCP endpoint and the RFC 8707 resource
        oauth.issuer         # http://localhost:P2[/path]: the AS, on another origin by default
        oauth.stats()        # counts: token requests by grant_type, registrations, ...
        oauth.requests()     # what the AS saw, in order (secret values redacted)
        oauth.revoke_all()   # the person revokes the app at the provider
        oauth.expire_access()  # every access token expires now: the next MCP request gets 401

    async with start_oauth_server(rotate_refresh=True) as oauth:   # async tests: start off the loop
        ...

    follow_sign_in(authorize_url)  # what the browser would bring back to the bot's /oauth/callback

A conftest (or a test module) gets the `oauth_server` fixture (generic flavor, one per test) with
`from tests.support.oauth_server import oauth_server` or `pytest_plugins = ["tests.support.oauth_server"]`.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
import anyio.to_thread
import httpx2
import pytest

from tests.servers.oauth_server import FLAVORS, Settings, parse_settings
from tests.support.servers import _supervised

__all__ = [
    "OAUTH_SERVER",
    "OAuthServer",
    "afollow_sign_in",
    "follow_sign_in",
    "oauth_server",
    "option_flags",
    "start_oauth_server",
]

OAUTH_SERVER = Path(__file__).resolve().parents[1] / "servers" / "oauth_server.py"
CONTROL_TIMEOUT_S = 5.0
SIGN_IN_TIMEOUT_S = 10.0
_READY = re.compile(rb"^READY (\{.*\})$")
_REPEATED = {"redirect_uris": "--redirect-uri", "other_resources": "--other-resource"}
_OPTIONS = {item.name for item in fields(Settings)} - {"flavor"}


def option_flags(options: Mapping[str, Any]) -> list[str]:
    """The server's command-line flags for keyword options (True → --x, False → --no-x,
    a list of scopes → one space-separated argument, redirect_uris → one flag per URI).

    Raises:
        TypeError: an option the server does not have.
    """
    flags: list[str] = []
    for name, value in options.items():
        if name not in _OPTIONS:
            raise TypeError(f"unknown oauth server option {name!r} (one of: {', '.join(sorted(_OPTIONS))})")
        option = "--" + name.replace("_", "-")
        if value is None:
            continue
        if name in _REPEATED:
            for item in [value] if isinstance(value, str) else value:
                flags += [_REPEATED[name], str(item)]
        elif isinstance(value, bool):
            flags.append(option if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, Sequence) and not isinstance(value, str):
            flags += [option, " ".join(str(item) for item in value)]
        else:
            flags += [option, str(value)]
    return flags


class OAuthServer:
    """A handle on one fake OAuth server process: started by `start()`, `with` or `async with`,
    stopped by `stop()` or on leaving the block. Its URLs come from the server's READY line."""

    def __init__(self, flavor: str = "generic", env: Mapping[str, str] | None = None, **options: Any) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r} (one of: {', '.join(sorted(FLAVORS))})")
        self.flavor = flavor
        self.flags = ["--flavor", flavor, *option_flags(options)]
        try:  # refuse bad values here, with the server's own parser, not as a dead subprocess
            parse_settings(self.flags)
        except SystemExit as exc:
            raise ValueError(f"bad oauth server options {self.flags}: {exc}") from None
        self.env = dict(env or {})
        self.info: dict[str, Any] = {}
        """The READY document: mcp_url, resource, issuer, as_url, rs_url, prm_url, metadata_url, settings."""
        self.process: subprocess.Popen[bytes] | None = None
        self._stack: contextlib.ExitStack | None = None

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> OAuthServer:
        """Start the process and wait (SERVER_START_TIMEOUT_S) for READY; no-op when running.

        Raises:
            RuntimeError: the server exited or did not announce itself in time.
        """
        if self._stack is not None:
            return self
        stack = contextlib.ExitStack()
        command = [sys.executable, str(OAUTH_SERVER), *self.flags]
        try:
            process, match = stack.enter_context(
                _supervised(command, env=self.env, ready_on="stdout", pattern=_READY)
            )
        except BaseException:
            stack.close()
            raise
        self.process, self.info, self._stack = process, json.loads(match.group(1)), stack
        return self

    def stop(self) -> None:
        """Terminate (then kill) and reap the process; idempotent."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OAuthServer:
        # Shielded: a cancelled start must still hand back the process so that it gets stopped.
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    # URLs ---------------------------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        if not self.info:
            raise RuntimeError("the oauth server is not started")
        return self.info[key]

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint, also the canonical resource (RFC 8707): http://127.0.0.1:P1/mcp."""
        return self._get("mcp_url")

    @property
    def resource(self) -> str:
        return self._get("resource")

    @property
    def issuer(self) -> str:
        """The AS issuer as advertised in the PRM (http://localhost:P2 plus the flavor's path)."""
        return self._get("issuer")

    @property
    def as_url(self) -> str:
        """The AS origin (where /_test/ lives): http://localhost:P2, or the RS's with same_origin."""
        return self._get("as_url")

    @property
    def rs_url(self) -> str:
        return self._get("rs_url")

    @property
    def prm_url(self) -> str | None:
        """The protected resource metadata URL the 401 challenge names (None with prm="none")."""
        return self._get("prm_url")

    @property
    def metadata_url(self) -> str:
        """The RFC 8414 metadata URL of the issuer."""
        return self._get("metadata_url")

    @property
    def settings(self) -> dict[str, Any]:
        """The effective options (flavor preset + overrides); client_secret redacted."""
        return self._get("settings")

    # test controls ------------------------------------------------------------------------------

    def _control(self, method: str, name: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.as_url}/_test/{name}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_S) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"oauth server /_test/{name}: {exc.code} {exc.read()!r}") from None

    def stats(self) -> dict[str, Any]:
        """Counts so far: token_requests (by grant_type), registrations, authorizations,
        authorize_errors, revocations, refresh_reuse, code_reuse, revoked_grants, live_grants,
        mcp_requests, mcp_unauthorized, mcp_forbidden."""
        return self._control("GET", "stats")

    def requests(self) -> list[dict[str, Any]]:
        """Every request the AS answered, in order: method, path, params (values of code,
        code_verifier, client_secret, tokens redacted), client_auth ("basic"), status, error,
        redirect ("code" or the error of an authorize redirect)."""
        return self._control("GET", "requests")

    def revoke_all(self) -> int:
        """Revoke every grant, as a person revoking the app at the provider; returns how many."""
        return self._control("POST", "revoke-all")["revoked"]

    def expire_access(self) -> int:
        """Make every current access token expire now; returns how many."""
        return self._control("POST", "expire-access")["expired"]

    def add_client(
        self,
        client_id: str,
        *,
        redirect_uris: Sequence[str] = (),
        client_secret: str | None = None,
        token_endpoint_auth_method: str | None = None,
        grant_types: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Pre-register a client (as an admin would at the provider), e.g. once the bot's callback
        URL is known. Without a method: none without a secret, either secret method with one.
        ``grant_types=["client_credentials"]`` (with ``client_credentials=True`` on the server):
        a machine client, no redirect URIs."""
        spec = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": list(redirect_uris),
            "token_endpoint_auth_method": token_endpoint_auth_method,
            "grant_types": list(grant_types) if grant_types else None,
        }
        return self._control("POST", "clients", spec)


def start_oauth_server(
    flavor: str = "generic", *, env: Mapping[str, str] | None = None, **options: Any
) -> OAuthServer:
    """An `OAuthServer` for `flavor` with `options`; use it as `with`/`async with`, or `.start()`.

    Raises:
        ValueError: an unknown flavor or a bad option value.
        TypeError: an unknown option.
    """
    return OAuthServer(flavor, env, **options)


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    """A fresh generic-flavor fake OAuth server for one test."""
    with start_oauth_server() as server:
        yield server


# --- the browser's part ------------------------------------------------------------------------


def _sign_in_result(response: httpx2.Response) -> dict[str, str]:
    if response.is_redirect:
        location = response.headers["location"]
        parts = urlsplit(location)
        result = dict(parse_qsl(parts.query, keep_blank_values=True))
        result["redirect_uri"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return result
    try:
        body = response.json()
    except ValueError:
        body = {}
    return {
        "status": str(response.status_code),
        "error": str(body.get("error") or "no_redirect"),
        "error_description": str(body.get("error_description") or response.text[:200]),
    }


def follow_sign_in(authorize_url: str) -> dict[str, str]:
    """GET the authorize URL like a browser whose person approves, without following the redirect.

    Returns the redirect's query (`code`, `state`, `iss`, or `error`, `error_description`) plus
    `redirect_uri` (where the browser would go: the bot's /oauth/callback). When the AS refuses
    to redirect (unknown client, unregistered redirect URI: RFC 6749 §4.1.2.1) it returns
    `status` (e.g. "400"), `error` and `error_description` instead, and no `redirect_uri`.
    """
    with httpx2.Client(follow_redirects=False, timeout=SIGN_IN_TIMEOUT_S) as http:
        return _sign_in_result(http.get(authorize_url))


async def afollow_sign_in(authorize_url: str) -> dict[str, str]:
    """`follow_sign_in` for async code (an SDK `redirect_handler`, say)."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=SIGN_IN_TIMEOUT_S) as http:
        return _sign_in_result(await http.get(authorize_url))
