"""The credential manager: users' secrets, encrypted at rest, handed only to their own connection.

A secret is stored first and the connection then created with the returned ref::

    ref = await credentials.put(team_id, user_id, {"header:Authorization": "Bearer …"})
    await registry.add_connection(team_id, user_id, NewConnection(..., credential_ref=ref))
    ...
    await credentials.delete(team_id, user_id, ref)          # on disconnect

Keys say where each value goes: ``header:<Name>``, ``env:<NAME>`` or ``query:<name>``. The
local backend (the default, :class:`LocalCredentialStore`) keeps AES-256-GCM envelopes in the
project's database under master keys from ``CREDENTIAL_KEYS`` or ``DATA_DIR/credential.key``;
the others are rows of :data:`BACKENDS` (see ``backends``).
"""

from __future__ import annotations

from mcp_core.credentials._crypto import Keyring, parse_keyring
from mcp_core.credentials._protocol import CredentialStore
from mcp_core.credentials.backends import (
    BACKENDS,
    Backend,
    Selection,
    describe_backend,
    detect_backend,
    open_backend,
    preflight,
)
from mcp_core.credentials.keys import describe_keys, load_keyring, load_or_create_keyring
from mcp_core.credentials.local import LocalCredentialStore, RotationReport
from mcp_core.errors import ConfigError
from mcp_core.settings import Settings
from mcp_core.store import create_engine, migrate

__all__ = [
    "BACKENDS",
    "Backend",
    "CredentialStore",
    "Keyring",
    "LocalCredentialStore",
    "RotationReport",
    "Selection",
    "describe_backend",
    "describe_keys",
    "detect_backend",
    "load_keyring",
    "load_or_create_keyring",
    "open_backend",
    "parse_keyring",
    "preflight",
    "rotate_credentials",
]


def _require_local_backend(settings: Settings) -> None:
    """Key rotation is about the local backend's envelopes; cloud stores rotate their own keys.

    Raises:
        ConfigError: the configured or detected backend is not local.
    """
    selection = detect_backend(settings)
    if selection.backend != "local":
        raise ConfigError(
            f"The credential backend is {selection.backend} ({selection.reason}): its secrets are "
            "encrypted by the provider, which rotates its own keys. `credentials rotate` re-wraps "
            "the local backend's records only."
        )


async def rotate_credentials(settings: Settings) -> RotationReport:
    """Re-wrap every stored record under the primary key of CREDENTIAL_KEYS (for the CLI).

    Put the new key first and keep the old one: ``CREDENTIAL_KEYS=k2:<new>,k1:<old>``. When
    the report has no failures, the old key can be removed. Never generates a key.

    Raises:
        ConfigError: another backend is configured, or no (or a malformed) key is configured.
        StoreError: the migrations could not run.
        CredentialBackendError: the database failed while re-wrapping; batches committed
            before stay re-wrapped.
    """
    _require_local_backend(settings)
    keyring = load_keyring(settings)
    engine = create_engine(settings)
    try:
        await migrate(engine)
        return await LocalCredentialStore(engine, keyring).rotate()
    finally:
        await engine.dispose()
