"""Where OAuth state lives between requests and processes: pending sign-ins and grants.

Two tables (``sql/0004_oauth.sql``) hold what is not secret and point into the credential
manager for what is:

* a **pending sign-in** is keyed by the SHA-256 of its ``state``; the row holds the discovered
  metadata and the client the authorization used, the credential record its PKCE verifier
  (and the client secret, if any). Taking it deletes it, so a state works once, on any
  process, for ten minutes.
* a **grant** is one per connection: tokens and client in the credential record, and beside
  them in the row the absolute expiry of the access token, the scope, the metadata needed to
  refresh and revoke after a restart, and a lease that lets one process at a time refresh.

Every query is scoped by the owner's (team, user, connection).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core import errors
from mcp_core.credentials import CredentialStore
from mcp_core.store._engine import transaction, writer
from mcp_core.store._tables import oauth_clients, oauth_grants, oauth_pending

logger = logging.getLogger(__name__)

__all__ = ["PENDING_TTL", "Grant", "GrantStore", "Owner", "Pending", "TeamClient", "state_hash"]

PENDING_TTL = timedelta(minutes=10)
"""How long a sign-in link works."""
LEASE_TTL = timedelta(seconds=30)
"""A refresh holding the lease longer than this is taken to have died with its process."""
LEASE_WAIT_S = 20.0
LEASE_POLL_S = 0.1


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class Owner:
    """The verified person and the connection a grant or sign-in belongs to."""

    team_id: str
    user_id: str
    connection_id: uuid.UUID


@dataclass(frozen=True)
class Pending:
    """A sign-in the person started: ``flow`` is the non-secret part (metadata, client id,
    redirect, scope), ``secrets`` the verifier and client record."""

    owner: Owner
    flow: dict[str, Any]
    secrets: dict[str, Any]
    expired: bool


@dataclass
class Grant:
    """A connection's OAuth grant as stored: tokens and client are the SDK's JSON forms."""

    owner: Owner
    tokens: dict[str, Any] | None = None
    client: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    scope: str | None = None


@dataclass(frozen=True)
class TeamClient:
    """A client a workspace admin registered with one MCP server's authorization server."""

    client_id: str
    client_secret: str | None
    client_auth: str
    issuer: str | None
    added_by: str


def _now() -> datetime:
    return datetime.now(UTC)


class GrantStore:
    """Pending sign-ins and grants on the shared engine, secrets in ``credentials``."""

    def __init__(self, engine: AsyncEngine, credentials: CredentialStore | None) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._credentials = credentials

    @property
    def credentials(self) -> CredentialStore:
        if self._credentials is None:
            raise errors.ConfigError("OAuth sign-in needs a credential store to keep tokens in.")
        return self._credentials

    # -- pending sign-ins ------------------------------------------------------------------

    async def add_pending(
        self, owner: Owner, state: str, flow: dict[str, Any], secrets: dict[str, Any]
    ) -> None:
        """Remember a sign-in until its callback arrives (or ``PENDING_TTL`` passes).

        Raises:
            CredentialError, StoreError: it could not be stored (the link must not be shown).
        """
        await self._prune_pending()
        ref = await self.credentials.put(
            owner.team_id, owner.user_id, {"oauth:verifier": json.dumps(secrets)}
        )
        row = {
            "state_hash": state_hash(state),
            "team_id": owner.team_id,
            "user_id": owner.user_id,
            "connection_id": owner.connection_id,
            "credential_ref": ref,
            "flow": flow,
            "expires_at": _now() + PENDING_TTL,
            "created_at": _now(),
        }
        try:
            async with transaction(self._writer) as conn:
                await conn.execute(sa.insert(oauth_pending).values(**row))
        except BaseException:
            await self._forget_record(owner.team_id, owner.user_id, ref)
            raise

    async def take_pending(self, state: str) -> Pending | None:
        """The sign-in ``state`` belongs to, deleted as it is read (a state works once);
        None for a state nobody issued, one already used, or one whose connection is gone."""
        p = oauth_pending.c
        query = sa.delete(oauth_pending).where(p.state_hash == state_hash(state)).returning(*oauth_pending.c)
        async with transaction(self._writer) as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        owner = Owner(row.team_id, row.user_id, row.connection_id)
        secrets: dict[str, Any] = {}
        with suppress(errors.CredentialError, ValueError):
            values = await self.credentials.get(owner.team_id, owner.user_id, row.credential_ref)
            secrets = json.loads(values.get("oauth:verifier", "{}"))
        await self._forget_record(owner.team_id, owner.user_id, row.credential_ref)
        return Pending(owner, dict(row.flow), secrets, expired=row.expires_at < _now())

    async def _prune_pending(self) -> None:
        """Drop sign-ins nobody finished, with their verifiers (best effort)."""
        p = oauth_pending.c
        query = (
            sa.delete(oauth_pending)
            .where(p.expires_at < _now())
            .returning(p.team_id, p.user_id, p.credential_ref)
        )
        try:
            async with transaction(self._writer) as conn:
                rows = (await conn.execute(query)).all()
        except errors.StoreError:
            return
        for row in rows:
            await self._forget_record(row.team_id, row.user_id, row.credential_ref)

    # -- grants ----------------------------------------------------------------------------

    async def load(self, owner: Owner) -> Grant | None:
        """The connection's grant, or None when it has never signed in.

        Raises:
            CredentialError: the tokens could not be read (the connection must sign in again).
        """
        row = await self._row(owner)
        if row is None:
            return None
        values = await self.credentials.get(owner.team_id, owner.user_id, row.credential_ref)
        return Grant(
            owner,
            tokens=_json(values.get("oauth:tokens")),
            client=_json(values.get("oauth:client")),
            metadata=dict(row.metadata or {}),
            expires_at=row.expires_at,
            scope=row.scope,
        )

    async def save(
        self,
        owner: Owner,
        *,
        tokens: dict[str, Any] | None = None,
        client: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        expires_at: datetime | None = None,
        clear_tokens: bool = False,
    ) -> None:
        """Store what changed of a grant (None: keep); ``clear_tokens`` forgets the tokens.

        Raises:
            CredentialError, StoreError: nothing usable was stored.
        """
        row = await self._row(owner)
        values: dict[str, str] = {}
        if row is not None:
            with suppress(errors.CredentialError):
                values = dict(await self.credentials.get(owner.team_id, owner.user_id, row.credential_ref))
        if tokens is not None:
            values["oauth:tokens"] = json.dumps(tokens)
        if client is not None:
            values["oauth:client"] = json.dumps(client)
        if clear_tokens:
            values.pop("oauth:tokens", None)
        ref = await self.credentials.put(
            owner.team_id, owner.user_id, values, ref=row.credential_ref if row is not None else None
        )
        changes: dict[str, Any] = {"updated_at": _now()}
        if metadata is not None:
            changes["metadata"] = metadata
        if tokens is not None:
            changes["expires_at"] = expires_at
            changes["scope"] = tokens.get("scope")
        if clear_tokens:
            changes["expires_at"] = None
        async with transaction(self._writer) as conn:
            if row is None:
                insert = {
                    "connection_id": owner.connection_id,
                    "team_id": owner.team_id,
                    "user_id": owner.user_id,
                    "credential_ref": ref,
                    "metadata": metadata or {},
                    **changes,
                }
                await conn.execute(sa.insert(oauth_grants).values(**insert))
            else:
                await conn.execute(sa.update(oauth_grants).where(*_owned(owner)).values(**changes))

    async def delete(self, owner: Owner) -> None:
        """Forget the grant and its tokens (the connection is being removed or re-signed)."""
        row = await self._row(owner)
        if row is None:
            return
        async with transaction(self._writer) as conn:
            await conn.execute(sa.delete(oauth_grants).where(*_owned(owner)))
        await self._forget_record(owner.team_id, owner.user_id, row.credential_ref)

    @asynccontextmanager
    async def lease(self, owner: Owner) -> AsyncIterator[bool]:
        """Hold the connection's refresh lease while the block runs: one refresh at a time
        across every process. Yields False (run anyway) when the grant has no row yet or the
        lease could not be had within ``LEASE_WAIT_S`` (its holder is stuck; it expires)."""
        holder = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + LEASE_WAIT_S
        got = False
        while True:
            now = _now()
            query = (
                sa.update(oauth_grants)
                .where(
                    *_owned(owner),
                    sa.or_(oauth_grants.c.lease_until.is_(None), oauth_grants.c.lease_until < now),
                )
                .values(lease_holder=holder, lease_until=now + LEASE_TTL)
            )
            async with transaction(self._writer) as conn:
                got = (await conn.execute(query)).rowcount == 1
            if got or await self._row(owner) is None or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(LEASE_POLL_S)
        try:
            yield got
        finally:
            if got:
                release = (
                    sa.update(oauth_grants)
                    .where(*_owned(owner), oauth_grants.c.lease_holder == holder)
                    .values(lease_holder=None, lease_until=None)
                )
                with suppress(errors.StoreError):
                    async with transaction(self._writer) as conn:
                        await conn.execute(release)

    # -- clients admins registered -------------------------------------------------------

    async def save_team_client(self, team_id: str, server_url: str, client: TeamClient) -> None:
        """Keep (or replace) the team's client for ``server_url``; its secret in the credential
        manager under the admin who added it.

        Raises:
            CredentialError, StoreError: nothing was stored.
        """
        old = await self._team_client_row(team_id, server_url)
        ref = None
        if client.client_secret:
            secret = {"oauth:client": json.dumps({"client_secret": client.client_secret})}
            ref = await self.credentials.put(team_id, client.added_by, secret)
        row = {
            "team_id": team_id,
            "server_url": server_url,
            "issuer": client.issuer,
            "client_id": client.client_id,
            "client_auth": client.client_auth,
            "credential_ref": ref,
            "added_by": client.added_by,
            "created_at": _now(),
        }
        c = oauth_clients.c
        async with transaction(self._writer) as conn:
            await conn.execute(
                sa.delete(oauth_clients).where(c.team_id == team_id, c.server_url == server_url)
            )
            await conn.execute(sa.insert(oauth_clients).values(**row))
        if old is not None and old.credential_ref:
            await self._forget_record(team_id, old.added_by, old.credential_ref)

    async def team_client(self, team_id: str, server_url: str) -> TeamClient | None:
        """The client an admin of ``team_id`` registered for exactly ``server_url``, if any."""
        row = await self._team_client_row(team_id, server_url)
        if row is None:
            return None
        secret = None
        if row.credential_ref:
            values = await self.credentials.get(team_id, row.added_by, row.credential_ref)
            secret = (_json(values.get("oauth:client")) or {}).get("client_secret")
        return TeamClient(row.client_id, secret, row.client_auth, row.issuer, row.added_by)

    async def _team_client_row(self, team_id: str, server_url: str) -> Any:
        c = oauth_clients.c
        query = sa.select(oauth_clients).where(c.team_id == team_id, c.server_url == server_url)
        async with transaction(self._engine) as conn:
            return (await conn.execute(query)).first()

    async def _row(self, owner: Owner) -> Any:
        async with transaction(self._engine) as conn:
            return (await conn.execute(sa.select(oauth_grants).where(*_owned(owner)))).first()

    async def _forget_record(self, team_id: str, user_id: str, ref: str) -> None:
        try:
            await self.credentials.delete(team_id, user_id, ref)
        except errors.McpCoreError as exc:
            logger.warning("could not delete an OAuth credential record: %s", type(exc).__name__)


def _owned(owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
    g = oauth_grants.c
    return (g.connection_id == owner.connection_id, g.team_id == owner.team_id, g.user_id == owner.user_id)


def _json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
