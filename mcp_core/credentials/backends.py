"""The table of credential backends: which to use, and why; checking and building it.

Each backend is one module and one row of :data:`BACKENDS`. The row says what can be known
without importing the module: its name, the package extra that installs the SDK it imports,
and how the environment reveals it. The module holds a
:class:`~mcp_core.credentials.CredentialStore` and the two functions of
:class:`~mcp_core.credentials._protocol.BackendModule`: ``check(settings)`` (refuse what cannot
work, before the database is touched) and ``open_store(settings, engine)`` (build it). Adding a
backend is that module plus a row here (and its name in ``Settings.credential_backend``).

``CREDENTIAL_BACKEND`` wins when set. Otherwise the rows are asked in order and the first
whose ``detect`` gives a reason is chosen: a ``.env`` file in the working directory means a
local install (local); ``GOOGLE_CLOUD_PROJECT`` means Google Cloud (gcp);
``AWS_LAMBDA_FUNCTION_NAME`` or ``AWS_EXECUTION_ENV`` means AWS (aws); a ``DATABASE_URL`` on a
Supabase host means Supabase (supabase); anything else is local. The choice and its reason
are logged and shown by ``slack-mcp-bot check``.

The cloud modules import their SDK at the top (boto3, the Google client, asyncpg); those SDKs
are optional extras of the package (``[aws]``, ``[gcp]``, ``[postgres]``), so a module is
imported only once its backend is selected (:func:`backend_module`, the only place that
imports one), and a missing extra is a ``ConfigError`` naming the ``pip install`` that fixes
it, not an ``ImportError``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials._protocol import BackendModule, CredentialStore
from mcp_core.errors import ConfigError
from mcp_core.settings import Settings

__all__ = [
    "BACKENDS",
    "Backend",
    "Selection",
    "backend_module",
    "describe_backend",
    "detect_backend",
    "open_backend",
    "preflight",
]

CONFIGURED = "CREDENTIAL_BACKEND is set"
"""The reason of a backend chosen by CREDENTIAL_BACKEND rather than detected."""
DEFAULT_BACKEND = "local"
SUPABASE_HOST_SUFFIXES = (".supabase.co", ".supabase.com")

Detect = Callable[[Settings, Mapping[str, str], Path], str | None]
"""``(settings, environ, cwd)`` → why the environment means this backend, or None."""


@dataclass(frozen=True)
class Backend:
    """One row of :data:`BACKENDS`: what is known about a backend without importing it."""

    name: str
    module: str
    """The module holding the store, ``check`` and ``open_store``; imported only when chosen."""
    extra: str | None = None
    """The package extra that installs the SDK the module imports; None when the core has it."""
    detect: Detect | None = None
    """How the environment reveals this backend; None for one that is only ever configured."""


@dataclass(frozen=True)
class Selection:
    backend: str
    reason: str


def _dotenv_file(settings: Settings, environ: Mapping[str, str], cwd: Path) -> str | None:
    return "a .env file is present (local install)" if (cwd / ".env").is_file() else None


def _google_cloud(settings: Settings, environ: Mapping[str, str], cwd: Path) -> str | None:
    if settings.google_cloud_project or environ.get("GOOGLE_CLOUD_PROJECT"):
        return "GOOGLE_CLOUD_PROJECT is set"
    return None


def _aws_runtime(settings: Settings, environ: Mapping[str, str], cwd: Path) -> str | None:
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_EXECUTION_ENV"):
        if environ.get(name):
            return f"{name} is set"
    return None


def _supabase_database(settings: Settings, environ: Mapping[str, str], cwd: Path) -> str | None:
    if settings.database_url is None:
        return None
    host = urlsplit(settings.database_url.get_secret_value()).hostname or ""
    return "DATABASE_URL points at Supabase" if host.endswith(SUPABASE_HOST_SUFFIXES) else None


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("local", "mcp_core.credentials.local", detect=_dotenv_file),
        Backend("gcp", "mcp_core.credentials.gcp", "gcp", _google_cloud),
        Backend("aws", "mcp_core.credentials.aws", "aws", _aws_runtime),
        Backend("supabase", "mcp_core.credentials.supabase", "postgres", _supabase_database),
    )
}
"""Every backend by name, in the order the environment is asked (the first reason wins)."""


def detect_backend(
    settings: Settings, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Selection:
    """Pick the backend from CREDENTIAL_BACKEND or, when unset, from the environment."""
    if settings.credential_backend:
        return Selection(settings.credential_backend, CONFIGURED)
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    for backend in BACKENDS.values():
        if backend.detect is not None and (reason := backend.detect(settings, environ, cwd)):
            return Selection(backend.name, reason)
    return Selection(DEFAULT_BACKEND, "no cloud environment detected")


def backend_module(selection: Selection) -> BackendModule:
    """Import the module of the selected backend (the only place that does).

    Raises:
        ConfigError: the backend is unknown, or the SDK it needs is not installed (the message
            names the extra).
    """
    backend = BACKENDS.get(selection.backend)
    if backend is None:
        raise ConfigError(
            f"There is no {selection.backend!r} credential backend; choose one of {', '.join(BACKENDS)}."
        )
    try:
        return cast(BackendModule, importlib.import_module(backend.module))
    except ModuleNotFoundError as exc:
        if backend.extra is None or (exc.name or "").startswith("mcp_core"):
            raise
        if selection.reason == CONFIGURED:
            who = f"CREDENTIAL_BACKEND={selection.backend}"
        else:
            who = f"The {selection.backend} credential backend ({selection.reason})"
        raise ConfigError(
            f"{who} needs the {backend.extra} extra: pip install 'slack-mcp-bot[{backend.extra}]' "
            f"(module {exc.name} is not installed)."
        ) from exc


def preflight(selection: Selection, settings: Settings) -> str | None:
    """Check what can be checked before the database is touched (extra, keys, required
    settings); creates nothing. Returns the backend's detail for ``slack-mcp-bot check``.

    Raises:
        ConfigError: the chosen backend cannot work with this configuration, or its extra is
            not installed.
    """
    return backend_module(selection).check(settings)


def describe_backend(selection: Selection, settings: Settings) -> str:
    """One line for ``slack-mcp-bot check``; generates no key and touches no database.

    Raises:
        ConfigError: the backend cannot work here (missing extra, setting or malformed key).
    """
    detail = preflight(selection, settings)
    return detail or f"the {BACKENDS[selection.backend].extra} extra is installed"


async def open_backend(selection: Selection, settings: Settings, engine: AsyncEngine) -> CredentialStore:
    """Build the chosen backend on ``engine`` (after migrations; the store borrows it).

    Raises:
        ConfigError: as for ``preflight``, or what the backend needs at start is missing (the
            local backend's key file cannot be written; Supabase without Vault needs
            CREDENTIAL_KEYS).
        CredentialBackendError: the store had to be asked something and could not be reached.
    """
    return await backend_module(selection).open_store(settings, engine)
