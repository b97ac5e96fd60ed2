"""The local credential backend: encrypted envelopes in the project's own database.

Each ``put`` encrypts the values under a fresh data key wrapped by the primary master key
(see ``_crypto``) and stores the envelope in ``mcp_credentials`` under an opaque ref. Every
query is scoped by (team_id, user_id) and ref, and the ciphertext is bound to all three, so
neither a guessed ref nor a row copied in the database yields another user's secret.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_core.credentials._crypto import Keyring, aad_for, decrypt, encrypt, rewrap
from mcp_core.credentials.keys import describe_keys, load_or_create_keyring
from mcp_core.credentials.payload import MAX_REF_CHARS, decode_values, encode_values
from mcp_core.errors import CredentialBackendError, CredentialError, StoreError
from mcp_core.settings import Settings
from mcp_core.store._engine import check_engine, transaction, writer
from mcp_core.store._tables import credentials

__all__ = ["LocalCredentialStore", "RotationReport", "check", "open_store"]

logger = logging.getLogger(__name__)

ROTATE_BATCH = 200
"""Records re-wrapped per transaction during rotation (their rows are locked meanwhile)."""


@dataclass(frozen=True)
class RotationReport:
    """What :meth:`LocalCredentialStore.rotate` did.

    ``failed`` lists the refs whose data key could not be unwrapped (their key id is no longer
    configured, or the record was tampered with); they are left as they were.
    """

    rewrapped: int
    already_current: int
    failed: tuple[str, ...] = ()


def check(settings: Settings) -> str:
    """Where the master keys come from, for ``slack-mcp-bot check``; generates no key.

    Raises:
        ConfigError: CREDENTIAL_KEYS or the key file is malformed, or the key file is unsafe.
    """
    return describe_keys(settings)


async def open_store(settings: Settings, engine: AsyncEngine) -> LocalCredentialStore:
    """The local backend on the bot's own database; the key file is generated here on a first start.

    Raises:
        ConfigError: as :func:`check`, or the key file cannot be written.
    """
    return LocalCredentialStore(engine, load_or_create_keyring(settings))


class LocalCredentialStore:
    """Encrypted credentials in ``mcp_credentials``, on a borrowed engine (never disposed here).

    Implements :class:`~mcp_core.credentials.CredentialStore` and the registry's
    ``SecretSource``.

    Raises:
        ConfigError: the engine is not PostgreSQL or SQLite from ``create_engine``.
    """

    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        check_engine(engine)
        self._engine = engine
        self._writer = writer(engine)
        self._keyring = keyring

    async def put(self, team_id: str, user_id: str, values: Mapping[str, str], ref: str | None = None) -> str:
        """Encrypt and store ``values``; return their ref.

        Without ``ref`` a new opaque ref is made. With one, the user's record under it is
        replaced (or created under that ref); the next session opened uses the new values.

        Raises:
            ValueError: a key is not ``header:``/``env:``/``query:<name>``, a value is not a
                string, or ``ref`` is empty or too long. The message never quotes a value.
            CredentialBackendError: the database did not answer or failed; nothing was written.
            StoreError: ``ref`` is taken by another owner; nothing was written.
        """
        payload = encode_values(values)
        if ref is not None and not 0 < len(ref) <= MAX_REF_CHARS:
            raise ValueError(f"A credential ref must have 1 to {MAX_REF_CHARS} characters.")
        replacing = ref is not None
        ref = ref or str(uuid.uuid4())
        record = encrypt(self._keyring, payload, aad_for(team_id, user_id, ref))
        now = datetime.now(UTC)
        async with _database(self._writer, "store") as conn:
            if replacing:
                replace = sa.update(credentials).where(*_owned(team_id, user_id, ref))
                result = await conn.execute(replace.values(record=record, updated_at=now))
                if result.rowcount:
                    return ref
            row = {"ref": ref, "team_id": team_id, "user_id": user_id, "record": record}
            await conn.execute(sa.insert(credentials).values(**row, created_at=now, updated_at=now))
        return ref

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> dict[str, str]:
        """The user's values under ``credential_ref``; empty if they have none under it.

        Raises:
            CredentialError: the record cannot be decrypted (master key missing or wrong,
                record tampered with or moved from another owner or ref).
            CredentialBackendError: the database did not answer or failed.
        """
        query = sa.select(credentials.c.record).where(*_owned(team_id, user_id, credential_ref))
        async with _database(self._engine, "read") as conn:
            record = (await conn.execute(query)).scalar_one_or_none()
        if record is None:
            logger.warning("no stored credentials %s for %s/%s", credential_ref, team_id, user_id)
            return {}
        try:
            return decode_values(decrypt(self._keyring, record, aad_for(team_id, user_id, credential_ref)))
        except CredentialError as exc:
            logger.warning(
                "stored credentials %s of %s/%s cannot be decrypted: %s",
                credential_ref,
                team_id,
                user_id,
                exc.reason,
            )
            raise

    async def delete(self, team_id: str, user_id: str, credential_ref: str) -> bool:
        """Remove the user's record under ``credential_ref``; False if they had none.

        Raises:
            CredentialBackendError: the database did not answer or failed.
        """
        query = sa.delete(credentials).where(*_owned(team_id, user_id, credential_ref))
        async with _database(self._writer, "delete") as conn:
            result = await conn.execute(query)
        return result.rowcount > 0

    async def aclose(self) -> None:
        """Nothing to release: the engine is borrowed."""

    async def rotate(self, *, batch_size: int = ROTATE_BATCH) -> RotationReport:
        """Re-wrap every record's data key under the primary master key.

        Payload ciphertexts are not touched. Records already on the primary key are counted,
        not rewritten; records that cannot be unwrapped are reported in ``failed`` and left as
        they were. Each batch is one transaction, so an interrupted rotation can simply be run
        again. Retire an old key only once ``failed`` is empty and a rerun re-wraps nothing.

        Raises:
            CredentialBackendError: the database did not answer or failed; batches committed
                before stay re-wrapped.
        """
        rewrapped = already_current = 0
        failed: list[str] = []
        after = ""
        columns = (credentials.c.ref, credentials.c.team_id, credentials.c.user_id, credentials.c.record)
        while True:
            page = (
                sa.select(*columns)
                .where(credentials.c.ref > after)
                .order_by(credentials.c.ref)
                .limit(batch_size)
                .with_for_update()
            )
            async with _database(self._writer, "re-wrap") as conn:
                rows = (await conn.execute(page)).all()
                updates: list[dict[str, Any]] = []
                for ref, team_id, user_id, record in rows:
                    try:
                        new = rewrap(self._keyring, record, aad_for(team_id, user_id, ref))
                    except CredentialError as exc:
                        logger.warning("cannot re-wrap stored credentials %s: %s", ref, exc.reason)
                        failed.append(ref)
                        continue
                    if new is None:
                        already_current += 1
                    else:
                        updates.append({"b_ref": ref, "b_team": team_id, "b_user": user_id, "b_record": new})
                if updates:
                    await conn.execute(_REWRAP.values(updated_at=datetime.now(UTC)), updates)
                    rewrapped += len(updates)
            if len(rows) < batch_size:
                break
            after = rows[-1].ref
        report = RotationReport(rewrapped, already_current, tuple(failed))
        logger.info(
            "credential rotation to key %r: %d re-wrapped, %d already current, %d failed",
            self._keyring.primary,
            report.rewrapped,
            report.already_current,
            len(report.failed),
        )
        return report


_REWRAP = (
    sa.update(credentials)
    .where(
        credentials.c.ref == sa.bindparam("b_ref"),
        credentials.c.team_id == sa.bindparam("b_team"),
        credentials.c.user_id == sa.bindparam("b_user"),
    )
    .values(record=sa.bindparam("b_record", type_=credentials.c.record.type))
)


@asynccontextmanager
async def _database(engine: AsyncEngine, action: str) -> AsyncIterator[AsyncConnection]:
    """One :func:`transaction`; the database being down or failing is a CredentialBackendError.

    A refused write (a ref another owner holds) stays a ``StoreError``: nothing is out of reach.
    """
    try:
        async with transaction(engine) as conn:
            yield conn
    except StoreError as exc:
        if isinstance(exc.__cause__, sa.exc.IntegrityError):
            raise
        reason = f"the credential database failed to {action}: {type(exc.__cause__ or exc).__name__}"
        logger.warning("%s", reason)
        raise CredentialBackendError(reason) from exc


def _owned(team_id: str, user_id: str, ref: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        credentials.c.ref == ref,
        credentials.c.team_id == team_id,
        credentials.c.user_id == user_id,
    )
