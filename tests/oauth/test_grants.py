"""Pending sign-ins and grants: single use, expiry, isolation, secrets only encrypted, the lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.models import Connection
from mcp_core.oauth import GrantStore, Owner
from mcp_core.oauth import grants as grants_module
from mcp_core.store import Store
from mcp_core.store._tables import credentials, oauth_grants, oauth_pending

from .conftest import OTHER_USER

pytestmark = pytest.mark.anyio

VERIFIER = "verifier-" + "x" * 60
ACCESS, REFRESH = "at-secret-41f1d0", "rt-secret-9c22ab"


def owner_of(connection: Connection, user: str | None = None) -> Owner:
    return Owner(connection.team_id, user or connection.user_id, connection.id)


async def dump(engine: AsyncEngine) -> str:
    """Every row of the OAuth and credential tables as text, to grep for secrets."""
    async with engine.connect() as conn:
        rows = []
        for table in (oauth_pending, oauth_grants, credentials):
            rows += [str(tuple(row)) for row in (await conn.execute(sa.select(table))).all()]
    return "\n".join(rows)


async def test_a_sign_in_state_works_once(grants: GrantStore, connection: Connection) -> None:
    await grants.add_pending(owner_of(connection), "state-1", {"scope": "read"}, {"code_verifier": VERIFIER})
    taken = await grants.take_pending("state-1")
    assert taken is not None
    assert not taken.expired
    assert taken.owner == owner_of(connection)
    assert taken.flow == {"scope": "read"}
    assert taken.secrets == {"code_verifier": VERIFIER}
    assert await grants.take_pending("state-1") is None


async def test_an_unknown_state_finds_nothing(grants: GrantStore, connection: Connection) -> None:
    await grants.add_pending(owner_of(connection), "state-1", {}, {"code_verifier": VERIFIER})
    assert await grants.take_pending("state-2") is None
    assert await grants.take_pending("") is None


async def test_a_state_past_its_ten_minutes_is_expired_and_gone(
    grants: GrantStore, engine: AsyncEngine, connection: Connection
) -> None:
    await grants.add_pending(owner_of(connection), "old", {}, {"code_verifier": VERIFIER})
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(oauth_pending).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    taken = await grants.take_pending("old")
    assert taken is not None
    assert taken.expired
    assert await grants.take_pending("old") is None


async def test_expired_sign_ins_are_pruned_with_their_verifiers(
    grants: GrantStore, engine: AsyncEngine, connection: Connection
) -> None:
    await grants.add_pending(owner_of(connection), "old", {}, {"code_verifier": VERIFIER})
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(oauth_pending).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    await grants.add_pending(owner_of(connection), "new", {}, {"code_verifier": "other-verifier"})
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(oauth_pending))).scalar() == 1
        assert (await conn.execute(sa.select(sa.func.count()).select_from(credentials))).scalar() == 1


async def test_the_database_holds_no_state_verifier_or_token_in_clear(
    grants: GrantStore, engine: AsyncEngine, connection: Connection
) -> None:
    await grants.add_pending(owner_of(connection), "state-secret-77", {}, {"code_verifier": VERIFIER})
    await grants.save(owner_of(connection), tokens={"access_token": ACCESS, "refresh_token": REFRESH})
    text = await dump(engine)
    for secret in ("state-secret-77", VERIFIER, ACCESS, REFRESH):
        assert secret not in text


async def test_a_grant_round_trips_and_is_only_its_owners(grants: GrantStore, connection: Connection) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    await grants.save(
        owner_of(connection),
        tokens={"access_token": ACCESS, "refresh_token": REFRESH, "scope": "read"},
        client={"client_id": "c1"},
        metadata={"oauth": {"issuer": "https://as.example.com"}},
        expires_at=expires,
    )
    grant = await grants.load(owner_of(connection))
    assert grant is not None
    assert grant.tokens == {"access_token": ACCESS, "refresh_token": REFRESH, "scope": "read"}
    assert grant.client == {"client_id": "c1"}
    assert grant.scope == "read"
    assert grant.metadata["oauth"]["issuer"] == "https://as.example.com"
    assert grant.expires_at is not None
    assert abs((grant.expires_at - expires).total_seconds()) < 0.01
    assert await grants.load(owner_of(connection, OTHER_USER)) is None


async def test_clearing_tokens_keeps_the_client(grants: GrantStore, connection: Connection) -> None:
    owner = owner_of(connection)
    await grants.save(owner, tokens={"access_token": ACCESS}, client={"client_id": "c1"})
    await grants.save(owner, clear_tokens=True)
    grant = await grants.load(owner)
    assert grant is not None
    assert grant.tokens is None
    assert grant.client == {"client_id": "c1"}


async def test_removing_the_connection_removes_its_grant_and_sign_ins(
    grants: GrantStore, engine: AsyncEngine, connection: Connection
) -> None:
    owner = owner_of(connection)
    await grants.save(owner, tokens={"access_token": ACCESS})
    await grants.add_pending(owner, "s", {}, {"code_verifier": VERIFIER})
    await grants.delete(owner)
    await Store(engine).delete_connection(connection.team_id, connection.user_id, connection.id)
    assert await grants.load(owner) is None
    assert await grants.take_pending("s") is None


async def test_one_refresh_lease_at_a_time(grants: GrantStore, connection: Connection) -> None:
    owner = owner_of(connection)
    await grants.save(owner, tokens={"access_token": ACCESS})
    order: list[str] = []

    async def hold(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with grants.lease(owner) as got:
            assert got
            order.append(f"{name} in")
            await asyncio.sleep(0.3)
            order.append(f"{name} out")

    await asyncio.gather(hold("first", 0), hold("second", 0.05))
    assert order == ["first in", "first out", "second in", "second out"]


async def test_a_lease_left_by_a_dead_process_is_taken_over(
    grants: GrantStore, engine: AsyncEngine, connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = owner_of(connection)
    await grants.save(owner, tokens={"access_token": ACCESS})
    async with engine.begin() as conn:  # a holder that died a minute ago
        stale = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(sa.update(oauth_grants).values(lease_holder="dead", lease_until=stale))
    monkeypatch.setattr(grants_module, "LEASE_WAIT_S", 1.0)
    async with grants.lease(owner) as got:
        assert got
