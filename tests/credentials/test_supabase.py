"""The Supabase credential backend against real PostgreSQL: Vault (via the pgcrypto shim) and the fallback.

``tests/support/vault_shim.sql`` gives a throwaway database Vault's SQL surface (same
signatures as supabase_vault 0.3.x); without it the store must use the local envelope table.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials import LocalCredentialStore, parse_keyring
from mcp_core.credentials import supabase as supabase_module
from mcp_core.credentials.supabase import SupabaseCredentialStore, has_vault, secret_name
from mcp_core.errors import ConfigError, CredentialBackendError, CredentialError
from mcp_core.models import ConnectionStatus, NewConnection
from mcp_core.store import create_engine, migrate
from mcp_core.store._tables import credentials
from tests.support.postgres import PG_ADMIN_URL
from tests.support.registry import BEARER, add, make_settings, open_services
from tests.support.servers import RunningServer

from .conftest import KEY_1, closed_port, pg_database, tcp_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

SHIM = Path(__file__).parents[1] / "support" / "vault_shim.sql"
TEAM, TEAM_2, USER, USER_B = "T0001", "T0002", "U0001", "U0002"
SECRET = "Bearer s3cret-5f9d21c7"
VALUES = {"header:Authorization": SECRET, "env:API_TOKEN": "env-s3cret-8a3e"}
NEW_VALUES = {"header:Authorization": "Bearer s3cret-rotated-44aa"}
ALL_SECRETS = (*VALUES.values(), *NEW_VALUES.values(), "s3cret")


def plain_dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def apply_shim(url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url), timeout=5)
    try:
        await conn.execute(SHIM.read_text())  # simple-query protocol: the whole script at once
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


@pytest.fixture
async def vault_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    await apply_shim(pg_url)
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def plain_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated project database without any vault schema."""
    engine = create_engine(pg_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def vault_store(vault_engine: AsyncEngine) -> SupabaseCredentialStore:
    return SupabaseCredentialStore(vault_engine, fallback=None)


async def vault_rows(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        query = sa.text("SELECT id, name, secret, nonce FROM vault.secrets ORDER BY name")
        result = await conn.execute(query)
        return [dict(row._mapping) for row in result]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text


# --- detection -------------------------------------------------------------------------------


async def test_has_vault_false_without_schema(plain_engine: AsyncEngine) -> None:
    assert await has_vault(plain_engine) is False


async def test_has_vault_true_with_shim(vault_engine: AsyncEngine) -> None:
    assert await has_vault(vault_engine) is True


async def test_has_vault_false_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        assert await has_vault(engine) is False
    finally:
        await engine.dispose()


async def test_shim_has_vaults_exact_signatures(vault_engine: AsyncEngine) -> None:
    query = sa.text(
        "SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'vault' AND p.proname IN ('create_secret', 'update_secret') ORDER BY 1"
    )
    async with vault_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    assert [tuple(r) for r in rows] == [
        (
            "create_secret",
            "new_secret text, new_name text DEFAULT NULL::text, new_description text DEFAULT ''::text, "
            "new_key_id uuid DEFAULT NULL::uuid",
            "uuid",
        ),
        (
            "update_secret",
            "secret_id uuid, new_secret text DEFAULT NULL::text, new_name text DEFAULT NULL::text, "
            "new_description text DEFAULT NULL::text, new_key_id uuid DEFAULT NULL::uuid",
            "void",
        ),
    ]


# --- with Vault ------------------------------------------------------------------------------


async def test_round_trip_through_vault(vault_store: SupabaseCredentialStore, vault_engine) -> None:
    assert await vault_store.uses_vault() is True
    ref = await vault_store.put(TEAM, USER, VALUES)
    assert len(ref) == 32
    assert int(ref, 16) >= 0  # uuid4 hex
    assert await vault_store.get(TEAM, USER, ref) == VALUES
    rows = await vault_rows(vault_engine)
    assert [r["name"] for r in rows] == [f"slack-mcp-bot/{TEAM}/{USER}/{ref}"]
    assert secret_name(TEAM, USER, ref) == rows[0]["name"]


async def test_raw_secret_column_holds_no_plaintext(vault_store, vault_engine) -> None:
    await vault_store.put(TEAM, USER, VALUES)
    async with vault_engine.connect() as conn:
        dump = (
            await conn.execute(sa.text("SELECT string_agg(s::text, ' ') FROM vault.secrets s"))
        ).scalar_one()
    assert dump
    assert_no_secret(dump)


async def test_ciphertext_is_bound_to_its_row(vault_store, vault_engine) -> None:
    ref_a = await vault_store.put(TEAM, USER, VALUES)
    ref_b = await vault_store.put(TEAM, USER_B, NEW_VALUES)
    async with vault_engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE vault.secrets SET secret = (SELECT secret FROM vault.secrets WHERE name = :a) "
                "WHERE name = :b"
            ),
            {"a": secret_name(TEAM, USER, ref_a), "b": secret_name(TEAM, USER_B, ref_b)},
        )
    with pytest.raises(CredentialError) as caught:
        await vault_store.get(TEAM, USER_B, ref_b)
    assert not isinstance(caught.value, CredentialBackendError)  # the record is bad, not Vault
    assert "SQLSTATE 39000" in caught.value.reason  # pgcrypto: wrong key or corrupt data
    assert "can't be read" in str(caught.value)
    assert_no_secret(str(caught.value), caught.value.reason)


async def test_put_with_existing_ref_updates_in_place(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    before = await vault_rows(vault_engine)
    assert await vault_store.put(TEAM, USER, NEW_VALUES, ref) == ref
    after = await vault_rows(vault_engine)
    assert len(after) == 1
    assert after[0]["id"] == before[0]["id"]
    assert after[0]["secret"] != before[0]["secret"]
    assert await vault_store.get(TEAM, USER, ref) == NEW_VALUES


async def test_put_with_new_given_ref_creates(vault_store) -> None:
    assert await vault_store.put(TEAM, USER, VALUES, "github") == "github"
    assert await vault_store.get(TEAM, USER, "github") == VALUES


async def test_names_are_unique_in_vault(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    with pytest.raises(sa.exc.IntegrityError, match="secrets_name_idx"):
        async with vault_engine.begin() as conn:
            await conn.execute(
                sa.text("SELECT vault.create_secret('x', :name)"), {"name": secret_name(TEAM, USER, ref)}
            )


async def test_other_user_or_team_sees_nothing(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    assert await vault_store.get(TEAM, USER_B, ref) == {}
    assert await vault_store.get(TEAM_2, USER, ref) == {}
    assert await vault_store.delete(TEAM, USER_B, ref) is False
    assert await vault_store.delete(TEAM_2, USER, ref) is False
    assert len(await vault_rows(vault_engine)) == 1
    assert await vault_store.get(TEAM, USER, ref) == VALUES


async def test_slashes_cannot_forge_another_owners_name(vault_store) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    # team "T0001/U0001" + user "x" would otherwise build a name under another user's prefix
    assert await vault_store.get(f"{TEAM}/{USER}", ref, "x") == {}
    assert await vault_store.delete(f"{TEAM}/{USER}", ref, "x") is False
    with pytest.raises(ValueError, match="/"):
        await vault_store.put(TEAM, USER, VALUES, "a/b")
    with pytest.raises(ValueError, match="/"):
        await vault_store.put(f"{TEAM}/{USER}", "x", VALUES)


async def test_bad_keys_refused_without_quoting_values(vault_store, vault_engine) -> None:
    with pytest.raises(ValueError, match="header:<Name>") as caught:
        await vault_store.put(TEAM, USER, {"Authorization": SECRET})
    assert_no_secret(str(caught.value))
    assert await vault_rows(vault_engine) == []


async def test_delete_removes_the_row(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    other = await vault_store.put(TEAM, USER_B, NEW_VALUES)
    assert await vault_store.delete(TEAM, USER, ref) is True
    assert [r["name"] for r in await vault_rows(vault_engine)] == [secret_name(TEAM, USER_B, other)]
    assert await vault_store.get(TEAM, USER, ref) == {}
    assert await vault_store.delete(TEAM, USER, ref) is False


async def test_a_broken_vault_is_a_backend_error_naming_no_secret(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    async with vault_engine.begin() as conn:
        await conn.execute(sa.text("DROP FUNCTION vault.update_secret(uuid, text, text, text, uuid)"))
    with pytest.raises(CredentialBackendError) as caught:
        await vault_store.put(TEAM, USER, NEW_VALUES, ref)
    error = caught.value
    assert error.reason.startswith("Supabase Vault failed to store")
    assert error.__cause__ is None  # SQLAlchemy's text would list the bound secret
    assert_no_secret(str(error), error.reason)
    assert await vault_store.get(TEAM, USER, ref) == VALUES


async def test_a_locked_vault_past_the_timeout_is_a_backend_error(
    vault_store, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await vault_store.uses_vault()
    monkeypatch.setattr(supabase_module, "VAULT_TIMEOUT_S", 0.5)
    blocker = await asyncpg.connect(plain_dsn(pg_url), timeout=5)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE vault.secrets IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(CredentialBackendError) as caught:
            await asyncio.wait_for(vault_store.put(TEAM, USER, VALUES), 10)
        await tx.rollback()
    finally:
        await blocker.close()
    assert "did not answer" in caught.value.reason
    assert "can't be reached right now" in str(caught.value)
    assert_no_secret(str(caught.value), caught.value.reason)


async def replace_with_sleeper(engine: AsyncEngine, seconds: float) -> None:
    """Vault's read view and create function now take ``seconds`` before answering."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION vault._shim_decrypt(ciphertext text, row_id uuid) RETURNS text "
                f"LANGUAGE sql VOLATILE AS $$ SELECT pg_sleep({seconds}); SELECT 'x'::text $$"
            )
        )
        await conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION vault.create_secret(new_secret text, new_name text = NULL, "
                "new_description text = '', new_key_id uuid = NULL) RETURNS uuid "
                f"LANGUAGE sql AS $$ SELECT pg_sleep({seconds}); SELECT gen_random_uuid() $$"
            )
        )


async def test_a_vault_sleeping_past_the_timeout_is_a_backend_error(
    vault_store, vault_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    await replace_with_sleeper(vault_engine, 5)
    monkeypatch.setattr(supabase_module, "VAULT_TIMEOUT_S", 0.5)

    for call in (vault_store.get(TEAM, USER, ref), vault_store.put(TEAM, USER, VALUES)):
        with pytest.raises(CredentialBackendError) as caught:
            await asyncio.wait_for(call, 10)
        assert "did not answer within 0.5s" in caught.value.reason
        assert_no_secret(str(caught.value), caught.value.reason)


async def test_a_postgres_statement_timeout_is_a_backend_error(pg_url: str, vault_engine) -> None:
    ref = await SupabaseCredentialStore(vault_engine, fallback=None).put(TEAM, USER, VALUES)
    await replace_with_sleeper(vault_engine, 5)
    database = sa.make_url(pg_url).database
    async with vault_engine.begin() as conn:
        await conn.execute(sa.text(f"ALTER DATABASE \"{database}\" SET statement_timeout = '200ms'"))
    engine = create_engine(pg_url)  # new connections get the database's statement_timeout
    try:
        store = SupabaseCredentialStore(engine, fallback=None)
        for call in (store.get(TEAM, USER, ref), store.put(TEAM, USER, VALUES)):
            with pytest.raises(CredentialBackendError) as caught:
                await asyncio.wait_for(call, 10)
            assert "QueryCanceledError (SQLSTATE 57014)" in caught.value.reason
            assert_no_secret(str(caught.value), caught.value.reason)
    finally:
        await engine.dispose()


async def test_a_closed_server_is_a_backend_error(pg_url: str, vault_engine) -> None:
    async with tcp_proxy(pg_url) as proxy:
        engine = create_engine(proxy.url_for(pg_url))
        try:
            store = SupabaseCredentialStore(engine, fallback=None)
            ref = await store.put(TEAM, USER, VALUES)
            await proxy.close()  # the server goes away: open connections cut, new ones refused
            for call in (
                store.get(TEAM, USER, ref),
                store.put(TEAM, USER, NEW_VALUES, ref),
                store.delete(TEAM, USER, ref),
            ):
                with pytest.raises(CredentialBackendError) as caught:
                    await asyncio.wait_for(call, 10)
                assert caught.value.reason.startswith("Supabase Vault failed to")
                assert_no_secret(str(caught.value), caught.value.reason)
        finally:
            await engine.dispose()
    assert await SupabaseCredentialStore(vault_engine, fallback=None).get(TEAM, USER, ref) == VALUES


async def test_a_server_that_was_never_there_is_a_backend_error() -> None:
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere")
    try:
        with pytest.raises(CredentialBackendError, match="detect Vault"):
            await asyncio.wait_for(SupabaseCredentialStore(engine, fallback=None).get(TEAM, USER, "r"), 10)
    finally:
        await engine.dispose()


async def test_a_role_without_vault_privileges_is_a_backend_error(pg_url: str, vault_engine) -> None:
    ref = await SupabaseCredentialStore(vault_engine, fallback=None).put(TEAM, USER, VALUES)
    role = f"smb_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(plain_dsn(PG_ADMIN_URL), timeout=5)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        async with vault_engine.begin() as conn:  # Vault is visible to the role, its secrets are not
            await conn.execute(sa.text(f'GRANT USAGE ON SCHEMA vault TO "{role}"'))
        engine = create_engine(sa.make_url(pg_url).set(username=role))
        try:
            store = SupabaseCredentialStore(engine, fallback=None)
            assert await store.uses_vault() is True
            for call in (store.get(TEAM, USER, ref), store.put(TEAM, USER, VALUES)):
                with pytest.raises(CredentialBackendError) as caught:
                    await call
                assert "InsufficientPrivilegeError (SQLSTATE 42501)" in caught.value.reason
        finally:
            await engine.dispose()
    finally:
        async with vault_engine.begin() as conn:
            await conn.execute(sa.text(f'REVOKE ALL ON SCHEMA vault FROM "{role}"'))
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_vault_outage_marks_the_connection_error_not_needs_auth(
    tmp_path, pg_url: str, vault_engine, bearer_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SupabaseCredentialStore(vault_engine, fallback=None)
    settings = make_settings(tmp_path)
    async with open_services(settings, store) as services:
        ref = await store.put(TEAM, USER, {"header:Authorization": f"Bearer {BEARER}"})
        new = NewConnection(
            name="secured", transport="streamable_http", url=bearer_server.url, credential_ref=ref
        )
        connection = (await add(services, new, team=TEAM, user=USER)).connection
        assert connection.status == ConnectionStatus.HEALTHY
    await replace_with_sleeper(vault_engine, 5)
    monkeypatch.setattr(supabase_module, "VAULT_TIMEOUT_S", 0.5)

    async with open_services(settings, store) as services:  # no live session: Vault is asked again
        with pytest.raises(CredentialBackendError) as caught:
            await services.registry.discover(TEAM, USER, connection.id)
        stored = await services.store.get_connection(TEAM, USER, connection.id)

    assert str(caught.value).startswith("secured: the stored credentials can't be reached right now")
    assert stored.status == ConnectionStatus.ERROR
    assert stored.status_detail == str(caught.value)
    assert BEARER not in str(caught.value)


async def test_no_secret_in_logs(vault_store, vault_engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await vault_store.put(TEAM, USER, VALUES)
    await vault_store.put(TEAM, USER, NEW_VALUES, ref)
    await vault_store.get(TEAM, USER, ref)
    await vault_store.get(TEAM, USER_B, ref)
    async with vault_engine.begin() as conn:
        await conn.execute(sa.text("DROP FUNCTION vault.update_secret(uuid, text, text, text, uuid)"))
    with pytest.raises(CredentialBackendError):
        await vault_store.put(TEAM, USER, VALUES, ref)
    await vault_store.delete(TEAM, USER, ref)
    assert caplog.records
    assert_no_secret(caplog.text)
    assert "UndefinedFunctionError (SQLSTATE 42883)" in caplog.text


# --- without Vault ---------------------------------------------------------------------------


async def test_without_vault_uses_fallback_table(plain_engine: AsyncEngine) -> None:
    fallback = LocalCredentialStore(plain_engine, parse_keyring(f"k1:{KEY_1}"))
    store = SupabaseCredentialStore(plain_engine, fallback=fallback)
    assert await store.uses_vault() is False
    ref = await store.put(TEAM, USER, VALUES)
    assert await store.get(TEAM, USER, ref) == VALUES
    assert await fallback.get(TEAM, USER, ref) == VALUES
    assert await store.get(TEAM, USER_B, ref) == {}
    async with plain_engine.connect() as conn:
        rows = (await conn.execute(sa.select(credentials))).all()
        raw = (
            await conn.execute(sa.text("SELECT string_agg(c::text, ' ') FROM mcp_credentials c"))
        ).scalar_one()
    assert [(r.ref, r.team_id, r.user_id) for r in rows] == [(ref, TEAM, USER)]
    assert set(rows[0].record) >= {"kid", "wdek", "n", "ct"}  # an AES-GCM envelope
    assert_no_secret(raw)
    assert await store.put(TEAM, USER, NEW_VALUES, ref) == ref
    assert await store.get(TEAM, USER, ref) == NEW_VALUES
    assert await store.delete(TEAM, USER_B, ref) is False
    assert await store.delete(TEAM, USER, ref) is True
    assert await store.get(TEAM, USER, ref) == {}


async def test_without_vault_an_unreachable_database_is_a_backend_error(pg_url: str, plain_engine) -> None:
    async with tcp_proxy(pg_url) as proxy:
        engine = create_engine(proxy.url_for(pg_url))
        try:
            fallback = LocalCredentialStore(engine, parse_keyring(f"k1:{KEY_1}"))
            store = SupabaseCredentialStore(engine, fallback=fallback)
            ref = await store.put(TEAM, USER, VALUES)
            await proxy.close()
            calls = (store.get(TEAM, USER, ref), store.put(TEAM, USER, VALUES), store.delete(TEAM, USER, ref))
            for call in calls:
                with pytest.raises(CredentialBackendError) as caught:
                    await asyncio.wait_for(call, 10)
                assert_no_secret(str(caught.value), caught.value.reason)
        finally:
            await engine.dispose()


async def test_aclose_leaves_the_borrowed_engine_open(vault_store, vault_engine) -> None:
    ref = await vault_store.put(TEAM, USER, VALUES)
    await vault_store.aclose()
    await vault_store.aclose()
    async with vault_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    assert await vault_store.get(TEAM, USER, ref) == VALUES


async def test_without_vault_or_fallback_refuses(plain_engine: AsyncEngine) -> None:
    store = SupabaseCredentialStore(plain_engine, fallback=None)
    with pytest.raises(ConfigError, match="no Supabase Vault"):
        await store.put(TEAM, USER, VALUES)
    with pytest.raises(ConfigError):
        await store.get(TEAM, USER, "ref")
