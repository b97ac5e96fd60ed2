"""AES-256-GCM envelope encryption of credential records, and the keyring of master keys.

Each record gets a fresh 256-bit data key (DEK) that encrypts the payload; a master key
(key-encryption key, KEK) from the keyring wraps the DEK. Both encryptions carry associated
data (AAD) binding them to (team, user, ref), so a record copied to another user's or another
connection's row fails to decrypt, as does a record with one byte changed. The record is JSON::

    {"v": 1, "kid": "k2", "wdek": "<b64 nonce2 || wrapped DEK>", "n": "<b64 nonce>", "ct": "<b64>"}

Rotation (:func:`rewrap`) re-wraps only the DEK under the primary key; ``n`` and ``ct`` stay.
A fresh key per record keeps each key far below GCM's random-nonce limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_core.errors import ConfigError, CredentialError

__all__ = [
    "KEY_BYTES",
    "RECORD_VERSION",
    "Keyring",
    "aad_for",
    "decrypt",
    "encrypt",
    "new_key_entry",
    "parse_keyring",
    "rewrap",
]

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard 96-bit nonce, random per encryption
TAG_BYTES = 16
RECORD_VERSION = 1
PURPOSE = "mcp-credential"
_WRAPPED_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOW_TO_MAKE_A_KEY = "32 random bytes, base64-encoded (e.g. `openssl rand -base64 32`)"


class Keyring:
    """Master keys by key id; the first one given is the primary (it wraps new records).

    Its ``repr`` shows key ids only, never key material.
    """

    __slots__ = ("_keys", "primary", "source")

    def __init__(self, keys: Mapping[str, bytes], primary: str, source: str) -> None:
        if primary not in keys:
            raise ValueError("the primary key id must be one of the keys")
        self._keys = dict(keys)
        self.primary = primary
        self.source = source
        """Where the keys came from, for messages: ``CREDENTIAL_KEYS`` or the key file's path."""

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary!r}, kids={self.kids!r}, source={self.source!r})"


def parse_keyring(text: str, *, source: str = "CREDENTIAL_KEYS") -> Keyring:
    """Parse ``kid:base64key,kid:base64key,…`` (first = primary). Blank entries are ignored.

    Error messages name the key id or the entry's position, never the key material.

    Raises:
        ConfigError: no key, an entry without ``kid:``, a bad key id, a duplicate key id, a key
            that is not base64, or a key that is not 32 bytes.
    """
    keys: dict[str, bytes] = {}
    entries = [entry.strip() for entry in text.split(",")]
    for position, entry in enumerate(entries, start=1):
        if not entry:
            continue
        kid, sep, encoded = (part.strip() for part in entry.partition(":"))
        if not sep or not kid:
            raise ConfigError(
                f"{source}: entry {position} must look like kid:base64key (e.g. k1:<{_HOW_TO_MAKE_A_KEY}>)."
            )
        if not _KID.fullmatch(kid):
            raise ConfigError(
                f"{source}: entry {position} has an invalid key id (use 1-64 letters, digits, _ - or .)."
            )
        if kid in keys:
            raise ConfigError(f"{source}: key id {kid!r} appears twice; each key needs its own id.")
        key = _decode_key(encoded)
        if key is None:
            raise ConfigError(f"{source}: key {kid!r} is not valid base64; it must be {_HOW_TO_MAKE_A_KEY}.")
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{source}: key {kid!r} is {len(key)} bytes long; it must be {_HOW_TO_MAKE_A_KEY}."
            )
        keys[kid] = key
    if not keys:
        raise ConfigError(f"{source}: no key found; give at least one as kid:base64key.")
    return Keyring(keys, next(iter(keys)), source)


def new_key_entry(kid: str) -> str:
    """A fresh random master key as a ``kid:base64key`` entry (the format of CREDENTIAL_KEYS)."""
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode()}"


def aad_for(team_id: str, user_id: str, ref: str) -> bytes:
    """The associated data binding a record to its owner and ref: canonical JSON, sorted keys."""
    context = {"p": PURPOSE, "t": team_id, "u": user_id, "c": ref, "v": RECORD_VERSION}
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def encrypt(keyring: Keyring, plaintext: bytes, aad: bytes) -> dict[str, Any]:
    """Encrypt under a fresh data key wrapped by the primary master key; return the record."""
    dek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    return {
        "v": RECORD_VERSION,
        "kid": keyring.primary,
        "wdek": _wrap(keyring, dek, aad),
        "n": _b64e(nonce),
        "ct": _b64e(AESGCM(dek).encrypt(nonce, plaintext, aad)),
    }


def decrypt(keyring: Keyring, record: Any, aad: bytes) -> bytes:
    """The plaintext of ``record``.

    Raises:
        CredentialError: malformed record, unknown key id, or a failed authentication tag
            (wrong key, tampered record, or a record moved to another owner or ref).
    """
    fields = _fields(record)
    dek = _unwrap(keyring, fields, aad)
    try:
        return AESGCM(dek).decrypt(fields["n"], fields["ct"], aad)
    except InvalidTag:
        raise CredentialError("the payload failed authentication (tampered or moved record)") from None


def rewrap(keyring: Keyring, record: Any, aad: bytes) -> dict[str, Any] | None:
    """The record with its data key wrapped by the primary key, or None if it already is.

    ``n`` and ``ct`` are kept as they are: rotation never touches the payload.

    Raises:
        CredentialError: as :func:`decrypt` (the data key must be unwrapped first).
    """
    fields = _fields(record)
    if record["kid"] == keyring.primary:
        return None
    dek = _unwrap(keyring, fields, aad)
    return {**record, "kid": keyring.primary, "wdek": _wrap(keyring, dek, aad)}


def _wrap(keyring: Keyring, dek: bytes, aad: bytes) -> str:
    kek = keyring.key(keyring.primary)
    assert kek is not None  # Keyring guarantees the primary exists
    nonce = os.urandom(NONCE_BYTES)
    return _b64e(nonce + AESGCM(kek).encrypt(nonce, dek, aad + b"|dek"))


def _unwrap(keyring: Keyring, fields: Mapping[str, Any], aad: bytes) -> bytes:
    kid = fields["kid"]
    kek = keyring.key(kid)
    if kek is None:
        raise CredentialError(
            f"the record is wrapped by key id {kid!r}, which {keyring.source} does not hold"
        )
    wrapped = fields["wdek"]
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad + b"|dek")
    except InvalidTag:
        raise CredentialError(
            f"the data key failed authentication under key id {kid!r} (wrong key, tampered or moved record)"
        ) from None


def _fields(record: Any) -> dict[str, Any]:
    """Check the record's shape and decode its binary fields."""
    if not isinstance(record, Mapping) or record.get("v") != RECORD_VERSION:
        raise CredentialError("the record is not a version-1 credential envelope")
    kid = record.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CredentialError("the record has no key id")
    decoded: dict[str, Any] = {"kid": kid}
    for name in ("wdek", "n", "ct"):
        value = record.get(name)
        raw = _b64d(value) if isinstance(value, str) else None
        if raw is None:
            raise CredentialError(f"the record's {name!r} field is not base64")
        decoded[name] = raw
    if len(decoded["wdek"]) != _WRAPPED_BYTES or len(decoded["n"]) != NONCE_BYTES:
        raise CredentialError("the record's wrapped key or nonce has the wrong length")
    if len(decoded["ct"]) < TAG_BYTES:
        raise CredentialError("the record's ciphertext is truncated")
    return decoded


def _decode_key(encoded: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional."""
    text = encoded.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _b64d(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
