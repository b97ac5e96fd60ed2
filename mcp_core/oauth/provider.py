"""The SDK's ``OAuthClientProvider``, made to work for a bot of many processes and restarts.

The SDK does discovery (RFC 9728, RFC 8414 / OpenID, their fallbacks, issuer checks), client
identification (stored → Client ID Metadata Document → dynamic registration), scope choice and
step-up, PKCE and the ``resource`` parameter exactly as the spec orders them, and the
conformance suite checks it. What it cannot do is a person who clicks a link minutes later,
maybe on another process, and tokens that outlive the process. So this subclass changes four
things:

* **The authorization step does not wait.** Where the SDK would hand the link to a
  redirect handler and await a callback in this process, ``GrantProvider`` stores the pending
  sign-in (state hash, PKCE verifier, client, metadata) in ``GrantStore`` and raises
  ``SignInRequiredError`` with the link. ``flows.OAuthFlows.complete`` exchanges the code
  wherever the callback lands.
* **State comes from the grant.** ``_initialize`` restores the tokens, the client, the
  discovered metadata and the access token's absolute expiry (the SDK's own reload loses the
  expiry, so it would send an expired token and fall into a full sign-in instead of a refresh).
* **Refresh is single-flight across processes**, under the grant's database lease, and the
  stored tokens are read again once the lease is held: if another process refreshed
  meanwhile, its tokens are used. A rotated refresh token is never sent twice (providers
  revoke the whole grant when one is). A 401 on a token we thought valid also tries one
  refresh before asking the person to sign in.
* **Failures say what happened**: ``failure`` holds a ``mcp_core.errors`` exception for the
  registry (the transport may wrap or swallow what the flow raised).
"""

from __future__ import annotations

import asyncio
import logging
import secrets as _secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx2
from mcp.client.auth import OAuthClientProvider, OAuthFlowError, OAuthRegistrationError, OAuthTokenError
from mcp.client.auth.oauth2 import PKCEParameters
from mcp.client.auth.utils import extract_field_from_www_auth, validate_authorization_response_iss
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from mcp_core import errors
from mcp_core.connection_config import OAuthOptions
from mcp_core.oauth.grants import GrantStore, Owner
from mcp_core.session_specs import secret_forms

logger = logging.getLogger(__name__)

__all__ = ["EXPIRY_MARGIN_S", "GrantProvider", "GrantStorage", "metadata_of", "restore_metadata"]

EXPIRY_MARGIN_S = 60.0
"""Refresh this long before the access token expires, so a call never starts on a dying token."""
REFRESH_TIMEOUT_S = 15.0
NOT_OAUTH = "the server refused the credentials (HTTP 401). Reconnect with a valid token."


class _QuietSignIn(logging.Filter):
    """The SDK logs every exception out of its flow with a traceback; a sign-in being needed
    is the normal path here, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, errors.SignInRequiredError)


logging.getLogger("mcp.client.auth.oauth2").addFilter(_QuietSignIn())


def metadata_of(provider: OAuthClientProvider) -> dict[str, Any]:
    """The discovered, non-secret metadata a grant keeps so refresh and revocation work after a
    restart (the SDK would otherwise guess ``<origin>/token``)."""
    ctx = provider.context
    out: dict[str, Any] = {"protocol_version": ctx.protocol_version, "auth_server_url": ctx.auth_server_url}
    if ctx.oauth_metadata is not None:
        out["oauth"] = ctx.oauth_metadata.model_dump(mode="json", exclude_none=True)
    if ctx.protected_resource_metadata is not None:
        out["prm"] = ctx.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
    return out


def restore_metadata(provider: OAuthClientProvider, metadata: dict[str, Any]) -> None:
    ctx = provider.context
    if metadata.get("oauth"):
        ctx.oauth_metadata = OAuthMetadata.model_validate(metadata["oauth"])
    if metadata.get("prm"):
        ctx.protected_resource_metadata = ProtectedResourceMetadata.model_validate(metadata["prm"])
    ctx.auth_server_url = metadata.get("auth_server_url") or ctx.auth_server_url
    ctx.protocol_version = metadata.get("protocol_version") or ctx.protocol_version


def _expiry_of(tokens: OAuthToken) -> datetime | None:
    return datetime.fromtimestamp(time.time() + tokens.expires_in, UTC) if tokens.expires_in else None


class GrantStorage:
    """The SDK's ``TokenStorage`` for one connection, on its grant. Without a client of its own
    the grant uses one registered for this server by the operator (``preregistered``, from a run
    card) or by a workspace admin (``GrantStore.team_client`` for ``server_url``)."""

    def __init__(
        self,
        grants: GrantStore,
        owner: Owner,
        preregistered: OAuthClientInformationFull | None = None,
        *,
        server_url: str = "",
        redirect_url: str = "",
    ) -> None:
        self.grants = grants
        self.owner = owner
        self.preregistered = preregistered
        self._server_url = server_url
        self._redirect_url = redirect_url

    async def fallback_client(self) -> OAuthClientInformationFull | None:
        """The operator's client for this card, else the client an admin added for this URL."""
        if self.preregistered is not None:
            return self.preregistered
        team = (
            await self.grants.team_client(self.owner.team_id, self._server_url) if self._server_url else None
        )
        if team is None:
            return None
        return OAuthClientInformationFull(
            client_id=team.client_id,
            client_secret=team.client_secret,
            redirect_uris=[self._redirect_url],  # type: ignore[list-item]  # pydantic coerces
            token_endpoint_auth_method=team.client_auth,  # type: ignore[arg-type]
            issuer=team.issuer,
        )

    async def get_tokens(self) -> OAuthToken | None:
        grant = await self.grants.load(self.owner)
        return OAuthToken.model_validate(grant.tokens) if grant is not None and grant.tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await self.grants.save(
            self.owner,
            tokens=tokens.model_dump(mode="json", exclude_none=True),
            expires_at=_expiry_of(tokens),
        )

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        grant = await self.grants.load(self.owner)
        if grant is not None and grant.client:
            return OAuthClientInformationFull.model_validate(grant.client)
        return await self.fallback_client()

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self.grants.save(self.owner, client=client_info.model_dump(mode="json", exclude_none=True))


async def _no_browser(*_: Any) -> Any:  # the SDK requires handlers; GrantProvider never calls them
    raise OAuthFlowError("interactive authorization is handled by GrantProvider")


class GrantProvider(OAuthClientProvider):
    """One connection's OAuth provider (one per live session, so the SDK's lock is per person
    and server). See the module docstring for what differs from the SDK's."""

    def __init__(
        self,
        *,
        name: str,
        server_url: str,
        client_metadata: OAuthClientMetadata,
        storage: GrantStorage,
        send: Callable[[httpx2.Request], Awaitable[httpx2.Response]],
        options: OAuthOptions | None = None,
        client_metadata_url: str | None = None,
    ) -> None:
        super().__init__(
            server_url,
            client_metadata,
            storage,
            redirect_handler=_no_browser,
            callback_handler=_no_browser,
            client_metadata_url=client_metadata_url,
        )
        self.name = name
        self.storage = storage
        self.failure: errors.McpCoreError | None = None
        self.sign_in_started = False
        """True once this provider asked the person to sign in (the server wants OAuth)."""
        self._send = send
        self._options = options
        self._refresh_lock = asyncio.Lock()

    @property
    def owner(self) -> Owner:
        return self.storage.owner

    def secret_values(self) -> tuple[str, ...]:
        """The tokens and client secret this session holds now, in every form text may show
        them (``session_specs.secret_forms``), to scrub from what a server sends back."""
        ctx = self.context
        values = (
            [ctx.current_tokens.access_token, ctx.current_tokens.refresh_token] if ctx.current_tokens else []
        )
        if ctx.client_info is not None:
            values.append(ctx.client_info.client_secret)
        return secret_forms(v for v in values if v)

    # -- state from the grant --------------------------------------------------------------

    async def _initialize(self) -> None:
        ctx = self.context
        try:
            grant = await self.storage.grants.load(self.owner)
        except errors.CredentialError as exc:  # unreadable tokens: sign in again
            logger.warning("%s: stored OAuth grant unreadable (%s)", self.name, type(exc).__name__)
            grant = None
        ctx.current_tokens = OAuthToken.model_validate(grant.tokens) if grant and grant.tokens else None
        client = grant.client if grant else None
        if client:
            ctx.client_info = OAuthClientInformationFull.model_validate(client)
        else:
            ctx.client_info = await self.storage.fallback_client()
        ctx.token_expiry_time = grant.expires_at.timestamp() if grant and grant.expires_at else None
        if grant is not None:
            restore_metadata(self, grant.metadata)
        self._initialized = True

    def _valid_for_a_while(self) -> bool:
        expiry = self.context.token_expiry_time
        return self.context.is_token_valid() and (expiry is None or time.time() < expiry - EXPIRY_MARGIN_S)

    # -- the flow --------------------------------------------------------------------------

    async def _auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            if not self._initialized:
                async with self.context.lock:
                    if not self._initialized:
                        await self._initialize()
            self.context.protocol_version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
            ctx = self.context
            if ctx.current_tokens is not None and not self._valid_for_a_while() and ctx.can_refresh_token():
                await self.refresh(rejected=None)
            if ctx.is_token_valid():
                self._add_auth_header(request)
                response = yield request
                if not _asks_again(response):
                    return
                rejected = ctx.current_tokens.access_token if ctx.current_tokens else None
                if (
                    response.status_code == 401
                    and ctx.can_refresh_token()
                    and await self.refresh(rejected=rejected)
                ):
                    self._add_auth_header(request)
                    response = yield request
                    if not _asks_again(response):
                        return
            answered, sent_with = None, request.headers.get("Authorization")
            if ctx.current_tokens is None:
                # No grant (most remote servers need no OAuth): the request goes as it is, and
                # the SDK's flow (a lock and two generators per request, ~30 µs) runs only once
                # the server asks for a sign-in, fed the answer it would have got itself.
                answered = yield request
                if not _asks_again(answered):
                    return
            inner = super()._auth_flow(request)
            try:
                outgoing = await inner.__anext__()
                if (
                    answered is not None
                    and outgoing is request
                    and request.headers.get("Authorization") == sent_with
                ):
                    outgoing = await inner.asend(answered)  # it would send what was sent: not twice
                while True:
                    response = yield outgoing
                    outgoing = await inner.asend(response)
            except StopAsyncIteration:
                return
            finally:
                await inner.aclose()
        except errors.McpCoreError as exc:
            self.failure = exc
            raise
        except (OAuthFlowError, OAuthTokenError, OAuthRegistrationError) as exc:
            self.failure = self._explain(exc)
            raise self.failure from exc

    def _explain(self, exc: Exception) -> errors.McpCoreError:
        ctx = self.context
        if ctx.protected_resource_metadata is None and ctx.oauth_metadata is None:
            # A 401 from a server that publishes no OAuth metadata: a plain token server whose
            # token is missing or wrong, not a sign-in that failed.
            return errors.ServerAuthError(self.name, NOT_OAUTH)
        if isinstance(exc, OAuthRegistrationError):
            issuer = ctx.auth_server_url or ctx.get_authorization_base_url(ctx.server_url)
            return errors.OAuthClientMissingError(self.name, issuer, ctx.server_url)
        return errors.ServerAuthError(self.name, f"OAuth sign-in failed: {_first_line(exc)}")

    async def refresh(self, *, rejected: str | None) -> bool:
        """Refresh the access token once for every process: under the grant's lease, after
        reading the stored tokens again (another process may have refreshed). ``rejected`` is
        the access token the server just refused (None: it merely expired). True when the
        context now holds a usable token."""
        ctx = self.context
        async with self._refresh_lock, self.storage.grants.lease(self.owner):
            try:
                grant = await self.storage.grants.load(self.owner)
            except errors.CredentialError:
                grant = None
            if grant is not None and grant.tokens:
                stored = OAuthToken.model_validate(grant.tokens)
                expiry = grant.expires_at.timestamp() if grant.expires_at else None
                fresh = expiry is not None and time.time() < expiry - EXPIRY_MARGIN_S
                ctx.current_tokens, ctx.token_expiry_time = stored, expiry  # the newest refresh token
                if stored.access_token != rejected and (fresh or (expiry is None and rejected is not None)):
                    return True  # still good, or another process refreshed meanwhile
            if not ctx.can_refresh_token():
                return False
            request = await self._refresh_token()
            try:
                response = await asyncio.wait_for(self._send(request), REFRESH_TIMEOUT_S)
            except (httpx2.HTTPError, TimeoutError, errors.PolicyError) as exc:
                logger.warning("%s: token refresh failed: %s", self.name, type(exc).__name__)
                return False
            if await self._handle_refresh_response(response):
                return True
            await self.storage.grants.save(self.owner, clear_tokens=True)
            return False

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        await super()._handle_token_response(response)
        await self.storage.grants.save(self.owner, metadata=metadata_of(self))

    async def _perform_authorization_code_grant(self) -> tuple[str, str]:
        """Store the sign-in and raise ``SignInRequiredError`` with its link (module docstring).

        The link is built exactly as the SDK builds it (same parameters, same order of
        decisions), so what the conformance suite checks of the SDK holds here.
        """
        ctx = self.context
        if ctx.client_info is None or not ctx.client_metadata.redirect_uris:
            raise OAuthFlowError("No client or redirect URI for the authorization code grant")
        ctx.client_metadata.scope = self._scope(ctx.client_metadata.scope)
        if ctx.oauth_metadata and ctx.oauth_metadata.authorization_endpoint:
            endpoint = str(ctx.oauth_metadata.authorization_endpoint)
        else:
            endpoint = urljoin(ctx.get_authorization_base_url(ctx.server_url), "/authorize")
        pkce = PKCEParameters.generate()
        state = _secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": ctx.client_info.client_id,
            "redirect_uri": str(ctx.client_metadata.redirect_uris[0]),
            "state": state,
            "code_challenge": pkce.code_challenge,
            "code_challenge_method": "S256",
        }
        if ctx.should_include_resource_param(ctx.protocol_version):
            params["resource"] = ctx.get_resource_url()
        if ctx.client_metadata.scope:
            params["scope"] = ctx.client_metadata.scope
            if "offline_access" in ctx.client_metadata.scope.split():
                params["prompt"] = "consent"
        flow = {"metadata": metadata_of(self), "scope": ctx.client_metadata.scope}
        secret = {
            "code_verifier": pkce.code_verifier,
            "client": ctx.client_info.model_dump(mode="json", exclude_none=True),
        }
        await self.storage.grants.add_pending(self.owner, state, flow, secret)
        self.sign_in_started = True
        raise errors.SignInRequiredError(
            self.name, f"{endpoint}?{urlencode(params)}", scope=ctx.client_metadata.scope
        )

    def _scope(self, chosen: str | None) -> str | None:
        """The scope to ask for: the SDK's choice (the challenge's, else everything the resource
        supports), narrowed to the run card's scope when the SDK fell back to "everything" —
        a card that names its scopes asks for least privilege (GitHub lists a dozen, from
        ``repo`` to ``codespace``). A challenge's own scope (and a step-up's union) is kept."""
        card = self._options.scope if self._options is not None else None
        if not card:
            return chosen
        ctx = self.context
        broad = {
            " ".join(meta.scopes_supported)
            for meta in (ctx.protected_resource_metadata, ctx.oauth_metadata)
            if meta is not None and meta.scopes_supported
        }
        words = (chosen or "").split()
        if chosen is not None and " ".join(w for w in words if w != "offline_access") not in broad:
            return chosen
        offline = "offline_access" in words and "offline_access" not in card.split()
        return f"{card} offline_access" if offline else card  # SEP-2207's addition is kept

    async def exchange(self, result: AuthorizationCodeResult, code_verifier: str) -> None:
        """Finish a sign-in this provider (or another process's) started: check ``iss``
        (RFC 9207), trade the code at the token endpoint and store the grant.

        Raises:
            SignInError: the server refused, or its answer is not a token.
        """
        try:
            validate_authorization_response_iss(result.iss, self.context.oauth_metadata)
            if not result.code:
                raise OAuthFlowError("No authorization code received")
            request = await self._exchange_token_authorization_code(result.code, code_verifier)
            response = await asyncio.wait_for(self._send(request), REFRESH_TIMEOUT_S)
            await self._handle_token_response(response)
        except (OAuthFlowError, OAuthTokenError, ValueError) as exc:
            raise errors.SignInError(f"{self.name}: the sign-in server refused: {_first_line(exc)}") from exc
        except errors.PolicyError as exc:
            raise errors.SignInError(f"{self.name}: {exc}") from exc
        except (httpx2.HTTPError, TimeoutError) as exc:
            raise errors.SignInError(
                f"{self.name}: the sign-in server did not answer ({type(exc).__name__}); sign in again."
            ) from exc
        if self.context.client_info is not None:
            await self.storage.set_client_info(self.context.client_info)


def _asks_again(response: httpx2.Response) -> bool:
    """401, or a 403 that asks for more scope (step-up): the flow must go on."""
    return response.status_code == 401 or (
        response.status_code == 403 and extract_field_from_www_auth(response, "error") == "insufficient_scope"
    )


def _first_line(exc: BaseException) -> str:
    """An OAuth error's message, one line, short: it may quote a server's body (hostile text)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
