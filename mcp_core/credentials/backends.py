"""Which credential backend to use, and why; building it.

``CREDENTIAL_BACKEND`` wins when set. Otherwise the environment decides, in this order: a
``.env`` file in the working directory means a local install (local); ``GOOGLE_CLOUD_PROJECT``
means Google Cloud (gcp); ``AWS_LAMBDA_FUNCTION_NAME`` or ``AWS_EXECUTION_ENV`` means AWS
(aws); a ``DATABASE_URL`` on a Supabase host means Supabase (supabase); anything else is local.
The choice and its reason are logged and shown by ``slack-mcp-bot check``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials._crypto import Keyring
from mcp_core.credentials._protocol import CredentialStore
from mcp_core.credentials.keys import load_keyring, load_or_create_keyring
from mcp_core.credentials.local import LocalCredentialStore
from mcp_core.errors import ConfigError
from mcp_core.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["Selection", "detect_backend", "open_backend"]

SUPABASE_HOST_SUFFIXES = (".supabase.co", ".supabase.com")


@dataclass(frozen=True)
class Selection:
    backend: str
    reason: str


def detect_backend(
    settings: Settings, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Selection:
    """Pick the backend from CREDENTIAL_BACKEND or, when unset, from the environment."""
    if settings.credential_backend:
        return Selection(settings.credential_backend, "CREDENTIAL_BACKEND is set")
    environ = os.environ if environ is None else environ
    if ((cwd or Path.cwd()) / ".env").is_file():
        return Selection("local", "a .env file is present (local install)")
    if settings.google_cloud_project or environ.get("GOOGLE_CLOUD_PROJECT"):
        return Selection("gcp", "GOOGLE_CLOUD_PROJECT is set")
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_EXECUTION_ENV"):
        if environ.get(name):
            return Selection("aws", f"{name} is set")
    if settings.database_url is not None:
        host = urlsplit(settings.database_url.get_secret_value()).hostname or ""
        if host.endswith(SUPABASE_HOST_SUFFIXES):
            return Selection("supabase", "DATABASE_URL points at Supabase")
    return Selection("local", "no cloud environment detected")


KeyState = tuple[Keyring, Path | None]
"""A loaded keyring and, when it was generated just now, the file it was written to."""


def preflight(selection: Selection, settings: Settings) -> KeyState | None:
    """Check what can be checked before the database is touched (keys, required settings).

    Returns the local backend's keys (loaded or generated once here), for ``open_backend``.

    Raises:
        ConfigError: the chosen backend cannot work with this configuration.
    """
    if selection.backend == "local":
        return load_or_create_keyring(settings)
    if selection.backend == "gcp" and not (
        settings.google_cloud_project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    ):
        raise ConfigError("The gcp credential backend needs GOOGLE_CLOUD_PROJECT.")
    if selection.backend == "supabase" and (
        settings.database_url is None or not settings.sqlalchemy_url.startswith("postgresql")
    ):
        raise ConfigError(
            "The supabase credential backend needs DATABASE_URL pointing at Supabase's PostgreSQL."
        )
    return None


async def open_backend(
    selection: Selection, settings: Settings, engine: AsyncEngine, keys: KeyState | None = None
) -> CredentialStore:
    """Build the chosen backend (after migrations). The cloud SDKs are imported only here, so
    a local install never pays for loading gRPC or botocore.

    Raises:
        ConfigError: as for ``preflight``; Supabase without Vault also needs CREDENTIAL_KEYS.
    """
    backend = selection.backend
    if backend == "local":
        keyring, generated = keys or load_or_create_keyring(settings)
        return LocalCredentialStore(engine, keyring, generated_key_path=generated)
    if backend == "gcp":
        from mcp_core.credentials.gcp import GcpCredentialStore

        project = settings.google_cloud_project or os.environ["GOOGLE_CLOUD_PROJECT"]
        return GcpCredentialStore(project)
    if backend == "aws":
        from mcp_core.credentials.aws import AwsCredentialStore

        return AwsCredentialStore(prefix=settings.aws_secrets_prefix)
    from mcp_core.credentials.supabase import SupabaseCredentialStore, has_vault

    if await has_vault(engine):
        return SupabaseCredentialStore(engine, fallback=None)
    if settings.credential_keys is None:
        raise ConfigError(
            "Supabase Vault is not enabled in this database, and the fallback (encrypted rows in the "
            "bot's own table) needs CREDENTIAL_KEYS: a key generated on a hosted file system would be lost."
        )
    return SupabaseCredentialStore(engine, fallback=LocalCredentialStore(engine, load_keyring(settings)))
