"""The local credential backend on SQLite and PostgreSQL, alone and wired through build_services."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core import errors
from mcp_core.credentials import (
    LocalCredentialStore,
    RotationReport,
    parse_keyring,
    rotate_credentials,
)
from mcp_core.credentials.keys import key_file_path
from mcp_core.models import ConnectionStatus, NewConnection
from mcp_core.services import build_services
from mcp_core.settings import Settings
from mcp_core.store import create_engine, migrate
from mcp_core.store._tables import credentials
from tests.support.registry import BEARER, TEAM, TEAM_2, USER, USER_B, add, make_settings, open_services
from tests.support.secrets import DictSecrets
from tests.support.servers import RunningServer

from .conftest import KEY_1, KEY_2, closed_port, pg_database, tcp_proxy

pytestmark = pytest.mark.anyio

SECRET = "Bearer s3cret-7c1e9a40"
VALUES = {"header:Authorization": SECRET, "env:API_TOKEN": "env-s3cret-2b8d"}


@pytest.fixture
def store(engine: AsyncEngine) -> LocalCredentialStore:
    return LocalCredentialStore(engine, parse_keyring(f"k1:{KEY_1}"))


def store_with(engine: AsyncEngine, keys: str) -> LocalCredentialStore:
    return LocalCredentialStore(engine, parse_keyring(keys))


async def rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Every stored row by ref, read straight from the table."""
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(credentials))
        return {row.ref: dict(row._mapping) for row in result}


async def raw_text(engine: AsyncEngine) -> str:
    """The whole table as the database holds it (record as stored text)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(credentials.c.ref, credentials.c.team_id, sa.cast(credentials.c.record, sa.Text))
        )
        return "\n".join(" ".join(map(str, row)) for row in result)


async def set_row(engine: AsyncEngine, ref: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(credentials).where(credentials.c.ref == ref).values(**values))


def flip_one_byte(b64: str, index: int = 0) -> str:
    raw = bytearray(base64.urlsafe_b64decode(b64))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode()


def assert_safe(error: Exception) -> None:
    """The error text and reason name no secret and no key."""
    texts = (str(error), getattr(error, "reason", ""))
    for secret in (*VALUES.values(), "s3cret", KEY_1, KEY_2):
        for text in texts:
            assert secret not in text


# --- put, get, delete ---------------------------------------------------------------------------


async def test_put_then_get_returns_the_values_under_a_new_opaque_ref(store: LocalCredentialStore) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert uuid.UUID(ref)
    assert await store.get(TEAM, USER, ref) == VALUES
    assert await store.put(TEAM, USER, VALUES) != ref


async def test_the_database_holds_only_ciphertext(store: LocalCredentialStore, engine: AsyncEngine) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    text = await raw_text(engine)
    assert ref in text
    for secret in (*VALUES.values(), "s3cret", base64.b64encode(SECRET.encode()).decode()):
        assert secret not in text
    record = (await rows(engine))[ref]["record"]
    assert set(record) == {"v", "kid", "wdek", "n", "ct"}
    assert (record["v"], record["kid"]) == (1, "k1")


async def test_put_with_a_ref_replaces_the_users_record_under_a_fresh_data_key(
    store: LocalCredentialStore, engine: AsyncEngine
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    before = (await rows(engine))[ref]["record"]

    assert await store.put(TEAM, USER, {"header:Authorization": "Bearer new"}, ref=ref) == ref

    stored = await rows(engine)
    assert list(stored) == [ref]
    assert stored[ref]["record"]["wdek"] != before["wdek"]
    assert stored[ref]["updated_at"] >= stored[ref]["created_at"]
    assert await store.get(TEAM, USER, ref) == {"header:Authorization": "Bearer new"}


async def test_put_cannot_take_over_another_users_ref(store: LocalCredentialStore) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    with pytest.raises(errors.StoreError) as info:
        await store.put(TEAM, USER_B, {"header:Authorization": "Bearer theirs"}, ref=ref)
    assert not isinstance(info.value, errors.CredentialError)  # refused, not an outage

    assert await store.get(TEAM, USER, ref) == VALUES
    assert await store.get(TEAM, USER_B, ref) == {}


@pytest.mark.parametrize(
    "values",
    [{"Authorization": SECRET}, {"cookie:sid": SECRET}, {"header:": SECRET}, {"header:X": 42}],
)
async def test_put_refuses_values_it_cannot_route_without_quoting_them(
    store: LocalCredentialStore, engine: AsyncEngine, values: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"Credential keys look like|must be a string") as info:
        await store.put(TEAM, USER, values)

    assert SECRET not in str(info.value)
    assert await rows(engine) == {}


async def test_delete_removes_the_row(store: LocalCredentialStore, engine: AsyncEngine) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    kept = await store.put(TEAM, USER, {"header:X-Other": "other"})

    assert await store.delete(TEAM, USER, ref) is True

    assert list(await rows(engine)) == [kept]
    assert await store.get(TEAM, USER, ref) == {}
    assert await store.delete(TEAM, USER, ref) is False


@pytest.mark.parametrize(("team", "user"), [(TEAM, USER_B), (TEAM_2, USER)])
async def test_another_user_can_neither_read_nor_delete_the_record(
    store: LocalCredentialStore, engine: AsyncEngine, team: str, user: str
) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert await store.get(team, user, ref) == {}
    assert await store.delete(team, user, ref) is False
    assert list(await rows(engine)) == [ref]


# --- tampering and misplaced records ------------------------------------------------------------


@pytest.mark.parametrize("field", ["ct", "n", "wdek"])
async def test_one_tampered_byte_makes_get_fail_with_a_credential_error(
    store: LocalCredentialStore, engine: AsyncEngine, field: str
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    record = (await rows(engine))[ref]["record"]
    await set_row(engine, ref, record={**record, field: flip_one_byte(record[field], index=5)})

    with pytest.raises(errors.CredentialError) as info:
        await store.get(TEAM, USER, ref)

    assert "Reconnect it, or ask an admin to check CREDENTIAL_KEYS" in str(info.value)
    assert not isinstance(info.value, errors.CredentialBackendError)
    assert_safe(info.value)


@pytest.mark.parametrize(
    "record",
    [
        {"v": 2},
        {"v": 1, "kid": "k1", "wdek": "%%%", "n": "AAAA", "ct": "AAAA"},
        {"v": 1, "kid": "k1", "wdek": "AAAA", "n": "AAAA", "ct": "AAAA"},
        ["not", "a", "record"],
    ],
)
async def test_a_malformed_record_is_a_credential_error(
    store: LocalCredentialStore, engine: AsyncEngine, record: Any
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    await set_row(engine, ref, record=record)

    with pytest.raises(errors.CredentialError) as info:
        await store.get(TEAM, USER, ref)
    assert not isinstance(info.value, errors.CredentialBackendError)


@pytest.mark.postgres
async def test_a_database_that_is_not_there_is_a_backend_error() -> None:
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere")
    store = LocalCredentialStore(engine, parse_keyring(f"k1:{KEY_1}"))
    try:
        for call in (
            store.put(TEAM, USER, VALUES),
            store.put(TEAM, USER, VALUES, ref="r1"),
            store.get(TEAM, USER, "r1"),
            store.delete(TEAM, USER, "r1"),
            store.rotate(),
        ):
            with pytest.raises(errors.CredentialBackendError) as info:
                await asyncio.wait_for(call, 20)
            assert "can't be reached right now" in str(info.value)
            assert info.value.reason.startswith("the credential database failed to")
            assert_safe(info.value)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_database_going_away_is_a_backend_error_naming_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with pg_database() as url, tcp_proxy(url) as proxy:
        engine = create_engine(proxy.url_for(url))
        try:
            await migrate(engine)
            store = LocalCredentialStore(engine, parse_keyring(f"k1:{KEY_1}"))
            ref = await store.put(TEAM, USER, VALUES)
            await proxy.close()  # open connections cut, new ones refused
            for call in (
                store.get(TEAM, USER, ref),
                store.put(TEAM, USER, VALUES, ref),
                store.delete(TEAM, USER, ref),
            ):
                with pytest.raises(errors.CredentialBackendError) as info:
                    await asyncio.wait_for(call, 20)
                assert_safe(info.value)
                assert_safe(info.value.for_connection("github"))
        finally:
            await engine.dispose()
    for secret in (*VALUES.values(), "s3cret"):
        assert secret not in caplog.text


async def test_aclose_leaves_the_borrowed_engine_open(store: LocalCredentialStore) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    await store.aclose()
    await store.aclose()
    assert await store.get(TEAM, USER, ref) == VALUES


async def test_a_record_copied_to_another_users_row_does_not_decrypt(
    store: LocalCredentialStore, engine: AsyncEngine
) -> None:
    mine = await store.put(TEAM, USER, VALUES)
    theirs = await store.put(TEAM, USER_B, {"header:Authorization": "Bearer theirs"})
    await set_row(engine, theirs, record=(await rows(engine))[mine]["record"])

    with pytest.raises(errors.CredentialError) as info:
        await store.get(TEAM, USER_B, theirs)

    assert_safe(info.value)


async def test_a_record_moved_to_another_owner_or_ref_does_not_decrypt(
    store: LocalCredentialStore, engine: AsyncEngine
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    other = await store.put(TEAM, USER, {"header:X-Other": "other"})
    await set_row(engine, other, record=(await rows(engine))[ref]["record"])

    with pytest.raises(errors.CredentialError):
        await store.get(TEAM, USER, other)  # same user, another connection's ref

    await set_row(engine, ref, user_id=USER_B)
    with pytest.raises(errors.CredentialError):
        await store.get(TEAM, USER_B, ref)  # the row itself handed to another user


# --- rotation -----------------------------------------------------------------------------------


async def test_rotation_rewraps_every_record_under_the_new_primary_key_leaving_the_payload(
    engine: AsyncEngine,
) -> None:
    old = store_with(engine, f"k1:{KEY_1}")
    refs = [await old.put(TEAM, USER, VALUES), await old.put(TEAM_2, USER_B, {"env:X": "x"})]
    before = await rows(engine)
    both = store_with(engine, f"k2:{KEY_2},k1:{KEY_1}")

    report = await both.rotate(batch_size=1)  # several batches

    assert report == RotationReport(rewrapped=2, already_current=0)
    after = await rows(engine)
    for ref in refs:
        assert after[ref]["record"]["kid"] == "k2"
        assert after[ref]["record"]["wdek"] != before[ref]["record"]["wdek"]
        for unchanged in ("n", "ct"):
            assert after[ref]["record"][unchanged] == before[ref]["record"][unchanged]
    assert await both.get(TEAM, USER, refs[0]) == VALUES
    assert await both.rotate() == RotationReport(rewrapped=0, already_current=2)

    new_only = store_with(engine, f"k2:{KEY_2}")
    assert await new_only.get(TEAM, USER, refs[0]) == VALUES
    assert await new_only.get(TEAM_2, USER_B, refs[1]) == {"env:X": "x"}


async def test_a_record_left_on_a_removed_key_fails_clearly_and_rotation_reports_it(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stale = await store_with(engine, f"k1:{KEY_1}").put(TEAM, USER, VALUES)
    new_only = store_with(engine, f"k2:{KEY_2}")
    current = await new_only.put(TEAM, USER, {"env:X": "x"})

    with pytest.raises(errors.CredentialError) as info:
        await new_only.get(TEAM, USER, stale)

    assert "'k1'" in info.value.reason
    assert_safe(info.value)
    assert await new_only.rotate() == RotationReport(rewrapped=0, already_current=1, failed=(stale,))
    assert await new_only.get(TEAM, USER, current) == {"env:X": "x"}
    assert "k1" in caplog.text
    for secret in (*VALUES.values(), KEY_1, KEY_2):
        assert secret not in caplog.text


async def test_a_wrong_key_under_the_same_id_fails_clearly(engine: AsyncEngine) -> None:
    ref = await store_with(engine, f"k1:{KEY_1}").put(TEAM, USER, VALUES)

    with pytest.raises(errors.CredentialError) as info:
        await store_with(engine, f"k1:{KEY_2}").get(TEAM, USER, ref)

    assert_safe(info.value)


# --- through build_services ---------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def settings_on_each_db(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Settings]:
    """Settings for build_services on an SQLite file, or on a PostgreSQL database of their own."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    async with pg_database() as url:
        yield make_settings(tmp_path, database_url=url)


async def test_secrets_put_through_services_reach_the_server_and_never_the_logs(
    settings_on_each_db, bearer_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_on_each_db
    async with open_services(settings) as services:
        assert isinstance(services.credentials, LocalCredentialStore)
        assert key_file_path(settings).is_file()
        ref = await services.credentials.put(TEAM, USER, {"header:Authorization": f"Bearer {BEARER}"})
        new = NewConnection(
            name="secured", transport="streamable_http", url=bearer_server.url, credential_ref=ref
        )

        outcome = await add(services, new)

        assert outcome.error is None, outcome.error
        assert outcome.connection.status == ConnectionStatus.HEALTHY
        assert "echo" in {tool.name for tool in outcome.connection.tools}

        # Disconnecting removes the secret with the connection.
        assert await services.registry.remove_connection(TEAM, USER, outcome.connection.id)
        assert await services.credentials.delete(TEAM, USER, ref)
        assert await services.credentials.get(TEAM, USER, ref) == {}

    assert "generated a new credential master key" in caplog.text
    assert BEARER not in caplog.text


async def test_unreadable_credentials_mark_the_connection_needs_auth_naming_it(
    tmp_path, bearer_server: RunningServer
) -> None:
    settings = make_settings(tmp_path)
    async with open_services(settings) as services:
        assert services.credentials is not None
        ref = await services.credentials.put(TEAM, USER, {"header:Authorization": f"Bearer {BEARER}"})
        new = NewConnection(
            name="secured", transport="streamable_http", url=bearer_server.url, credential_ref=ref
        )
        connection = (await add(services, new)).connection
        record = (await rows(services.store.engine))[ref]["record"]
        await set_row(services.store.engine, ref, record={**record, "ct": flip_one_byte(record["ct"])})

    async with open_services(settings) as services:  # no live session: the next one reads the record
        with pytest.raises(errors.CredentialError) as info:
            await services.registry.discover(TEAM, USER, connection.id)

        stored = await services.store.get_connection(TEAM, USER, connection.id)

    assert str(info.value).startswith("secured: the stored credentials can't be read")
    assert info.value.connection == "secured"
    assert BEARER not in str(info.value)
    assert stored.status == ConnectionStatus.NEEDS_AUTH
    assert stored.status_detail == str(info.value)


async def test_a_connection_without_stored_credentials_opens_without_them(
    tmp_path, bearer_server: RunningServer
) -> None:
    async with open_services(make_settings(tmp_path)) as services:
        new = NewConnection(
            name="secured", transport="streamable_http", url=bearer_server.url, credential_ref="gone"
        )
        outcome = await add(services, new)

    assert isinstance(outcome.error, errors.ServerAuthError)
    assert outcome.connection.status == ConnectionStatus.NEEDS_AUTH


async def test_rotate_credentials_moves_records_to_the_new_key_of_credential_keys(tmp_path) -> None:
    async with open_services(make_settings(tmp_path)) as services:
        assert services.credentials is not None
        ref = await services.credentials.put(TEAM, USER, VALUES)
    key_file = key_file_path(make_settings(tmp_path)).read_text()
    file_line = next(line for line in key_file.splitlines() if not line.startswith("#"))
    rotating = make_settings(tmp_path, credential_keys=SecretStr(f"k2:{KEY_2},{file_line}"))

    assert await rotate_credentials(rotating) == RotationReport(rewrapped=1, already_current=0)
    assert await rotate_credentials(rotating) == RotationReport(rewrapped=0, already_current=1)

    async with open_services(make_settings(tmp_path, credential_keys=SecretStr(f"k2:{KEY_2}"))) as services:
        assert services.credentials is not None
        assert await services.credentials.get(TEAM, USER, ref) == VALUES


@pytest.mark.parametrize("backend", ["gcp", "aws", "supabase"])
async def test_rotation_is_refused_for_a_cloud_backend_before_anything_is_created(
    tmp_path, backend: str
) -> None:
    settings = make_settings(tmp_path / "data", credential_backend=backend)

    with pytest.raises(errors.ConfigError, match=f"backend is {backend}"):
        await rotate_credentials(settings)

    assert not (tmp_path / "data").exists()


async def test_malformed_credential_keys_stop_build_services(tmp_path) -> None:
    settings = make_settings(tmp_path / "data", credential_keys=SecretStr("k1:not-a-key"))

    with pytest.raises(errors.ConfigError, match="CREDENTIAL_KEYS: key 'k1'"):
        await build_services(settings)

    assert not (tmp_path / "data").exists()


async def test_a_secret_source_passed_in_is_used_and_credentials_reflects_it(tmp_path) -> None:
    async with open_services(make_settings(tmp_path), DictSecrets()) as services:
        assert services.credentials is None  # read-only test source: no put/delete
    assert not key_file_path(make_settings(tmp_path)).exists()
