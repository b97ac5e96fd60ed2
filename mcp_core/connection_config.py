"""What a connection's ``config`` holds, and where each of its secrets goes, as types.

Both travel as plain data and keep their stored formats: ``config`` is the JSON object in the
``mcp_connections.config`` column (``{"headers": {...}, "endpoints": [...]}``), and a secret's
destination is the key of its credential record (``"header:Authorization"``). This module types
them where they are read: ``ConnectionConfig.model_validate(row["config"])`` and
``SecretTarget.parse(key)``, so no caller splits strings or digs through dicts of dicts.

``PLACES`` is the one table of places a value can go when a session opens (an HTTP header, a
stdio process's environment, a URL query parameter). Run cards map fields to them, the credential
codec checks record keys against them, and the registry joins secrets into them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PLACES",
    "CardFieldError",
    "ConnectionConfig",
    "OAuthOptions",
    "Place",
    "PlaceKind",
    "SecretTarget",
]

PlaceKind = Literal["header", "env", "query"]


@dataclass(frozen=True)
class Place:
    """One place a setting or secret goes when a session opens."""

    kind: PlaceKind
    """The prefix of credential keys and run-card mappings: ``header`` in ``header:Name``."""
    config_field: str
    """The ``ConnectionConfig`` field that holds the non-secret values for this place."""
    name_shape: str
    """How messages show a name here (``<Name>``, ``<NAME>``, ``<name>``)."""
    name_pattern: re.Pattern[str]
    """What a run card may name (a card is refused otherwise); stored keys are only checked
    for a non-empty name, as they always were."""
    remote: bool
    """True for remote servers (HTTP), False for local (stdio) processes."""


PLACES: dict[str, Place] = {
    place.kind: place
    for place in (
        Place("header", "headers", "<Name>", re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"), remote=True),
        Place("env", "env", "<NAME>", re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"), remote=False),
        Place("query", "query", "<name>", re.compile(r"^[A-Za-z0-9._~-]+$"), remote=True),
    )
}
"""Every place, in the order messages list them. The header pattern is an RFC 9110 token."""


def _key_shapes() -> str:
    shapes = [f"{kind}:{place.name_shape}" for kind, place in PLACES.items()]
    return f"{', '.join(shapes[:-1])} or {shapes[-1]}"


@dataclass(frozen=True)
class SecretTarget:
    """Where one secret value goes: ``SecretTarget("header", "Authorization")``.

    ``str(target)`` is its storage key (``header:Authorization``), the format credential records
    have always used.
    """

    kind: PlaceKind
    name: str

    @classmethod
    def parse(cls, key: str) -> SecretTarget:
        """The target a credential key names.

        Raises:
            ValueError: ``key`` is not ``<kind>:<name>`` with a kind of ``PLACES`` and a name.
        """
        kind, _, name = key.partition(":") if isinstance(key, str) else ("", "", "")
        if kind not in PLACES or not name:
            raise ValueError(f"Credential keys look like {_key_shapes()}, not {key!r}.")
        return cls(kind, name)  # type: ignore[arg-type]  # checked against PLACES just above

    @property
    def place(self) -> Place:
        return PLACES[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class CardFieldError(ValueError):
    """A form value is not acceptable; ``field_key`` names the field so a form can show it there."""

    def __init__(self, field_key: str, message: str) -> None:
        super().__init__(f"{field_key}: {message}")
        self.field_key = field_key
        self.message = message


class OAuthOptions(BaseModel):
    """How a connection signs in with OAuth (set by an ``auth: oauth`` run card).

    A remote connection without an ``Authorization`` header signs in with OAuth whenever its
    server asks (a 401 with discovery metadata); these options only refine that: scopes to ask
    for when neither the challenge nor the metadata names any, and how a client registered by
    the operator (``OAUTH_<CARD>_CLIENT_ID`` / ``_SECRET``) authenticates at the token endpoint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str | None = Field(default=None, max_length=1000)
    client_auth: Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"] | None = None
    """None: ``client_secret_basic`` when the operator gave a secret, else ``none``. With the
    ``client_credentials`` grant: ``client_secret_basic`` / ``client_secret_post`` with
    ``oauth:client_secret``, ``private_key_jwt`` (RFC 7523) with ``oauth:private_key``; None picks
    by which of the two the connection's secrets hold."""
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    """``authorization_code``: a person signs in. ``client_credentials``: the connection is a
    machine client (OAuth 2.1 §4.2, the MCP client-credentials extension): its client id and
    secret or private key are the connection's secrets (``oauth:client_id``,
    ``oauth:client_secret``, ``oauth:private_key``), never this config."""
    issuer: str | None = Field(default=None, max_length=2000)
    """For ``client_credentials``: the issuer of the authorization server the credentials belong
    to; they are sent to no other. None: the first issuer the server leads to, then pinned."""
    signing_alg: Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"] | None = None
    """For ``private_key_jwt``: the assertion's algorithm; None: from the key (RSA → RS256,
    EC → ES256/384/512 by curve, Ed25519 → EdDSA)."""


class ConnectionConfig(BaseModel):
    """The non-secret settings of a connection (``NewConnection.config``, typed).

    Unknown keys are refused, so a misspelt setting fails where it is written instead of being
    stored and ignored. ``stored()`` is the JSON kept in the database: only what differs from
    the defaults, so rows look exactly as they did before this model existed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    headers: dict[str, str] = Field(default_factory=dict)
    """Plain HTTP headers for a remote server."""
    env: dict[str, str] = Field(default_factory=dict)
    """Plain environment variables for a stdio server."""
    query: dict[str, str] = Field(default_factory=dict)
    """Plain URL query parameters for a remote server."""
    endpoints: tuple[str, ...] = ()
    """URLs a stdio server will connect to (a database URL, say), checked by the network policy
    like a remote URL."""
    cwd: str | None = None
    """The stdio server's working directory; None: the sandbox's own directory."""
    connect_timeout_s: float | None = Field(default=None, gt=0)
    """None: ``MCP_CONNECT_TIMEOUT_S``."""
    call_timeout_s: float | None = Field(default=None, gt=0)
    """None: ``MCP_CALL_TIMEOUT_S``."""
    protocol_mode: Literal["auto", "legacy"] = "auto"
    oauth: OAuthOptions | None = None
    """Set for connections made from an ``auth: oauth`` card."""
    card_values: dict[str, str] = Field(default_factory=dict)
    """The non-secret values a run card's form was filled in with, to pre-fill its Edit form
    (values the operator supplied are never kept here: they are never shown back)."""

    def place(self, kind: PlaceKind) -> dict[str, str]:
        """The plain values for one of ``PLACES`` (a copy: secrets are joined into it)."""
        return dict(getattr(self, PLACES[kind].config_field))

    def stored(self) -> dict[str, Any]:
        """The JSON object kept in ``mcp_connections.config``."""
        return self.model_dump(mode="json", exclude_defaults=True)
