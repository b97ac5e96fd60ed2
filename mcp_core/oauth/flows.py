"""The bot's OAuth client: who it says it is, which connections sign in, and finishing a sign-in.

``OAuthFlows`` is built once per process. The registry asks it for a ``GrantProvider`` when it
opens a remote session; the Slack layer's ``/oauth/callback`` hands it the browser's query
(through ``ConnectionService.complete_sign_in``); ``revoke`` runs on disconnect.

How the bot identifies itself to an authorization server, in the spec's order:

1. a client the operator registered for that run card (``PreRegisteredClient``, from
   ``OAUTH_<CARD>_CLIENT_ID`` / ``_SECRET``), used only for the card's own server URL so its
   secret can never be sent to a server a person typed in;
2. a Client ID Metadata Document (the bot serves it at ``CLIENT_METADATA_PATH`` when its
   redirect URL is public https), if the server supports them;
3. dynamic client registration (RFC 7591);
4. otherwise ``OAuthClientMissingError``: an admin must register the bot there.

Every request the OAuth client makes to a URL a server named (metadata, registration, token,
revocation endpoints) passes the same network policy as MCP URLs, so a server cannot make the
bot fetch from its own network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata

from mcp_core import errors
from mcp_core._transports import shared_ssl_context
from mcp_core.models import Connection, SessionSpec
from mcp_core.oauth.grants import GrantStore, Owner, TeamClient
from mcp_core.oauth.machine import MachineProvider, is_machine, machine_provider
from mcp_core.oauth.provider import GrantProvider, GrantStorage, restore_metadata
from mcp_core.security import LOOPBACK_HOSTS, check_remote_url
from mcp_core.settings import Settings
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = [
    "CALLBACK_PATH",
    "CLIENT_METADATA_PATH",
    "CLIENT_NAME",
    "OAuthFlows",
    "PreRegisteredClient",
    "default_redirect_url",
]

CALLBACK_PATH = "/oauth/callback"
CLIENT_METADATA_PATH = "/oauth/client-metadata.json"
CLIENT_NAME = "Slack MCP bot"
HTTP_TIMEOUT_S = 15.0
REVOKE_TIMEOUT_S = 5.0
MAX_CLIENT_ID_CHARS = 500
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


def default_redirect_url(settings: Settings, port: int | None = None) -> str:
    """``OAUTH_REDIRECT_URL``, or the local callback on ``port`` (HTTP mode's own port, or
    Socket Mode's ``OAUTH_PORT`` listener), which only a browser on this machine can reach."""
    if settings.oauth_redirect_url:
        return settings.oauth_redirect_url
    return f"http://localhost:{port or settings.oauth_port}{CALLBACK_PATH}"


@dataclass(frozen=True)
class PreRegisteredClient:
    """A client the operator registered with one run card's server."""

    client_id: str
    client_secret: str | None
    server_url: str
    """The card's URL: the client is used only for connections to exactly this server."""
    client_auth: str | None = None

    def info(self, redirect_url: str) -> OAuthClientInformationFull:
        method = self.client_auth or ("client_secret_basic" if self.client_secret else "none")
        return OAuthClientInformationFull(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uris=[redirect_url],  # type: ignore[list-item]  # pydantic coerces
            token_endpoint_auth_method=method,  # type: ignore[arg-type]
        )


class OAuthFlows:
    """Providers for remote sessions, and the end of every sign-in (see the module docstring)."""

    def __init__(
        self,
        grants: GrantStore,
        store: Store,
        settings: Settings,
        redirect_url: str,
        *,
        client_metadata_url: str | None = None,
    ) -> None:
        self.grants = grants
        self._store = store
        self._settings = settings
        self.redirect_url = redirect_url
        self._client_metadata_url = client_metadata_url
        self._clients: dict[str, PreRegisteredClient] = {}
        self._http = httpx2.AsyncClient(
            timeout=HTTP_TIMEOUT_S,
            verify=shared_ssl_context(),
            event_hooks={"request": [self._check_request]},
        )

    # -- who the bot is ----------------------------------------------------------------------

    def use_clients(self, clients: Mapping[str, PreRegisteredClient]) -> None:
        """The operator's pre-registered clients, by run card id."""
        self._clients = dict(clients)

    @property
    def client_metadata_url(self) -> str | None:
        """Where the bot's Client ID Metadata Document is, when servers can fetch it (https)."""
        if self._client_metadata_url is not None:
            return self._client_metadata_url
        parts = urlsplit(self.redirect_url)
        if parts.scheme != "https" or not parts.hostname:
            return None
        return f"https://{parts.netloc}{CLIENT_METADATA_PATH}"

    def client_metadata(self, scope: str | None = None) -> OAuthClientMetadata:
        host = urlsplit(self.redirect_url).hostname or ""
        return OAuthClientMetadata(
            client_name=CLIENT_NAME,
            redirect_uris=[self.redirect_url],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=scope,
            application_type="native" if host in LOOPBACK_HOSTS else "web",
        )

    def client_metadata_document(self) -> dict[str, Any] | None:
        """The Client ID Metadata Document to serve at ``CLIENT_METADATA_PATH`` (None: the
        redirect is not public https, so no server could fetch it)."""
        url = self.client_metadata_url
        if url is None:
            return None
        document = self.client_metadata().model_dump(mode="json", exclude_none=True)
        return {"client_id": url, **document}

    async def add_team_client(
        self,
        team_id: str,
        admin_user_id: str,
        server_url: str,
        client_id: str,
        client_secret: str | None,
        *,
        issuer: str | None = None,
    ) -> None:
        """Keep a client a workspace admin registered with ``server_url``'s authorization server
        (for servers that offer the bot no other way): every connection of the team to exactly
        that URL signs in with it. The caller checked that ``admin_user_id`` is an admin.

        Raises:
            PolicyError: the URL is one the bot may not reach.
            ValueError: the client id is empty or too long.
            CredentialError, StoreError: nothing was stored.
        """
        client_id = client_id.strip()
        if not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS or any(ch.isspace() for ch in client_id):
            raise ValueError(f"A client id is 1–{MAX_CLIENT_ID_CHARS} characters without spaces.")
        await check_remote_url(server_url, self._settings.mcp_allowed_hosts)
        secret = (client_secret or "").strip() or None
        method = "client_secret_basic" if secret else "none"
        await self.grants.save_team_client(
            team_id, server_url, TeamClient(client_id, secret, method, issuer, admin_user_id)
        )

    # -- sessions --------------------------------------------------------------------------

    def signs_in(self, connection: Connection, spec: SessionSpec) -> bool:
        """Remote sessions sign in with OAuth when the server asks, unless the person gave the
        connection its own Authorization header (then a 401 means that token is wrong)."""
        if connection.transport == "stdio" or not spec.url:
            return False
        return not any(name.lower() == "authorization" for name in spec.headers)

    def session_auth(
        self, connection: Connection, secrets: Mapping[str, str]
    ) -> GrantProvider | MachineProvider:
        """The OAuth provider for one session of ``connection``: a machine client's own
        (``machine``, its credentials in ``secrets``), else its owner's grant.

        Raises:
            ConfigError: a machine client's credentials are missing or unusable.
        """
        if is_machine(connection):
            return machine_provider(self, connection, secrets)
        return self.provider(connection)

    def provider(self, connection: Connection) -> GrantProvider:
        """A fresh provider for one session of ``connection`` (its owner's grant)."""
        owner = Owner(connection.team_id, connection.user_id, connection.id)
        options = connection.typed_config.oauth
        client = self._clients.get(connection.card_id or "")
        preregistered = (
            client.info(self.redirect_url) if client and client.server_url == connection.url else None
        )
        provider = GrantProvider(
            name=connection.name,
            server_url=connection.url or "",
            client_metadata=self.client_metadata(options.scope if options else None),
            storage=GrantStorage(
                self.grants,
                owner,
                preregistered,
                server_url=connection.url or "",
                redirect_url=self.redirect_url,
            ),
            send=self._http.send,
            options=options,
            client_metadata_url=self.client_metadata_url,
        )
        provider.check_request = self.request_checker(connection.url or "")  # type: ignore[attr-defined]
        return provider

    def request_checker(self, server_url: str) -> Any:
        origin = _origin(httpx2.URL(server_url))

        async def check(request: httpx2.Request) -> None:
            if _origin(request.url) != origin:
                await self._check_request(request)

        return check

    async def _check_request(self, request: httpx2.Request) -> None:
        """The network policy on a URL a server named (raises ``PolicyError``)."""
        await check_remote_url(str(request.url), self._settings.mcp_allowed_hosts)

    # -- the end of a sign-in --------------------------------------------------------------

    async def finish(self, query: Mapping[str, str]) -> Connection:
        """Finish the sign-in the browser's callback ``query`` belongs to, on any process:
        take the pending sign-in (once), check ``iss``, trade the code, store the grant.
        Returns the connection, now holding tokens.

        Raises:
            SignInError: unknown, used or expired state; the person declined; the server
                refused the code. The text says what to do and holds no secret.
        """
        state = query.get("state") or ""
        if not state or len(state) > 512:
            raise errors.SignInError(
                "This page needs the link the sign-in server sent back. Start again from Slack."
            )
        pending = await self.grants.take_pending(state)
        if pending is None:
            raise errors.SignInError(
                "This sign-in link was already used, or the bot did not make it. "
                "Use Sign in again from /mcp list in Slack."
            )
        owner = pending.owner
        try:
            connection = await self._store.get_connection(owner.team_id, owner.user_id, owner.connection_id)
        except errors.ConnectionNotFoundError:
            raise errors.SignInError("That connection was removed; nothing was signed in.") from None
        if pending.expired:
            raise errors.SignInError(
                f"{connection.name}: this sign-in link expired (links work for 10 minutes). "
                "Use Sign in again from /mcp list in Slack."
            )
        if query.get("error"):
            code = query["error"] if _ERROR_CODE.fullmatch(query["error"]) else "error"
            raise errors.SignInError(
                f"{connection.name}: the sign-in was not completed ({code}). Use Sign in again to retry."
            )
        if not pending.secrets.get("code_verifier") or not pending.secrets.get("client"):
            raise errors.SignInError(
                f"{connection.name}: this sign-in can no longer be finished. Sign in again."
            )
        provider = self.provider(connection)
        restore_metadata(provider, pending.flow.get("metadata") or {})
        provider.context.client_info = OAuthClientInformationFull.model_validate(pending.secrets["client"])
        provider.context.client_metadata.scope = pending.flow.get("scope")
        provider._initialized = True  # the context is the pending one, not the grant's
        result = AuthorizationCodeResult(code=query.get("code") or "", state=state, iss=query.get("iss"))
        await provider.exchange(result, pending.secrets["code_verifier"])
        logger.info("%s: signed in with OAuth", connection.name)
        return connection

    async def revoke(self, connection: Connection) -> None:
        """Revoke the connection's tokens where the server supports it (RFC 7009), then forget
        the grant. Best effort, bounded: a server that does not answer never blocks a
        disconnect."""
        owner = Owner(connection.team_id, connection.user_id, connection.id)
        try:
            grant = await self.grants.load(owner)
        except errors.CredentialError:
            grant = None
        endpoint = ((grant.metadata.get("oauth") or {}).get("revocation_endpoint") if grant else None) or None
        if grant is not None and grant.tokens and endpoint:
            provider = self.provider(connection)
            restore_metadata(provider, grant.metadata)
            if grant.client:
                provider.context.client_info = OAuthClientInformationFull.model_validate(grant.client)
            for hint in ("refresh_token", "access_token"):
                token = grant.tokens.get(hint)
                if not token:
                    continue
                data = {"token": token, "token_type_hint": hint}
                if provider.context.client_info is not None:
                    data["client_id"] = provider.context.client_info.client_id
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                data, headers = provider.context.prepare_token_auth(data, headers)
                try:
                    await self._http.post(endpoint, data=data, headers=headers, timeout=REVOKE_TIMEOUT_S)
                except (httpx2.HTTPError, errors.PolicyError) as exc:
                    logger.warning("%s: token revocation failed: %s", connection.name, type(exc).__name__)
                    break
        await self.grants.delete(owner)

    async def aclose(self) -> None:
        await self._http.aclose()


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    """Parsed as httpx parsed the request it sends (host lowercased, a default port None): one
    parser for both sides, no string round trip on every request."""
    return url.scheme, url.host, url.port
