"""What every backend stores for one ref: the values map as canonical JSON, and its limits.

A backend keeps ``{"header:Authorization": "Bearer …", "env:TOKEN": "…"}`` as the bytes of
:func:`encode_values` (encrypted by ``_crypto`` in the local backend, handed to the provider
by the cloud ones) and turns what it reads back into a map with :func:`decode_values`. Both
sides live here so that every backend refuses the same keys with the same message and reads
the same format, whichever store a record was migrated from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcp_core.connection_config import SecretTarget
from mcp_core.errors import CredentialError

__all__ = ["MACHINE_KEYS", "MAX_REF_CHARS", "OAUTH_KEYS", "check_key", "decode_values", "encode_values"]

MAX_REF_CHARS = 200
"""The longest credential ref any backend accepts (the connections table's column fits it)."""


MACHINE_KEYS = frozenset({"oauth:client_id", "oauth:client_secret", "oauth:private_key"})
"""A machine client's credentials (``OAuthOptions.grant == "client_credentials"``), kept in the
connection's own record: the client id, and its secret or its private key (PEM)."""
OAUTH_KEYS = frozenset({"oauth:tokens", "oauth:client", "oauth:verifier"}) | MACHINE_KEYS
"""Keys of the records ``mcp_core.oauth`` keeps (a grant's tokens and client, a pending
sign-in's PKCE verifier, a machine client's credentials): never joined into a session's
headers or environment."""


def check_key(key: object) -> None:
    """Refuse a key that does not say where its value goes (a :class:`SecretTarget`), other
    than the OAuth record keys (``OAUTH_KEYS``).

    Raises:
        ValueError: the key is not ``header:<Name>``, ``env:<NAME>`` or ``query:<name>``.
    """
    if key in OAUTH_KEYS:
        return
    SecretTarget.parse(key)  # type: ignore[arg-type]  # parse refuses a non-string too


def encode_values(values: Mapping[str, str]) -> bytes:
    """``values`` as compact JSON with sorted keys, after checking every key and value.

    Raises:
        ValueError: a key fails :func:`check_key` or a value is not a string. The message
            quotes the key, never a value.
    """
    for key, value in values.items():
        check_key(key)
        if not isinstance(value, str):
            raise ValueError(f"The value for {key!r} must be a string.")
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":")).encode()


def decode_values(data: object) -> dict[str, str]:
    """The map :func:`encode_values` wrote (bytes or text; anything else is unreadable).

    Raises:
        CredentialError: ``data`` is not a JSON map of strings. The exception carries no part
            of ``data`` (it is a decrypted secret).
    """
    try:
        values = json.loads(data) if isinstance(data, (bytes, str)) else None
    except ValueError:
        values = None  # not re-raised: the exception would carry the secret's text
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise CredentialError("the stored payload is not a JSON map of strings")
    return values
