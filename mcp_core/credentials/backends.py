"""Which credential backend to use, and why; building it.

``CREDENTIAL_BACKEND`` wins when set. Otherwise the environment decides, in this order: a
``.env`` file in the working directory means a local install (local); ``GOOGLE_CLOUD_PROJECT``
means Google Cloud (gcp); ``AWS_LAMBDA_FUNCTION_NAME`` or ``AWS_EXECUTION_ENV`` means AWS
(aws); a ``DATABASE_URL`` on a Supabase host means Supabase (supabase); anything else is local.
The choice and its reason are logged and shown by ``slack-mcp-bot check``.

The cloud backends live in modules that import their SDK at the top (boto3, the Google client,
asyncpg). Those SDKs are optional extras of the package (``[aws]``, ``[gcp]``, ``[postgres]``), so
a module is imported only once its backend is selected (:func:`backend_module`), and a missing
extra is a ``ConfigError`` naming the ``pip install`` that fixes it, not an ``ImportError``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials._crypto import Keyring
from mcp_core.credentials._protocol import CredentialStore
from mcp_core.credentials.keys import describe_keys, load_keyring, load_or_create_keyring
from mcp_core.credentials.local import LocalCredentialStore
from mcp_core.errors import ConfigError
from mcp_core.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["Selection", "backend_module", "describe_backend", "detect_backend", "open_backend", "preflight"]

SUPABASE_HOST_SUFFIXES = (".supabase.co", ".supabase.com")

CLOUD_BACKENDS: dict[str, tuple[str, str]] = {
    "gcp": ("mcp_core.credentials.gcp", "gcp"),
    "aws": ("mcp_core.credentials.aws", "aws"),
    "supabase": ("mcp_core.credentials.supabase", "postgres"),
}
"""Each cloud backend's module and the package extra that installs the SDK it imports."""


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


def backend_module(selection: Selection) -> ModuleType:
    """Import the module of the selected cloud backend (the only place that does).

    Raises:
        ConfigError: the SDK the backend needs is not installed; the message names the extra.
    """
    module_name, extra = CLOUD_BACKENDS[selection.backend]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("mcp_core"):
            raise
        if selection.reason == "CREDENTIAL_BACKEND is set":
            who = f"CREDENTIAL_BACKEND={selection.backend}"
        else:
            who = f"The {selection.backend} credential backend ({selection.reason})"
        raise ConfigError(
            f"{who} needs the {extra} extra: pip install 'slack-mcp-bot[{extra}]' "
            f"(module {exc.name} is not installed)."
        ) from exc


def describe_backend(selection: Selection, settings: Settings) -> str:
    """One line for ``slack-mcp-bot check``; generates no key and touches no database.

    Raises:
        ConfigError: the backend cannot work here (missing extra, setting or malformed key).
    """
    if selection.backend == "local":
        return describe_keys(settings)
    preflight(selection, settings)
    return f"the {CLOUD_BACKENDS[selection.backend][1]} extra is installed"


KeyState = tuple[Keyring, Path | None]
"""A loaded keyring and, when it was generated just now, the file it was written to."""


def preflight(selection: Selection, settings: Settings) -> KeyState | None:
    """Check what can be checked before the database is touched (keys, required settings).

    Returns the local backend's keys (loaded or generated once here), for ``open_backend``.

    Raises:
        ConfigError: the chosen backend cannot work with this configuration, or its extra is
            not installed.
    """
    if selection.backend == "local":
        return load_or_create_keyring(settings)
    backend_module(selection)
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
    """Build the chosen backend (after migrations). A cloud backend's module, and so its SDK, is
    imported only here and in ``preflight``, so a local install never loads gRPC or botocore.

    Raises:
        ConfigError: as for ``preflight``; Supabase without Vault also needs CREDENTIAL_KEYS.
    """
    backend = selection.backend
    if backend == "local":
        keyring, generated = keys or load_or_create_keyring(settings)
        return LocalCredentialStore(engine, keyring, generated_key_path=generated)
    module = backend_module(selection)
    if backend == "gcp":
        project = settings.google_cloud_project or os.environ["GOOGLE_CLOUD_PROJECT"]
        return module.GcpCredentialStore(project)
    if backend == "aws":
        return module.AwsCredentialStore(prefix=settings.aws_secrets_prefix)
    if await module.has_vault(engine):
        return module.SupabaseCredentialStore(engine, fallback=None)
    if settings.credential_keys is None:
        raise ConfigError(
            "Supabase Vault is not enabled in this database, and the fallback (encrypted rows in the "
            "bot's own table) needs CREDENTIAL_KEYS: a key generated on a hosted file system would be lost."
        )
    return module.SupabaseCredentialStore(
        engine, fallback=LocalCredentialStore(engine, load_keyring(settings))
    )
