"""The Supabase credential backend: Supabase Vault over SQL, or local envelopes without it.

With Vault installed in the database (``vault.create_secret`` exists, see :func:`has_vault`)
each credential is one Vault secret named ``slack-mcp-bot/<team>/<user>/<ref>`` whose secret
is the JSON map of values::

    put    → SELECT vault.create_secret(:secret, :name, :description)
             (an existing name: SELECT id … then vault.update_secret(id, :secret))
    get    → SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = :name
    delete → DELETE FROM vault.secrets WHERE name = :name

The name embeds team and user, so a lookup by another user finds nothing. Without the vault
schema every call goes to the ``fallback`` :class:`LocalCredentialStore` (AES-GCM envelopes in
``mcp_credentials``, the project's own table). Values only ever travel as bound parameters.

Errors never name a secret. The database being out of reach, slow (a timeout, a cancelled
statement), refusing the bot (privileges, login) or failing in any other way is a
:class:`~mcp_core.errors.CredentialBackendError`; only a secret that Vault cannot decrypt
(SQLSTATE class 22 or 39 while reading) or that is not a map of strings is a plain
:class:`~mcp_core.errors.CredentialError`, since only then is the record itself at fault.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_core.credentials.keys import load_keyring
from mcp_core.credentials.local import LocalCredentialStore
from mcp_core.credentials.payload import MAX_REF_CHARS, decode_values, encode_values
from mcp_core.errors import ConfigError, CredentialBackendError, CredentialError
from mcp_core.settings import Settings

__all__ = [
    "NAME_PREFIX",
    "VAULT_TIMEOUT_S",
    "SupabaseCredentialStore",
    "check",
    "has_vault",
    "open_store",
    "secret_name",
]

logger = logging.getLogger(__name__)

NAME_PREFIX = "slack-mcp-bot"
"""First segment of every Vault secret name this backend writes."""
VAULT_TIMEOUT_S = 15.0
"""Upper bound on one Vault operation (the engine's asyncpg command_timeout bounds each statement)."""
DESCRIPTION = "slack-mcp-bot connection credentials"

_HAS_VAULT = sa.text("SELECT to_regprocedure('vault.create_secret(text,text,text,uuid)') IS NOT NULL")
_CREATE = sa.text("SELECT vault.create_secret(:secret, :name, :description)")
_FIND_ID = sa.text("SELECT id FROM vault.secrets WHERE name = :name")
_UPDATE = sa.text("SELECT vault.update_secret(:id, :secret)")
_GET = sa.text("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = :name")
_DELETE = sa.text("DELETE FROM vault.secrets WHERE name = :name")

_DB_ERRORS = (sa.exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
_UNREADABLE_CLASSES = ("22", "39")
"""SQLSTATE classes that, while reading, mean the stored secret does not decrypt: data exception
(pgsodium's "invalid ciphertext", bad UTF-8) and external routine exception (pgcrypto's
"Wrong key or corrupt data")."""


async def has_vault(engine: AsyncEngine) -> bool:
    """Whether the database behind ``engine`` has Supabase Vault's SQL API.

    True when ``vault.create_secret(text,text,text,uuid)`` exists; always False off PostgreSQL.

    Raises:
        CredentialBackendError: the database could not be asked (unreachable, timed out).
    """
    if engine.dialect.name != "postgresql":
        return False
    async with _vault_transaction(engine, "detect Vault") as conn:
        return bool((await conn.execute(_HAS_VAULT)).scalar_one())


def check(settings: Settings) -> None:
    """Refuse a start whose database is not PostgreSQL (Vault lives in Supabase's database).

    Raises:
        ConfigError: DATABASE_URL is unset or not PostgreSQL.
    """
    if settings.database_url is None or not settings.sqlalchemy_url.startswith("postgresql"):
        raise ConfigError(
            "The supabase credential backend needs DATABASE_URL pointing at Supabase's PostgreSQL."
        )


async def open_store(settings: Settings, engine: AsyncEngine) -> SupabaseCredentialStore:
    """Vault when the database has it; otherwise envelopes in the bot's table under CREDENTIAL_KEYS.

    Raises:
        ConfigError: no Vault and no CREDENTIAL_KEYS (a key generated on a hosted file system
            would be lost), or malformed keys.
        CredentialBackendError: the database could not be asked whether it has Vault.
    """
    if await has_vault(engine):
        return SupabaseCredentialStore(engine, fallback=None)
    if settings.credential_keys is None:
        raise ConfigError(
            "Supabase Vault is not enabled in this database, and the fallback (encrypted rows in the "
            "bot's own table) needs CREDENTIAL_KEYS: a key generated on a hosted file system would be lost."
        )
    return SupabaseCredentialStore(engine, fallback=LocalCredentialStore(engine, load_keyring(settings)))


def secret_name(team_id: str, user_id: str, ref: str) -> str:
    """The Vault secret name for one credential: ``slack-mcp-bot/<team>/<user>/<ref>``."""
    return f"{NAME_PREFIX}/{team_id}/{user_id}/{ref}"


class SupabaseCredentialStore:
    """Credentials in Supabase Vault, on a borrowed engine (never disposed here).

    ``engine`` is the Supabase Postgres connection. Whether Vault is there is checked once, on
    first use; without it, every call is delegated to ``fallback`` (or refused with
    :class:`ConfigError` when there is none). Implements
    :class:`~mcp_core.credentials.CredentialStore` and the registry's ``SecretSource``.
    """

    def __init__(self, engine: AsyncEngine, *, fallback: LocalCredentialStore | None) -> None:
        self._engine = engine
        self._fallback = fallback
        self._vault: bool | None = None
        self._detect_lock = asyncio.Lock()

    async def uses_vault(self) -> bool:
        """True if Vault serves this store, False if the fallback does (checked once, then cached).

        Raises:
            ConfigError: no Vault and no fallback.
            CredentialBackendError: the database could not be asked.
        """
        if self._vault is None:
            async with self._detect_lock:
                if self._vault is None:
                    self._vault = await has_vault(self._engine)
                    logger.info(
                        "Supabase credential backend: %s",
                        "Supabase Vault" if self._vault else "no vault schema, local envelope table",
                    )
        if not self._vault and self._fallback is None:
            raise ConfigError(
                "CREDENTIAL_BACKEND=supabase: this database has no Supabase Vault "
                "(vault.create_secret is missing) and no local fallback is configured. "
                "Enable the Vault extension in Supabase or use the local backend."
            )
        return self._vault

    async def put(self, team_id: str, user_id: str, values: Mapping[str, str], ref: str | None = None) -> str:
        """Store ``values`` as one Vault secret; return its ref.

        Without ``ref`` a new one (uuid4 hex) is made. With one, the user's secret under it is
        replaced in place (``vault.update_secret``), or created under that ref.

        Raises:
            ValueError: a key is not ``header:``/``env:``/``query:<name>``, a value is not a
                string, ``ref`` is empty, too long or contains ``/``, or team/user contains
                ``/``. The message never quotes a value.
            ConfigError: no Vault and no fallback.
            CredentialBackendError: Vault (or the fallback's database) failed or timed out;
                nothing was written.
            StoreError: (fallback only) ``ref`` is taken by another owner.
        """
        if not await self.uses_vault():
            assert self._fallback is not None
            return await self._fallback.put(team_id, user_id, values, ref)
        secret = encode_values(values).decode()
        if ref is not None and not _valid_ref(ref):
            raise ValueError(f"A credential ref must have 1 to {MAX_REF_CHARS} characters and no '/'.")
        for part in (team_id, user_id):
            if not part or "/" in part:
                raise ValueError("Team and user ids must be non-empty and contain no '/'.")
        ref = ref or uuid.uuid4().hex
        name = secret_name(team_id, user_id, ref)
        async with _vault_transaction(self._engine, "store", ref) as conn:
            secret_id = (await conn.execute(_FIND_ID, {"name": name})).scalar_one_or_none()
            if secret_id is None:
                params = {"secret": secret, "name": name, "description": DESCRIPTION}
                await conn.execute(_CREATE, params)
            else:
                await conn.execute(_UPDATE, {"id": secret_id, "secret": secret})
        return ref

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> dict[str, str]:
        """The user's values under ``credential_ref``; empty if they have none under it.

        Raises:
            ConfigError: no Vault and no fallback.
            CredentialError: the secret does not decrypt or is not a map of strings.
            CredentialBackendError: Vault (or the fallback's database) failed or timed out.
        """
        if not await self.uses_vault():
            assert self._fallback is not None
            return await self._fallback.get(team_id, user_id, credential_ref)
        if not _valid_owner(team_id, user_id, credential_ref):
            return {}
        name = secret_name(team_id, user_id, credential_ref)
        async with _vault_transaction(self._engine, "read", credential_ref, reading=True) as conn:
            rows = (await conn.execute(_GET, {"name": name})).all()
        if not rows:
            logger.warning("no stored credentials %s for %s/%s", credential_ref, team_id, user_id)
            return {}
        plaintext = rows[0].decrypted_secret
        if plaintext is None:
            raise _logged(CredentialError("Vault returned no decrypted secret"), credential_ref)
        try:
            return decode_values(plaintext)
        except CredentialError as exc:
            raise _logged(exc, credential_ref) from None

    async def delete(self, team_id: str, user_id: str, credential_ref: str) -> bool:
        """Remove the user's secret under ``credential_ref``; False if they had none.

        Raises:
            ConfigError: no Vault and no fallback.
            CredentialBackendError: Vault (or the fallback's database) failed or timed out.
        """
        if not await self.uses_vault():
            assert self._fallback is not None
            return await self._fallback.delete(team_id, user_id, credential_ref)
        if not _valid_owner(team_id, user_id, credential_ref):
            return False
        name = secret_name(team_id, user_id, credential_ref)
        async with _vault_transaction(self._engine, "delete", credential_ref) as conn:
            result = await conn.execute(_DELETE, {"name": name})
        return result.rowcount > 0

    async def aclose(self) -> None:
        """Close the fallback; the engine is borrowed and stays open."""
        if self._fallback is not None:
            await self._fallback.aclose()


@asynccontextmanager
async def _vault_transaction(
    engine: AsyncEngine, action: str, ref: str | None = None, *, reading: bool = False
) -> AsyncIterator[AsyncConnection]:
    """One transaction bounded by :data:`VAULT_TIMEOUT_S`; DB errors become CredentialBackendError,
    except a secret that does not decrypt while ``reading`` (a CredentialError: the record is bad).

    The original exception is not chained: SQLAlchemy's text of it lists the bound parameters,
    which for a write include the secret. Only its class and SQLSTATE are kept, in ``reason``.
    """
    error: CredentialError | None = None
    try:
        async with asyncio.timeout(VAULT_TIMEOUT_S), engine.begin() as conn:
            yield conn
    except TimeoutError:
        reason = f"Supabase Vault did not answer within {VAULT_TIMEOUT_S:g}s ({action})"
        error = CredentialBackendError(reason)
    except _DB_ERRORS as exc:
        reason = f"Supabase Vault failed to {action}: {_describe(exc)}"
        sqlstate = _sqlstate(exc) or ""
        unreadable = reading and sqlstate[:2] in _UNREADABLE_CLASSES
        error = CredentialError(reason) if unreadable else CredentialBackendError(reason)
    if error is not None:
        raise _logged(error, ref)


def _logged(error: CredentialError, ref: str | None) -> CredentialError:
    logger.warning("Supabase credentials %s: %s", ref or "-", error.reason)
    return error


def _describe(exc: BaseException) -> str:
    """Class name and SQLSTATE of a database error, never its message or parameters."""
    original = getattr(exc, "orig", None) or exc
    cause = getattr(original, "__cause__", None)
    sqlstate = _sqlstate(exc)
    name = type(cause).__name__ if isinstance(cause, asyncpg.PostgresError) else type(original).__name__
    return f"{name} (SQLSTATE {sqlstate})" if sqlstate else name


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (SQLAlchemy's wrapper, asyncpg's error, or none)."""
    original = getattr(exc, "orig", None) or exc
    cause = getattr(original, "__cause__", None)
    return getattr(original, "sqlstate", None) or getattr(cause, "sqlstate", None)


def _valid_ref(ref: str) -> bool:
    return 0 < len(ref) <= MAX_REF_CHARS and "/" not in ref


def _valid_owner(team_id: str, user_id: str, ref: str) -> bool:
    """False for ids that no put could have stored (so get/delete find nothing)."""
    return bool(team_id) and bool(user_id) and "/" not in team_id + user_id and _valid_ref(ref)
