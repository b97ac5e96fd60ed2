"""Machine clients: a connection that authenticates as itself (OAuth 2.1 client credentials).

A connection whose ``OAuthOptions.grant`` is ``client_credentials`` has no person to sign in:
it holds an OAuth client's own credentials, as the connection's secrets in the credential
manager (``oauth:client_id`` and ``oauth:client_secret`` for ``client_secret_basic`` /
``client_secret_post``, or ``oauth:private_key``, a PEM, for ``private_key_jwt``, RFC 7523
§2.2), and trades them for an access token at the token endpoint whenever it needs one (MCP's
client-credentials extension, SEP-1046).

The SDK's own providers do the protocol (``ClientCredentialsOAuthProvider``,
``PrivateKeyJWTOAuthProvider``: discovery, the ``resource`` parameter, scopes, the assertion's
audience); ``machine_provider`` builds one for a session and adds what the bot needs of every
provider:

* **Tokens on the connection's grant** (``GrantStore``, through ``provider.GrantStorage``), with
  their absolute expiry and the discovered metadata, so a restarted bot uses its token until it
  expires and then asks for a new one straight at the token endpoint (no discovery again).
* **Where the credentials go is pinned**: to ``OAuthOptions.issuer`` when set, else to the
  issuer the first token came from (kept with the grant); an MCP server that later names
  another authorization server gets nothing.
* **The network policy** on every URL a server names, as for a person's sign-in
  (``OAuthFlows.request_checker``: the transport adds ``check_request`` as a request hook).
* **Failures say what to fix** (``failure``, read by the registry), and the secret values it
  holds are scrubbed from what the server sends back (``secret_values``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import httpx2
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from mcp.client.auth import OAuthFlowError, OAuthRegistrationError, OAuthTokenError
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.shared.auth import OAuthToken
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from mcp_core import errors
from mcp_core.connection_config import OAuthOptions
from mcp_core.models import Connection
from mcp_core.oauth.grants import Owner
from mcp_core.oauth.provider import EXPIRY_MARGIN_S, GrantStorage, metadata_of, restore_metadata
from mcp_core.session_specs import secret_forms

if TYPE_CHECKING:
    from mcp_core.oauth.flows import OAuthFlows

logger = logging.getLogger(__name__)

__all__ = [
    "CLIENT_ID_KEY",
    "CLIENT_SECRET_KEY",
    "PRIVATE_KEY_KEY",
    "MachineKeyProvider",
    "MachineProvider",
    "MachineSecretProvider",
    "is_machine",
    "machine_provider",
]

CLIENT_ID_KEY = "oauth:client_id"
CLIENT_SECRET_KEY = "oauth:client_secret"
PRIVATE_KEY_KEY = "oauth:private_key"
_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
FIX = "Update the connection's client credentials."


def is_machine(connection: Connection) -> bool:
    """True for a connection that authenticates as an OAuth client of its own."""
    options = connection.typed_config.oauth
    return options is not None and options.grant == "client_credentials"


class _Machine:
    """What the bot adds to the SDK's client-credentials providers (see the module docstring).
    Mixed in before the SDK class, so these methods wrap the SDK's."""

    name: str
    storage: GrantStorage
    failure: errors.McpCoreError | None
    sign_in_started: bool
    _issuer: str | None

    def _setup(self, name: str, storage: GrantStorage, check_request: Any) -> None:
        self.name = name
        self.storage = storage
        self.failure = None
        self.sign_in_started = False  # never: there is no person to ask
        self.check_request = check_request

    @property
    def owner(self) -> Owner:
        return self.storage.owner

    def secret_values(self) -> tuple[str, ...]:
        """The current access token and the client secret, in every form text may show them."""
        ctx = self.context  # type: ignore[attr-defined]
        values = [ctx.current_tokens.access_token] if ctx.current_tokens else []
        if ctx.client_info is not None and ctx.client_info.client_secret:
            values.append(ctx.client_info.client_secret)
        return secret_forms(v for v in values if v)

    async def _initialize(self) -> None:
        ctx = self.context  # type: ignore[attr-defined]
        ctx.client_info = self._fixed_client_info  # type: ignore[attr-defined]  # the SDK's, from secrets
        try:
            grant = await self.storage.grants.load(self.owner)
        except errors.CredentialError as exc:  # unreadable: get a new token
            logger.warning("%s: stored OAuth token unreadable (%s)", self.name, type(exc).__name__)
            grant = None
        ctx.current_tokens = OAuthToken.model_validate(grant.tokens) if grant and grant.tokens else None
        ctx.token_expiry_time = grant.expires_at.timestamp() if grant and grant.expires_at else None
        if grant is not None:
            restore_metadata(self, grant.metadata)  # type: ignore[arg-type]
            pinned = (grant.metadata.get("oauth") or {}).get("issuer")
            if self._issuer is None and pinned:
                self._issuer = str(pinned)
        self._initialized = True

    def _valid_for_a_while(self) -> bool:
        ctx = self.context  # type: ignore[attr-defined]
        expiry = ctx.token_expiry_time
        return ctx.is_token_valid() and (expiry is None or time.time() < expiry - EXPIRY_MARGIN_S)

    async def _auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            ctx = self.context  # type: ignore[attr-defined]
            if not self._initialized:  # type: ignore[has-type]
                async with ctx.lock:
                    if not self._initialized:  # type: ignore[has-type]
                        await self._initialize()
            ctx.protocol_version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
            if ctx.oauth_metadata is not None and not self._valid_for_a_while():
                # Expired or about to: a new token from the known token endpoint (no refresh
                # token in this grant, and no need to rediscover what the grant remembers).
                async with ctx.lock:
                    if not self._valid_for_a_while():
                        token_request = await self._exchange_token_client_credentials()  # type: ignore[attr-defined]
                        try:
                            await self._handle_token_response((yield token_request))
                        except OAuthTokenError as exc:  # stale metadata, say: discover again
                            why = _first_line(exc)
                            logger.info("%s: new token refused (%s); rediscovering", self.name, why)
                            ctx.oauth_metadata = None
                            ctx.clear_tokens()
            inner = super()._auth_flow(request)  # type: ignore[misc]
            outgoing = await inner.__anext__()
            try:
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
            why = f"the authorization server refused the client credentials: {_first_line(exc)}. {FIX}"
            self.failure = errors.ServerAuthError(self.name, why)
            raise self.failure from exc

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        await super()._handle_token_response(response)  # type: ignore[misc]  # stores the tokens
        await self.storage.grants.save(self.owner, metadata=metadata_of(self))  # type: ignore[arg-type]


class MachineSecretProvider(_Machine, ClientCredentialsOAuthProvider):
    """Client credentials with ``client_secret_basic`` or ``client_secret_post``."""


class MachineKeyProvider(_Machine, PrivateKeyJWTOAuthProvider):
    """Client credentials with ``private_key_jwt`` (a signed assertion, RFC 7523 §2.2)."""


MachineProvider = MachineSecretProvider | MachineKeyProvider


def machine_provider(
    flows: OAuthFlows, connection: Connection, secrets: Mapping[str, str]
) -> MachineProvider:
    """A fresh provider for one session of the machine-client ``connection``, whose credentials
    are ``secrets`` (the connection's record).

    Raises:
        ConfigError: the credentials are missing or do not fit the configured method.
    """
    options = connection.typed_config.oauth or OAuthOptions(grant="client_credentials")
    client_id = (secrets.get(CLIENT_ID_KEY) or "").strip()
    secret = secrets.get(CLIENT_SECRET_KEY) or None
    key = secrets.get(PRIVATE_KEY_KEY) or None
    method = options.client_auth or ("private_key_jwt" if key and not secret else "client_secret_basic")
    if not client_id:
        raise errors.ConfigError(f"{connection.name}: no OAuth client id is stored. {FIX}")
    server_url = connection.url or ""
    owner = Owner(connection.team_id, connection.user_id, connection.id)
    storage = GrantStorage(flows.grants, owner, server_url=server_url)
    with warnings.catch_warnings():
        # Without an issuer the SDK warns that the server picks the authorization server; the
        # bot pins the first one it used instead (``_Machine._initialize``).
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        provider: MachineProvider
        if method == "private_key_jwt":
            if not key:
                raise errors.ConfigError(f"{connection.name}: private_key_jwt needs a private key. {FIX}")
            assertion = SignedJWTParameters(
                issuer=client_id,
                subject=client_id,
                signing_key=key,
                signing_algorithm=options.signing_alg or _algorithm_of(connection.name, key),
            ).create_assertion_provider()
            provider = MachineKeyProvider(
                server_url, storage, client_id, assertion, scope=options.scope, issuer=options.issuer
            )
        elif method in ("client_secret_basic", "client_secret_post"):
            if not secret:
                raise errors.ConfigError(f"{connection.name}: {method} needs a client secret. {FIX}")
            provider = MachineSecretProvider(
                server_url,
                storage,
                client_id,
                secret,
                token_endpoint_auth_method=method,
                scope=options.scope,
                issuer=options.issuer,
            )
        else:
            raise errors.ConfigError(
                f"{connection.name}: a machine client authenticates with a secret or a private key, "
                f"not {method}."
            )
    provider._setup(connection.name, storage, flows.request_checker(server_url))
    return provider


def _algorithm_of(name: str, pem: str) -> str:
    """The JWS algorithm for a private key: RS256, ES256/384/512 by curve, EdDSA."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):  # the message could quote the key: not re-raised
        unreadable = f"{name}: the stored private key is not an unencrypted PEM key. {FIX}"
        raise errors.ConfigError(unreadable) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGS:
        return _EC_ALGS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise errors.ConfigError(f"{name}: the private key's type cannot sign a client assertion. {FIX}")


def _first_line(exc: BaseException) -> str:
    """An OAuth error's message, one line, short: it may quote a server's body (hostile text)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200].rstrip(".")
