"""How a stored connection and its secrets become the ``SessionSpec`` the pool opens, and the
forms in which those secrets are scrubbed from anything a server sends back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from mcp_core import errors
from mcp_core.connection_config import PLACES, SecretTarget
from mcp_core.credentials.payload import OAUTH_KEYS
from mcp_core.models import Connection, SessionSpec
from mcp_core.settings import Settings

__all__ = ["AUTH_SCHEMES", "secret_forms", "session_spec"]


AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "bot", "apikey", "api-key", "key", "digest"})
"""Prefixes of header secrets ("Bearer <token>"); the token alone is scrubbed too."""


def secret_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Every form in which a secret may show up in text: as given, without its auth scheme
    ("Bearer <token>" → "<token>"), and URL-encoded (it may travel in a query string)."""
    forms: set[str] = set()
    for value in values:
        scheme, _, token = value.partition(" ")
        for form in (value, token.strip() if scheme.lower() in AUTH_SCHEMES else ""):
            if form:
                forms |= {form, quote(form, safe=""), quote_plus(form)}
    return tuple(sorted(forms, key=len, reverse=True))


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    if not extra:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | dict(extra)
    return urlunsplit(parts._replace(query=urlencode(query)))


def session_spec(connection: Connection, secrets: Mapping[str, str], settings: Settings) -> SessionSpec:
    """What the pool needs to open ``connection``: its stored settings with ``secrets`` put in
    their places (headers, the query string, the environment), timeouts defaulting to settings.
    OAuth credentials (``OAUTH_KEYS``: a machine client's id, secret, key) go nowhere, but are
    scrubbed like every other secret.

    Raises:
        ConfigError: a stored secret names a place that does not exist.
    """
    config = connection.typed_config
    places = {kind: config.place(kind) for kind in PLACES}
    for key, value in secrets.items():
        if key in OAUTH_KEYS:  # a machine client's credentials: for its OAuth provider, scrubbed below
            continue
        try:
            target = SecretTarget.parse(key)
        except ValueError:
            unknown = f"{connection.name}: a stored secret has an unknown destination."
            raise errors.ConfigError(unknown) from None
        places[target.kind][target.name] = value
    return SessionSpec(
        connection_id=connection.id,
        name=connection.name,
        transport=connection.transport,
        url=_with_query(connection.url, places["query"]) if connection.url else None,
        command=connection.command,
        args=tuple(connection.args),
        cwd=config.cwd,
        env=places["env"],
        headers=places["header"],
        connect_timeout_s=config.connect_timeout_s or settings.mcp_connect_timeout_s,
        call_timeout_s=config.call_timeout_s or settings.mcp_call_timeout_s,
        protocol_mode=config.protocol_mode,
        secret_values=secret_forms(secrets.values()),
    )
