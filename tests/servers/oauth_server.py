"""A local OAuth 2.1 authorization server and an OAuth-protected MCP server, for the test suite.

Run from the repository root (tests start it as a subprocess, see tests/support/oauth_server.py):

    python -m tests.servers.oauth_server --flavor generic|linear|notion|atlassian|sentry|github [options]

Why a real server and not a mock of the SDK: the bot's OAuth code is mostly about what happens
between requests (discovery, registration, code exchange, refresh, revocation, step-up), and the
only honest test of that is a server that validates what a real authorization server validates
and refuses the way one does: RFC 6749 error JSON `{"error", "error_description"}` with 400, or
401 for client authentication. Nothing here is lenient on purpose, and nothing is a shortcut that
a real provider would not offer, except that `/authorize` approves at once (no person, no page).

One process, two listeners on 127.0.0.1 with free ports (port 0), announced by one stdout line

    READY {"mcp_url": ..., "resource": ..., "issuer": ..., "as_url": ..., "rs_url": ..., ...}

- the resource server (RS): MCP over streamable HTTP at `http://127.0.0.1:P1/mcp` (`--mcp-path`),
  and its RFC 9728 protected resource metadata;
- the authorization server (AS): advertised as `http://localhost:P2` (bound on 127.0.0.1), a
  different origin from the RS like the hosted servers whose AS lives elsewhere. With
  `--same-origin` the AS is served by the RS listener instead (`http://127.0.0.1:P1`), as
  Linear, Notion and Sentry do.

What the AS checks: DCR metadata (redirect_uris present and http(s), auth method, grant and
response types, scope); on /authorize a known client (or, with --cimd, an https URL client_id),
the exact registered redirect_uri (both answered 400 on the page, never redirected), then
response_type=code, an S256 code_challenge, resource = this RS (or an --other-resource), scope
within scopes_supported (those redirect with error=, state and iss). The person always approves
(--deny: access_denied); the grant's subject is the request's login_hint, else --subject. On
/token: client authentication by the client's registered method (401 invalid_client otherwise),
single-use codes bound to client, redirect_uri, PKCE verifier and resource (a reused code revokes
its grant), refresh tokens bound to client and resource, rotation with replay detection (a
rotated-out token presented again revokes the grant), no parameter twice. With
--client-credentials, also the client_credentials grant (OAuth 2.1 §4.2) for confidential clients
pre-registered with it (POST /_test/clients with "grant_types": a machine client, no redirect
URI): client authentication, resource and scope checked as above, the client is the subject,
no refresh token. Simplifications: the
redirect URI match is exact (no RFC 8252 loopback-port leeway), a CIMD document is never fetched,
and refresh_token is implied by authorization_code.

A flavor (`--flavor`) is a preset of the options below, mimicking one hosted MCP server's
published OAuth behaviour as far as it could be found; every option given on the command line
overrides the preset. See FLAVORS for what each one is based on and what is guessed.

Test-only endpoints on the AS (not recorded in /_test/requests):
`GET /_test/stats`, `GET /_test/requests`, `POST /_test/revoke-all` (the person revokes the app
at the provider), `POST /_test/expire-access` (every current access token expires now),
`POST /_test/clients` (JSON: pre-register a client, e.g. once the bot's callback port is known).

The RS validates tokens against the AS's tables in this process (a real RS would introspect or
verify a JWT; the outcome is the same): known, not revoked, not expired, audience (resource) is
this RS. Tools: `whoami`, `echo`, `list_issues` (read-only), `create_issue` (needs the flavor's
write scopes: without them the HTTP request is answered 403 `insufficient_scope`, a step-up).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import secrets
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from starlette.authentication import AuthCredentials

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Answer = tuple[int, Any, list[tuple[str, str]], str | None]
"""What an AS endpoint answers: status, JSON body (None: empty), headers, Location."""

GRACEFUL_SHUTDOWN_TIMEOUT_S = 2
CODE_TTL_S = 300
"""Authorization codes live this long (RFC 6749 §4.1.2 recommends at most 10 minutes)."""
PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
ASM_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
TEST_PREFIX = "/_test/"
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
ANY_SECRET = "client_secret_basic|client_secret_post"
"""Auth method of a pre-registered client given a secret but no method: either secret method."""
GRANT_TYPES = ("authorization_code", "refresh_token")
CLIENT_CREDENTIALS = "client_credentials"
"""OAuth 2.1 §4.2, with --client-credentials: for confidential clients pre-registered for it."""
SAFE_PARAMS = frozenset(
    {
        "grant_type",
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "code_challenge_method",
        "resource",
        "token_type_hint",
        "prompt",
        "login_hint",
    }
)
"""Request parameters whose values /_test/requests shows; every other value (code, code_verifier,
client_secret, refresh_token, token, code_challenge) is shown as "<redacted>"."""


# --- settings and flavors ------------------------------------------------------------------------


@dataclass
class Settings:
    """Every knob of the fake; a flavor is a preset of these, the command line overrides it."""

    flavor: str = "generic"
    port: int = 0
    as_port: int = 0
    same_origin: bool = False
    mcp_path: str = "/mcp"
    issuer_path: str = ""
    authorize_path: str = "/authorize"
    token_path: str = "/token"
    register_path: str = "/register"
    revoke_path: str = "/revoke"
    scopes: list[str] = field(default_factory=lambda: ["read", "write", "offline_access"])
    """The AS's scopes_supported; empty: the AS has no scopes and ignores a requested one."""
    base_scopes: list[str] = field(default_factory=lambda: ["read"])
    """The RS's scopes_supported (PRM), its 401 challenge scope, and what a scope-less request gets."""
    write_scopes: list[str] = field(default_factory=lambda: ["write"])
    """What create_issue needs on top; empty: it needs nothing more."""
    auth_methods: list[str] = field(default_factory=lambda: list(AUTH_METHODS))
    dcr: bool = True
    cimd: bool = False
    iss_parameter: bool = True
    oidc_discovery: bool = False
    revocation: bool = True
    require_resource: bool = False
    challenge_scope: bool = True
    prm: str = "path"
    """Where the RS serves its metadata: "path" (/.well-known/oauth-protected-resource/mcp),
    "root", "both", or "none" (2025-03-26 style: no PRM; needs --same-origin and --issuer-path '')."""
    access_ttl: int = 3600
    refresh: str = "offline"
    """Refresh tokens: "offline" (only when offline_access is granted), "always", "never"."""
    rotate_refresh: bool = True
    refresh_grace: bool = False
    """The previous refresh token stays usable until its replacement is first used."""
    reuse_revokes_grant: bool = True
    """A rotated-out refresh token presented again revokes the whole grant (replay detection)."""
    deny: bool = False
    issuer_mismatch: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    client_auth_method: str | None = None
    other_resources: list[str] = field(default_factory=list)
    subject: str = "user"
    client_credentials: bool = False
    """Also serve the client_credentials grant (machine clients, MCP's SEP-1046) to confidential
    clients pre-registered with that grant (POST /_test/clients with "grant_types")."""


FLAVORS: dict[str, dict[str, Any]] = {
    # generic: the MCP 2025-11-25 authorization spec played straight: AS on its own origin, DCR,
    # RFC 9207 iss, PRM at the path-suffixed well-known with a scope in the challenge, 1-hour
    # access tokens, refresh tokens for offline_access, strict rotation with replay detection.
    "generic": {},
    # linear (mcp.linear.app/mcp). Based on "Audit 02. Linear MCP Server" (2026-05-04,
    # https://ypbind.de/maus/belege/statist/1997/stat8.html): the 401 challenge names
    # resource_metadata at the ROOT well-known with no scope; the PRM points back at
    # mcp.linear.app (same-origin AS); AS metadata has a registration endpoint; PKCE S256 only;
    # CIMD advertised. Built with Cloudflare (https://kansei-link.com/en/insights/linear-mcp-deep-dive-2026.html),
    # so guessed to behave like @cloudflare/workers-oauth-provider
    # (https://github.com/cloudflare/workers-oauth-provider docs/authorization-server.md):
    # iss always, revocation at the token endpoint, refresh tokens always, rotation where the
    # previous token stays valid until its replacement is used, 1-hour access tokens. Endpoint
    # paths and scope names (Linear's OAuth app scopes) are guesses.
    "linear": {
        "same_origin": True,
        "prm": "root",
        "challenge_scope": False,
        "cimd": True,
        "iss_parameter": True,
        "revoke_path": "/token",
        "scopes": ["read", "write", "issues:create", "comments:create", "admin"],
        "base_scopes": ["read", "write"],
        "write_scopes": ["write"],
        "refresh": "always",
        "refresh_grace": True,
        "reuse_revokes_grant": False,
    },
    # notion (mcp.notion.com/mcp). Based on https://developers.notion.com/guides/mcp/build-mcp-client
    # (PRM then RFC 8414 discovery, PKCE, token refresh), https://github.com/apify/mcpc/issues/3
    # (AS metadata at the mcp.notion.com root, access tokens last ~1 hour) and
    # https://bindify.dev/blog/notion-mcp-auth-management.html (DCR only, issuing a client_id and
    # client_secret). Guessed: no scopes at all (Notion's permissions are not OAuth scopes), strict
    # refresh rotation ("refresh with rotation", SurfSense), no iss parameter, no CIMD.
    "notion": {
        "same_origin": True,
        "challenge_scope": False,
        "iss_parameter": False,
        "scopes": [],
        "base_scopes": [],
        "write_scopes": [],
        "refresh": "always",
    },
    # atlassian (mcp.atlassian.com/v1/mcp/authv2, "Rovo MCP"). Based on
    # https://github.com/atlassian/atlassian-mcp-server/issues/148 and /issues/205 and
    # https://github.com/QwenLM/qwen-code/issues/12165: the PRM at the path-suffixed well-known
    # names a path-scoped AS on another origin (https://auth.atlassian.com/<tenant>) whose
    # metadata has the registration endpoint. Atlassian's metadata then names the issuer without
    # the path (RFC 8414 §3.3 mismatch, strict clients refuse): reproduce that with
    # --issuer-mismatch, off by default so the flavor can sign in. The older /v1/mcp answered
    # 401 without resource_metadata and had no PRM (microsoft/vscode#293533): --prm none
    # --same-origin. Atlassian 3LO (developer.atlassian.com) gives 1-hour access tokens and
    # refresh tokens only for offline_access, rotating; scope names are Jira 3LO scopes. The
    # tenant id, endpoint paths and strict rotation are guesses.
    "atlassian": {
        "mcp_path": "/v1/mcp",
        "issuer_path": "/tenant-5f3a9c",
        "authorize_path": "/tenant-5f3a9c/authorize",
        "token_path": "/tenant-5f3a9c/oauth/token",
        "register_path": "/tenant-5f3a9c/oidc/register",
        "revoke_path": "/tenant-5f3a9c/oauth/revoke",
        "iss_parameter": False,
        "challenge_scope": False,
        "scopes": ["read:jira-work", "write:jira-work", "read:confluence-content.all", "offline_access"],
        "base_scopes": ["read:jira-work", "read:confluence-content.all"],
        "write_scopes": ["write:jira-work"],
        "refresh": "offline",
    },
    # sentry (mcp.sentry.dev/mcp). Based on getsentry/sentry-mcp docs/cloudflare/oauth-architecture.md
    # (its own OAuth server built with @cloudflare/workers-oauth-provider on the MCP origin:
    # /oauth/register, /oauth/authorize, /oauth/token) and docs/permissions-and-scopes.md
    # (read-only org:read project:read team:read event:read by default; event:write for issue
    # triage; project:write team:write). workers-oauth-provider behaviour as for linear, and its
    # 1.0 names the scopes in the 401 challenge. Guessed: that Sentry runs 1.0 (iss, challenge
    # scope), no CIMD.
    "sentry": {
        "same_origin": True,
        "authorize_path": "/oauth/authorize",
        "token_path": "/oauth/token",
        "register_path": "/oauth/register",
        "revoke_path": "/oauth/token",
        "scopes": [
            "org:read",
            "project:read",
            "team:read",
            "event:read",
            "event:write",
            "project:write",
            "team:write",
        ],
        "base_scopes": ["org:read", "project:read", "team:read", "event:read"],
        "write_scopes": ["event:write"],
        "refresh": "always",
        "refresh_grace": True,
        "reuse_revokes_grant": False,
    },
    # github (api.githubcopilot.com/mcp). Based on https://github.com/github/github-mcp-server/issues/2901
    # (PRM authorization_servers ["https://github.com/login/oauth"], AS metadata at the RFC 8414
    # path-inserted https://github.com/.well-known/oauth-authorization-server/login/oauth),
    # github/github-mcp-server#647 (PRM only at the path-suffixed well-known),
    # github/copilot-cli#4408 (401 challenge with resource_metadata and no scope) and
    # anomalyco/opencode#5716 (no dynamic client registration: a pre-registered OAuth app,
    # --client-id/--client-secret/--redirect-uri or POST /_test/clients). Token endpoint
    # /login/oauth/access_token; GitHub App user tokens last 8 hours with single-use refresh
    # tokens. Not mimicked: GitHub answering token errors with 200 and form-encoded bodies
    # without Accept: application/json. Guessed: no RFC 7009 endpoint, no iss parameter.
    "github": {
        "issuer_path": "/login/oauth",
        "authorize_path": "/login/oauth/authorize",
        "token_path": "/login/oauth/access_token",
        "dcr": False,
        "revocation": False,
        "iss_parameter": False,
        "challenge_scope": False,
        "auth_methods": ["client_secret_basic", "client_secret_post"],
        "scopes": ["repo", "read:org", "read:user", "user:email", "gist", "notifications", "workflow"],
        "base_scopes": ["repo", "read:org"],
        "write_scopes": ["repo"],
        "access_ttl": 28800,
        "refresh": "always",
    },
}


def _words(text: str) -> list[str]:
    """A scope or method list given as one argument: space- and/or comma-separated."""
    return [word for word in text.replace(",", " ").split() if word]


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option defaults to None ("not given") so the flavor's preset shows."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.oauth_server", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    flag = argparse.BooleanOptionalAction
    add("--flavor", choices=sorted(FLAVORS), default="generic")
    add("--port", type=int, help="RS port on 127.0.0.1 (0: any free port)")
    add("--as-port", type=int, help="AS port on 127.0.0.1, advertised as localhost (0: any free port)")
    add("--same-origin", action=flag, help="serve the AS on the RS's origin")
    add("--mcp-path", help="path of the MCP endpoint (default /mcp)")
    add("--issuer-path", help="path component of the issuer, e.g. /login/oauth")
    add("--authorize-path")
    add("--token-path")
    add("--register-path")
    add("--revoke-path", help="may equal --token-path (revocation at the token endpoint)")
    add("--scopes", type=_words, help="AS scopes_supported, e.g. 'read write offline_access'")
    add("--base-scopes", type=_words, help="RS scopes_supported and 401 challenge scope")
    add("--write-scopes", type=_words, help="scopes create_issue needs")
    add("--auth-methods", type=_words, help="token_endpoint_auth_methods_supported")
    add("--dcr", action=flag, help="dynamic client registration (RFC 7591)")
    add("--cimd", action=flag, help="accept an https URL as client_id (not fetched)")
    add("--iss-parameter", action=flag, help="RFC 9207 iss in authorization responses")
    add("--oidc-discovery", action=flag, help="also serve /.well-known/openid-configuration")
    add("--revocation", action=flag, help="RFC 7009 revocation endpoint")
    add("--require-resource", action=flag, help="/authorize requires the RFC 8707 resource")
    add("--challenge-scope", action=flag, help="scope= in the RS's 401 challenge")
    add("--prm", choices=["path", "root", "both", "none"])
    add("--access-ttl", type=int, help="access token lifetime in seconds")
    add("--refresh", choices=["offline", "always", "never"])
    add("--rotate-refresh", action=flag, help="a new refresh token on every refresh")
    add("--refresh-grace", action=flag, help="the previous refresh token works until the new one is used")
    add("--reuse-revokes-grant", action=flag, help="replaying a rotated-out refresh token revokes the grant")
    add("--deny", action=flag, help="/authorize redirects with error=access_denied")
    add("--issuer-mismatch", action=flag, help="AS metadata names another issuer (Atlassian's bug)")
    add("--client-id", help="a pre-registered client")
    add("--client-secret")
    add("--redirect-uri", dest="redirect_uris", action="append", help="the pre-registered client's (repeat)")
    add("--client-auth-method", choices=list(AUTH_METHODS))
    add("--other-resource", dest="other_resources", action="append", help="another resource the AS serves")
    add("--subject", help="the person every grant belongs to unless /authorize gets login_hint")
    add("--client-credentials", action=flag, help="serve the client_credentials grant (OAuth 2.1 §4.2)")
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from the flavor's preset, overridden by whatever the command line gave."""
    args = vars(build_parser().parse_args(argv))
    settings = Settings(**FLAVORS[args["flavor"]])
    settings.flavor = args["flavor"]
    for item in fields(Settings):
        value = args.get(item.name)
        if value is not None:
            setattr(settings, item.name, value)
    if settings.prm == "none" and not settings.same_origin:
        raise SystemExit("--prm none needs --same-origin: without PRM a client finds the AS on the RS origin")
    if settings.prm == "none" and settings.issuer_path:
        raise SystemExit(
            "--prm none needs --issuer-path '': a client reads the metadata at the origin's root"
        )
    if (settings.client_secret or settings.redirect_uris) and not settings.client_id:
        raise SystemExit("--client-secret and --redirect-uri describe the --client-id client")
    if settings.client_id and not settings.redirect_uris:
        raise SystemExit("--client-id needs --redirect-uri: a client has its redirect URIs registered")
    if settings.client_auth_method in SECRET_METHODS and not settings.client_secret:
        raise SystemExit(f"--client-auth-method {settings.client_auth_method} needs --client-secret")
    return settings


# --- state ---------------------------------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 error answer: `{"error": code, "error_description": description}`."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code, self.description, self.status = code, description, status


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    auth_method: str
    """"none", "client_secret_basic", "client_secret_post" or ANY_SECRET."""
    kind: str
    """"dcr", "preregistered" or "cimd"."""
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    resource: str
    scopes: list[str]
    subject: str
    expires_at: float
    used: bool = False
    grant_id: str | None = None


@dataclass
class Grant:
    grant_id: str
    client_id: str
    subject: str
    scopes: list[str]
    resource: str
    revoked: bool = False
    refresh_current: str | None = None
    refresh_previous: str | None = None
    access_tokens: set[str] = field(default_factory=set)


@dataclass
class Access:
    grant_id: str
    client_id: str
    scopes: list[str]
    resource: str
    expires_at: float


class AuthorizationServer:
    """The AS's tables and rules. One asyncio loop serves every request, and no handler awaits
    between reading and writing these tables, so they need no lock."""

    def __init__(self, settings: Settings, *, issuer: str, as_base: str, resource: str) -> None:
        self.settings = settings
        self.issuer = issuer
        self.as_base = as_base
        self.resource = resource
        self.resources = [resource, *settings.other_resources]
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.grants: dict[str, Grant] = {}
        self.refresh_index: dict[str, str] = {}
        """Every refresh token ever issued → its grant (current, previous and rotated-out ones)."""
        self.access: dict[str, Access] = {}
        self.stats: Counter[str] = Counter()
        self.token_requests: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        if settings.client_id:
            method = settings.client_auth_method or (ANY_SECRET if settings.client_secret else "none")
            self.add_client(settings.client_id, settings.client_secret, list(settings.redirect_uris), method)

    def add_client(
        self,
        client_id: str,
        secret: str | None,
        redirect_uris: list[str],
        method: str,
        kind: str = "preregistered",
        grant_types: list[str] | None = None,
    ) -> Client:
        grant_types = list(grant_types or ["authorization_code", "refresh_token"])
        if method not in (*AUTH_METHODS, ANY_SECRET):
            raise OAuthError("invalid_client_metadata", f"unknown token_endpoint_auth_method {method!r}")
        if method != "none" and not secret:
            raise OAuthError("invalid_client_metadata", f"{method} needs a client_secret")
        if not set(grant_types) <= set(self.grant_types()):
            raise OAuthError("invalid_client_metadata", f"unsupported grant_types {grant_types!r}")
        if CLIENT_CREDENTIALS in grant_types and method == "none":  # RFC 6749 §4.4: confidential only
            raise OAuthError("invalid_client_metadata", "client_credentials needs a confidential client")
        redirects = "authorization_code" in grant_types  # a machine client has no redirect URI
        if (
            not client_id
            or (redirects and not redirect_uris)
            or not all(_is_http_url(uri) for uri in redirect_uris)
        ):
            raise OAuthError("invalid_client_metadata", "a client_id and http(s) redirect_uris are required")
        client = Client(client_id, secret, redirect_uris, method, kind, grant_types)
        self.clients[client_id] = client
        return client

    # metadata -----------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.as_base}{path}"

    def grant_types(self) -> tuple[str, ...]:
        return (*GRANT_TYPES, CLIENT_CREDENTIALS) if self.settings.client_credentials else GRANT_TYPES

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        s = self.settings
        issuer = self.issuer
        if s.issuer_mismatch:  # Atlassian's bug: the issuer's path dropped, or another host
            parts = urlsplit(issuer)
            other_host = "127.0.0.1" if parts.hostname == "localhost" else "localhost"
            issuer = (
                f"{parts.scheme}://{parts.netloc}"
                if parts.path
                else f"{parts.scheme}://{other_host}:{parts.port}"
            )
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": self.url(s.authorize_path),
            "token_endpoint": self.url(s.token_path),
        }
        if s.dcr:
            document["registration_endpoint"] = self.url(s.register_path)
        if s.revocation:
            document["revocation_endpoint"] = self.url(s.revoke_path)
            document["revocation_endpoint_auth_methods_supported"] = list(s.auth_methods)
        if s.scopes:
            document["scopes_supported"] = list(s.scopes)
        document |= {
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(self.grant_types()),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(s.auth_methods),
        }
        if s.iss_parameter:
            document["authorization_response_iss_parameter_supported"] = True
        if s.cimd:
            document["client_id_metadata_document_supported"] = True
        return document

    def metadata_paths(self) -> list[str]:
        """Where the metadata is served: RFC 8414 §3.1 inserts the well-known before the
        issuer's path; OIDC discovery appends it (both spellings, as the SDK tries both)."""
        path = self.settings.issuer_path.rstrip("/")
        paths = [f"{ASM_WELL_KNOWN}{path}"]
        if self.settings.oidc_discovery:
            paths += [f"{OIDC_WELL_KNOWN}{path}", f"{path}{OIDC_WELL_KNOWN}"]
        return list(dict.fromkeys(paths))

    # clients ------------------------------------------------------------------------------------

    def client_for(self, client_id: str) -> Client | None:
        client = self.clients.get(client_id)
        if client is None and self.settings.cimd and _is_cimd_url(client_id):
            # A Client ID Metadata Document URL: a real AS fetches it and checks redirect_uris
            # against it; this fake does not fetch, so the redirect URI is only required to be
            # http(s) and is then bound to the code like any other.
            client = Client(client_id, None, [], "none", "cimd")
        return client

    def register(self, body: Any) -> dict[str, Any]:
        """RFC 7591 §3.2: validate the client metadata, mint a client."""
        s = self.settings
        if not isinstance(body, dict):
            raise OAuthError("invalid_client_metadata", "the request body must be a JSON object")
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(uri, str) for uri in uris):
            raise OAuthError("invalid_redirect_uri", "redirect_uris must be a non-empty list of URLs")
        for uri in uris:
            if not _is_http_url(uri) or "#" in uri:
                raise OAuthError(
                    "invalid_redirect_uri", f"not an absolute http(s) URL without fragment: {uri}"
                )
        method = body.get("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
        if method not in s.auth_methods:
            raise OAuthError(
                "invalid_client_metadata", f"token_endpoint_auth_method {method!r} is not supported"
            )
        grant_types = body.get("grant_types", ["authorization_code"])
        if not isinstance(grant_types, list) or not set(grant_types) <= set(GRANT_TYPES):
            raise OAuthError("invalid_client_metadata", f"unsupported grant_types {grant_types!r}")
        response_types = body.get("response_types", ["code"])
        if response_types != ["code"]:
            raise OAuthError("invalid_client_metadata", f"unsupported response_types {response_types!r}")
        if "authorization_code" in grant_types and "code" not in response_types:
            raise OAuthError("invalid_client_metadata", "authorization_code needs response_type code")
        scope = body.get("scope")
        if scope is not None and s.scopes and not set(str(scope).split()) <= set(s.scopes):
            raise OAuthError("invalid_client_metadata", f"unknown scope in {scope!r}")
        secret = secrets.token_urlsafe(24) if method in SECRET_METHODS else None
        client = self.add_client(f"dcr_{secrets.token_hex(8)}", secret, list(uris), method, kind="dcr")
        client.grant_types = list(grant_types)
        self.stats["registrations"] += 1
        answer = {key: value for key, value in body.items() if key != "client_secret"}
        answer |= {
            "client_id": client.client_id,
            "client_id_issued_at": int(time.time()),
            "redirect_uris": list(uris),
            "token_endpoint_auth_method": method,
            "grant_types": list(grant_types),
            "response_types": ["code"],
        }
        if secret:
            answer |= {"client_secret": secret, "client_secret_expires_at": 0}
        client.metadata = answer
        return answer

    def authenticate(self, form: dict[str, str], authorization: str | None) -> Client:
        """RFC 6749 §2.3: identify and authenticate the client as its registration says.

        Raises:
            OAuthError: 401 invalid_client for an unknown client, a wrong secret, or a method
                other than the registered one; 400 invalid_request for conflicting identities.
        """
        used, client_id, secret = "none", form.get("client_id"), form.get("client_secret")
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                basic_id, _, basic_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
            basic_id, basic_secret = unquote_plus(basic_id), unquote_plus(basic_secret)  # RFC 6749 §2.3.1
            if client_id is not None and client_id != basic_id:
                raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
            if secret is not None:
                raise OAuthError("invalid_request", "more than one client authentication method")
            used, client_id, secret = "client_secret_basic", basic_id, basic_secret
        elif secret is not None:
            used = "client_secret_post"
        if not client_id:
            raise OAuthError("invalid_client", "no client_id and no client authentication", 401)
        client = self.client_for(client_id)
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401)
        allowed = SECRET_METHODS if client.auth_method == ANY_SECRET else (client.auth_method,)
        if used not in allowed:
            raise OAuthError(
                "invalid_client", f"client authenticates with {client.auth_method}, not {used}", 401
            )
        if client.auth_method != "none" and not (
            client.client_secret and secret and secrets.compare_digest(secret, client.client_secret)
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    # authorize ----------------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> str:
        """Validate an authorization request and return the redirect (with `code`, or with
        `error` for errors the client's redirect URI may hear about).

        Raises:
            OAuthError: an error that must not redirect (RFC 6749 §4.1.2.1): the client or the
                redirect URI is missing, unknown or unregistered; answered 400 on the page.
        """
        s = self.settings
        client_id = query.get("client_id")
        client = self.client_for(client_id) if client_id else None
        if client is None:
            raise OAuthError("invalid_client", "unknown or missing client_id")
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is required")
        registered = (
            _is_http_url(redirect_uri) if client.kind == "cimd" else redirect_uri in client.redirect_uris
        )
        if not registered:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
        state = query.get("state")

        def back(params: dict[str, str]) -> str:
            if state is not None:
                params["state"] = state
            if s.iss_parameter:
                params["iss"] = self.issuer
            separator = "&" if urlsplit(redirect_uri).query else "?"
            return f"{redirect_uri}{separator}{urlencode(params)}"

        try:
            if query.get("response_type") != "code":
                raise OAuthError("unsupported_response_type", "only response_type=code is supported")
            challenge = query.get("code_challenge")
            if not challenge:
                raise OAuthError("invalid_request", "code_challenge is required (PKCE)")
            if query.get("code_challenge_method") != "S256":
                raise OAuthError("invalid_request", "code_challenge_method must be S256")
            if not 43 <= len(challenge) <= 128:
                raise OAuthError("invalid_request", "code_challenge is not a S256 challenge")
            resource = query.get("resource")
            if resource is None:
                if s.require_resource:
                    raise OAuthError("invalid_target", "resource is required (RFC 8707)")
                resource = self.resource
            elif resource not in self.resources:
                raise OAuthError("invalid_target", f"unknown resource {resource}")
            scopes = self.requested_scopes(query.get("scope"))
            if s.deny:
                raise OAuthError("access_denied", "the person declined")
        except OAuthError as error:
            self.stats["authorize_errors"] += 1
            return back({"error": error.code, "error_description": error.description})
        code = f"code_{secrets.token_urlsafe(24)}"
        self.codes[code] = Code(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            resource=resource,
            scopes=scopes,
            subject=query.get("login_hint") or s.subject,
            expires_at=time.time() + CODE_TTL_S,
        )
        self.stats["authorizations"] += 1
        return back({"code": code})

    def requested_scopes(self, scope: str | None) -> list[str]:
        """The scopes granted for a request: what it asked for if all are known, else invalid_scope;
        nothing asked: the RS's base scopes. An AS without scopes ignores the parameter."""
        if not self.settings.scopes:
            return []
        if scope is None or not scope.strip():
            return list(self.settings.base_scopes)
        asked = list(dict.fromkeys(scope.split()))
        unknown = [name for name in asked if name not in self.settings.scopes]
        if unknown:
            raise OAuthError("invalid_scope", f"unknown scope {' '.join(unknown)}")
        return asked

    # token --------------------------------------------------------------------------------------

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        self.token_requests[grant_type or "<none>"] += 1
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type not in self.grant_types():
            raise OAuthError("unsupported_grant_type", f"unsupported grant_type {grant_type}")
        client = self.authenticate(form, authorization)
        if grant_type == CLIENT_CREDENTIALS:
            return self.client_credentials(client, form)
        if "authorization_code" not in client.grant_types:
            raise OAuthError("unauthorized_client", "the client did not register authorization_code")
        if grant_type == "authorization_code":
            return self.exchange_code(client, form)
        return self.refresh(client, form)  # implied by authorization_code, as workers-oauth-provider does

    def exchange_code(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6) and RFC 8707 resource binding."""
        value = form.get("code")
        if not value:
            raise OAuthError("invalid_request", "code is required")
        code = self.codes.get(value)
        if code is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            # RFC 6749 §4.1.2: a code used twice revokes what was issued with it.
            self.stats["code_reuse"] += 1
            if code.grant_id:
                self.revoke_grant(code.grant_id)
            raise OAuthError("invalid_grant", "authorization code already used")
        if code.expires_at < time.time():
            raise OAuthError("invalid_grant", "authorization code expired")
        if code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
        verifier = form.get("code_verifier")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        if not secrets.compare_digest(_s256(verifier), code.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        resource = form.get("resource")
        if resource is not None and resource != code.resource:
            raise OAuthError("invalid_target", "resource differs from the authorization request's")
        code.used = True
        grant = Grant(
            f"grant_{secrets.token_hex(6)}", client.client_id, code.subject, code.scopes, code.resource
        )
        self.grants[grant.grant_id] = grant
        code.grant_id = grant.grant_id
        answer = self.issue_access(grant, grant.scopes)
        if self.gives_refresh(grant):
            grant.refresh_current = self.mint_refresh(grant)
            answer["refresh_token"] = grant.refresh_current
        return answer

    def client_credentials(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        """OAuth 2.1 §4.2 (RFC 6749 §4.4): the client, authenticated, gets a token for itself
        (the grant's subject is the client), for the RFC 8707 resource; no refresh token
        (§4.4.3: the client can ask again)."""
        if CLIENT_CREDENTIALS not in client.grant_types:
            raise OAuthError("unauthorized_client", "the client is not registered for client_credentials")
        resource = form.get("resource")
        if resource is None:
            if self.settings.require_resource:
                raise OAuthError("invalid_target", "resource is required (RFC 8707)")
            resource = self.resource
        elif resource not in self.resources:
            raise OAuthError("invalid_target", f"unknown resource {resource}")
        scopes = self.requested_scopes(form.get("scope"))
        grant = Grant(f"grant_{secrets.token_hex(6)}", client.client_id, client.client_id, scopes, resource)
        self.grants[grant.grant_id] = grant
        return self.issue_access(grant, scopes)

    def refresh(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        """RFC 6749 §6 with rotation and replay detection (OAuth 2.1 §4.3.1)."""
        s = self.settings
        value = form.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "refresh_token is required")
        grant = self.grants.get(self.refresh_index.get(value, ""))
        if grant is None:
            raise OAuthError("invalid_grant", "unknown refresh token")
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "refresh token was issued to another client")
        if grant.revoked:
            raise OAuthError("invalid_grant", "the grant was revoked")
        current = value == grant.refresh_current
        previous = s.refresh_grace and value == grant.refresh_previous
        if not (current or previous):
            self.stats["refresh_reuse"] += 1
            if s.reuse_revokes_grant:
                self.revoke_grant(grant.grant_id)
                raise OAuthError("invalid_grant", "refresh token already used: the grant is revoked")
            raise OAuthError("invalid_grant", "refresh token already used")
        resource = form.get("resource")
        if resource is not None and resource != grant.resource:
            raise OAuthError("invalid_target", "resource differs from the grant's")
        scopes = grant.scopes
        if form.get("scope"):
            scopes = list(dict.fromkeys(form["scope"].split()))
            if not set(scopes) <= set(grant.scopes):
                raise OAuthError("invalid_scope", "a refresh may only narrow the granted scope")
        answer = self.issue_access(grant, scopes)
        if s.rotate_refresh:
            if current:  # the previous token (if any) is spent: its replacement is now in use
                grant.refresh_previous = value
            grant.refresh_current = self.mint_refresh(grant)
            answer["refresh_token"] = grant.refresh_current
        return answer

    def gives_refresh(self, grant: Grant) -> bool:
        mode = self.settings.refresh
        return mode == "always" or (mode == "offline" and "offline_access" in grant.scopes)

    def mint_refresh(self, grant: Grant) -> str:
        token = f"rt_{secrets.token_urlsafe(32)}"
        self.refresh_index[token] = grant.grant_id
        return token

    def issue_access(self, grant: Grant, scopes: list[str]) -> dict[str, Any]:
        token = f"at_{secrets.token_urlsafe(32)}"
        ttl = self.settings.access_ttl
        self.access[token] = Access(
            grant.grant_id, grant.client_id, scopes, grant.resource, time.time() + ttl
        )
        grant.access_tokens.add(token)
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
        if self.settings.scopes:
            answer["scope"] = " ".join(scopes)
        return answer

    # revocation ---------------------------------------------------------------------------------

    def revoke(self, form: dict[str, str], authorization: str | None) -> None:
        """RFC 7009 §2: authenticate the client, revoke the token's grant if it is the client's;
        an unknown token is not an error (§2.2)."""
        client = self.authenticate(form, authorization)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        grant_id = self.refresh_index.get(token) or (
            self.access[token].grant_id if token in self.access else None
        )
        grant = self.grants.get(grant_id or "")
        if grant is None:
            return
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_request", "the token was issued to another client")
        self.stats["revocations"] += 1
        self.revoke_grant(grant.grant_id)

    def revoke_grant(self, grant_id: str) -> None:
        grant = self.grants[grant_id]
        if not grant.revoked:
            grant.revoked = True
            self.stats["revoked_grants"] += 1

    def revoke_all(self) -> int:
        live = [grant for grant in self.grants.values() if not grant.revoked]
        for grant in live:
            self.revoke_grant(grant.grant_id)
        return len(live)

    def expire_access(self) -> int:
        now = time.time()
        current = [access for access in self.access.values() if access.expires_at > now]
        for access in current:
            access.expires_at = now - 1
        return len(current)

    def check_access(self, token: str) -> tuple[Access | None, str]:
        """(the token's record, "") if it is good for this RS, else (None, why not)."""
        access = self.access.get(token)
        if access is None:
            return None, "unknown access token"
        if self.grants[access.grant_id].revoked:
            return None, "the grant was revoked"
        if access.expires_at <= time.time():
            return None, "the access token expired"
        if access.resource != self.resource:
            return None, f"the access token is for {access.resource}, not this resource"
        return access, ""

    def stats_document(self) -> dict[str, Any]:
        return {
            "token_requests": dict(self.token_requests),
            "registrations": self.stats["registrations"],
            "authorizations": self.stats["authorizations"],
            "authorize_errors": self.stats["authorize_errors"],
            "revocations": self.stats["revocations"],
            "refresh_reuse": self.stats["refresh_reuse"],
            "code_reuse": self.stats["code_reuse"],
            "revoked_grants": self.stats["revoked_grants"],
            "live_grants": sum(not grant.revoked for grant in self.grants.values()),
            "mcp_requests": self.stats["mcp_requests"],
            "mcp_unauthorized": self.stats["mcp_unauthorized"],
            "mcp_forbidden": self.stats["mcp_forbidden"],
        }


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_cimd_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.netloc) and parts.path not in ("", "/")


# --- HTTP ----------------------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def _replay(body: bytes, receive_more: Receive) -> Receive:
    """A `receive` that hands the already-read body to the next app, then passes on what the
    connection sends next (the disconnect an SSE response waits for)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive_more()

    return receive


async def _respond(
    send: Send,
    status: int,
    body: Any,
    headers: list[tuple[str, str]] | None = None,
    location: str | None = None,
) -> None:
    raw = json.dumps(body).encode() if body is not None else b""
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    out += [(name.encode(), value.encode()) for name, value in headers or []]
    if location:
        out.append((b"location", location.encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _params(raw: str) -> dict[str, str]:
    """Form or query parameters; RFC 6749 §3.1: none may appear twice."""
    pairs = parse_qsl(raw, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise OAuthError("invalid_request", f"parameter repeated: {', '.join(repeated)}")
    return dict(pairs)


class AuthorizationApp:
    """ASGI front of the AS: the OAuth endpoints, the metadata and the /_test/ controls."""

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server
        s = server.settings
        self.routes: dict[str, Callable[[Scope, dict[str, Any]], Awaitable[Answer]]] = {}
        for path in server.metadata_paths():
            self.routes[path] = self.serve_metadata
        self.routes[s.authorize_path] = self.serve_authorize
        self.routes[s.token_path] = self.serve_token
        if s.dcr:
            self.routes[s.register_path] = self.serve_register
        if s.revocation and s.revoke_path != s.token_path:
            self.routes[s.revoke_path] = self.serve_revoke

    def handles(self, path: str) -> bool:
        return path in self.routes or path.startswith(TEST_PREFIX)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _read_body(receive)
        if path.startswith(TEST_PREFIX):
            await self.serve_test(path, method, body, send)
            return
        record: dict[str, Any] = {"method": method, "path": path, "time": time.time()}
        self.server.log.append(record)
        handler = self.routes.get(path)
        if handler is None:
            await _respond(send, 404, {"error": "not_found", "error_description": path})
            return
        try:
            raw = scope.get("query_string", b"").decode("latin-1") if method == "GET" else body.decode()
            params = _params(raw) if path != self.server.settings.register_path else {}
            record["params"] = {
                key: value if key in SAFE_PARAMS else "<redacted>" for key, value in params.items()
            }
            authorization = _header(scope, b"authorization")
            if authorization:
                record["client_auth"] = authorization.split(" ", 1)[0].lower()
            status, answer, headers, location = await handler(
                scope, {"params": params, "body": body, "record": record}
            )
        except OAuthError as error:
            status, answer, location = (
                error.status,
                {"error": error.code, "error_description": error.description},
                None,
            )
            headers = [("www-authenticate", 'Basic realm="oauth"')] if status == 401 else []
            record["error"] = error.code
        except UnicodeDecodeError:
            status, answer, headers, location = 400, {"error": "invalid_request"}, [], None
        record["status"] = status
        await _respond(send, status, answer, headers, location)

    async def serve_metadata(self, scope: Scope, request: dict[str, Any]) -> Answer:
        if scope["method"] != "GET":
            raise OAuthError("invalid_request", "use GET")
        document = self.server.metadata()
        if OIDC_WELL_KNOWN in scope["path"]:
            document |= {"subject_types_supported": ["public"]}  # no id_token is ever issued
        return 200, document, [], None

    async def serve_authorize(self, scope: Scope, request: dict[str, Any]) -> Answer:
        if scope["method"] != "GET":
            raise OAuthError("invalid_request", "use GET")
        location = self.server.authorize(request["params"])
        error = dict(parse_qsl(urlsplit(location).query)).get("error")
        request["record"]["redirect"] = error or "code"
        return 302, None, [("cache-control", "no-store")], location

    async def serve_token(self, scope: Scope, request: dict[str, Any]) -> Answer:
        self._require_form(scope)
        params, authorization = request["params"], _header(scope, b"authorization")
        s = self.server.settings
        if (
            s.revocation
            and s.revoke_path == s.token_path
            and "token" in params
            and "grant_type" not in params
        ):
            return await self.serve_revoke(scope, request)  # workers-oauth-provider style
        answer = self.server.token(params, authorization)
        return 200, answer, [("cache-control", "no-store"), ("pragma", "no-cache")], None

    async def serve_register(self, scope: Scope, request: dict[str, Any]) -> Answer:
        if scope["method"] != "POST":
            raise OAuthError("invalid_request", "use POST")
        try:
            body = json.loads(request["body"] or b"null")
        except json.JSONDecodeError as exc:
            raise OAuthError("invalid_client_metadata", "the request body is not JSON") from exc
        answer = self.server.register(body)
        request["record"]["params"] = {key: "<metadata>" for key in body} if isinstance(body, dict) else {}
        return 201, answer, [("cache-control", "no-store")], None

    async def serve_revoke(self, scope: Scope, request: dict[str, Any]) -> Answer:
        self._require_form(scope)
        self.server.revoke(request["params"], _header(scope, b"authorization"))
        return 200, None, [], None

    @staticmethod
    def _require_form(scope: Scope) -> None:
        if scope["method"] != "POST":
            raise OAuthError("invalid_request", "use POST")
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")

    async def serve_test(self, path: str, method: str, body: bytes, send: Send) -> None:
        server = self.server
        name = path.removeprefix(TEST_PREFIX)
        if (method, name) == ("GET", "stats"):
            await _respond(send, 200, server.stats_document())
        elif (method, name) == ("GET", "requests"):
            await _respond(send, 200, server.log)
        elif (method, name) == ("POST", "revoke-all"):
            await _respond(send, 200, {"revoked": server.revoke_all()})
        elif (method, name) == ("POST", "expire-access"):
            await _respond(send, 200, {"expired": server.expire_access()})
        elif (method, name) == ("POST", "clients"):
            spec = json.loads(body or b"{}")
            secret = spec.get("client_secret")
            method_name = spec.get("token_endpoint_auth_method") or (ANY_SECRET if secret else "none")
            try:
                client = server.add_client(
                    spec["client_id"],
                    secret,
                    list(spec.get("redirect_uris") or []),
                    method_name,
                    grant_types=spec.get("grant_types"),
                )
            except OAuthError as error:
                await _respond(send, 400, {"error": error.code, "error_description": error.description})
                return
            await _respond(send, 201, {"client_id": client.client_id, "auth_method": client.auth_method})
        else:
            await _respond(send, 404, {"error": "not_found", "error_description": path})


class ResourceApp:
    """ASGI front of the RS: PRM, and the bearer gate in front of the SDK's streamable HTTP app.

    The gate answers like the MCP authorization spec's resource server: 401 with a challenge
    naming the PRM (and scope) when the token is missing or not good; 403 insufficient_scope
    naming every scope needed when a tools/call of create_issue comes with a token lacking the
    write scopes. A good token becomes `scope["user"]`, so the SDK binds each MCP session to
    the principal that opened it, and the tools read the grant from there.
    """

    def __init__(self, server: AuthorizationServer, mcp_app: ASGIApp, rs_base: str) -> None:
        self.server = server
        self.mcp_app = mcp_app
        s = server.settings
        self.prm_paths: list[str] = []
        if s.prm in ("path", "both"):
            self.prm_paths.append(f"{PRM_WELL_KNOWN}{s.mcp_path}")
        if s.prm in ("root", "both"):
            self.prm_paths.append(PRM_WELL_KNOWN)
        self.prm_url = f"{rs_base}{self.prm_paths[0]}" if self.prm_paths else None

    def prm(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "resource": self.server.resource,
            "authorization_servers": [self.server.issuer],
            "bearer_methods_supported": ["header"],
        }
        if self.server.settings.base_scopes:
            document["scopes_supported"] = list(self.server.settings.base_scopes)
        return document

    def challenge(
        self, error: str | None = None, description: str | None = None, scopes: list[str] | None = None
    ) -> str:
        parts = []
        if error:
            parts += [f'error="{error}"', f'error_description="{description}"']
        if self.prm_url:
            parts.append(f'resource_metadata="{self.prm_url}"')
        if scopes:
            parts.append(f'scope="{" ".join(scopes)}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.mcp_app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.prm_paths:
            await _respond(send, 200, self.prm())
            return
        if path != self.server.settings.mcp_path:
            await self.mcp_app(scope, receive, send)
            return
        s = self.server.settings
        self.server.stats["mcp_requests"] += 1
        body = b""
        if scope["method"] == "POST":  # read first, so the token is judged when the body is in
            body = await _read_body(receive)
            receive = _replay(body, receive)
        base = s.base_scopes if s.challenge_scope else None
        authorization = _header(scope, b"authorization") or ""
        if authorization[:7].lower() != "bearer ":
            self.server.stats["mcp_unauthorized"] += 1
            answer = {"error": "invalid_token", "error_description": "no access token was provided"}
            # RFC 6750 §3.1: no error code in the challenge when the request had no credentials.
            await _respond(send, 401, answer, [("www-authenticate", self.challenge(scopes=base))])
            return
        access, why = self.server.check_access(authorization[7:].strip())
        if access is None:
            self.server.stats["mcp_unauthorized"] += 1
            header = self.challenge("invalid_token", why, base)
            await _respond(
                send,
                401,
                {"error": "invalid_token", "error_description": why},
                [("www-authenticate", header)],
            )
            return
        lacks_write = s.write_scopes and not set(s.write_scopes) <= set(access.scopes)
        if lacks_write and _calls_tool(body, "create_issue"):
            self.server.stats["mcp_forbidden"] += 1
            needed = list(dict.fromkeys([*s.base_scopes, *s.write_scopes]))
            why = f"create_issue needs {' '.join(s.write_scopes)}"
            header = self.challenge("insufficient_scope", why, needed)
            answer = {"error": "insufficient_scope", "error_description": why}
            await _respond(send, 403, answer, [("www-authenticate", header)])
            return
        grant = self.server.grants[access.grant_id]
        token = AccessToken(
            token=authorization[7:].strip(),
            client_id=access.client_id,
            scopes=access.scopes,
            expires_at=int(access.expires_at),
            resource=access.resource,
            subject=grant.subject,
            claims={"iss": self.server.issuer, "grant_id": grant.grant_id},
        )
        scope = {**scope, "user": AuthenticatedUser(token), "auth": AuthCredentials(access.scopes)}
        await self.mcp_app(scope, receive, send)


def _calls_tool(body: bytes, name: str) -> bool:
    """Whether a JSON-RPC POST body (one message or a batch) calls the tool `name`."""
    try:
        message = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    messages = message if isinstance(message, list) else [message]
    return any(
        isinstance(item, dict)
        and item.get("method") == "tools/call"
        and isinstance(item.get("params"), dict)
        and item["params"].get("name") == name
        for item in messages
    )


class Dispatch:
    """One uvicorn serves both sockets; this sends each request to the app of the listener it
    came in on (the ASGI `server` port), or by path when the AS shares the RS's origin."""

    def __init__(self, rs: ResourceApp, as_app: AuthorizationApp, rs_port: int, same_origin: bool) -> None:
        self.rs, self.as_app, self.rs_port, self.same_origin = rs, as_app, rs_port, same_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.rs(scope, receive, send)  # the SDK's session manager runs in its lifespan
            return
        on_rs = (scope.get("server") or ("", self.rs_port))[1] == self.rs_port
        if on_rs and not (self.same_origin and self.as_app.handles(scope["path"])):
            await self.rs(scope, receive, send)
        elif not on_rs or self.same_origin:
            await self.as_app(scope, receive, send)


# --- the MCP server ------------------------------------------------------------------------------


def build_mcp(write_scopes: list[str]) -> MCPServer:
    """The protected MCP server's tools; each reads the caller's grant from the HTTP request."""
    mcp = MCPServer("oauth-fake", version="1.0", log_level="WARNING")
    issues: list[dict[str, Any]] = [{"id": 1, "title": "First issue", "body": "Seeded by the fake."}]

    def caller(ctx: Context) -> AccessToken:
        request = ctx.request_context.request
        user = request.scope.get("user") if request is not None else None
        if not isinstance(user, AuthenticatedUser):
            raise RuntimeError("no authenticated caller (the bearer gate is missing?)")
        return user.access_token

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def whoami(ctx: Context) -> str:
        """Who the access token belongs to: client id, subject, scopes, grant id (never the token)."""
        token = caller(ctx)
        claims = token.claims or {}
        return json.dumps(
            {
                "client_id": token.client_id,
                "subject": token.subject,
                "scopes": token.scopes,
                "grant_id": claims.get("grant_id"),
                "resource": token.resource,
            }
        )

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def list_issues() -> str:
        """List the issues (read-only)."""
        return json.dumps(issues)

    @mcp.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False), structured_output=False
    )
    def create_issue(title: str, ctx: Context, body: str = "") -> str:
        """Create an issue; needs the write scope (the HTTP layer answers 403 without it)."""
        token = caller(ctx)
        if not set(write_scopes) <= set(token.scopes):  # the gate already refused; defence in depth
            raise RuntimeError("insufficient scope")
        issue = {"id": len(issues) + 1, "title": title, "body": body, "by": token.subject}
        issues.append(issue)
        return json.dumps(issue)

    return mcp


# --- main ----------------------------------------------------------------------------------------


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    rs_sock = _listen(settings.port)
    rs_port = rs_sock.getsockname()[1]
    rs_base = f"http://127.0.0.1:{rs_port}"
    sockets = [rs_sock]
    if settings.same_origin:
        as_base = rs_base
    else:
        as_sock = _listen(settings.as_port)
        sockets.append(as_sock)
        as_base = f"http://localhost:{as_sock.getsockname()[1]}"
    resource = f"{rs_base}{settings.mcp_path}"
    server = AuthorizationServer(
        settings, issuer=f"{as_base}{settings.issuer_path}", as_base=as_base, resource=resource
    )
    mcp_app = build_mcp(settings.write_scopes).streamable_http_app(streamable_http_path=settings.mcp_path)
    rs = ResourceApp(server, mcp_app, rs_base)
    as_app = AuthorizationApp(server)
    ready = {
        "flavor": settings.flavor,
        "mcp_url": resource,
        "resource": resource,
        "rs_url": rs_base,
        "as_url": as_base,
        "issuer": server.issuer,
        "prm_url": rs.prm_url,
        "metadata_url": f"{as_base}{server.metadata_paths()[0]}",
        "settings": asdict(settings) | {"client_secret": "<redacted>" if settings.client_secret else None},
    }
    print(f"READY {json.dumps(ready)}", flush=True)
    print(
        f"oauth fake ({settings.flavor}) serving {resource}, AS {server.issuer}", file=sys.stderr, flush=True
    )
    config = uvicorn.Config(
        Dispatch(rs, as_app, rs_port, settings.same_origin),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
