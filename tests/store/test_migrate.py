"""Migrations: a blank database, re-runs, upgrades, failures and racing starters."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from mcp_core.errors import StoreError
from mcp_core.models import ToolPrefs
from mcp_core.store import Store, create_engine, migrate
from mcp_core.store._migrations import default_sql_dir, discover, pending_migrations, split_sqlite_script
from mcp_core.store._tables import connections, metadata, schema_migrations

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

# Written into a copy of sql/ to play the part of a future migration.
PROBE_MIGRATION = {
    "postgresql": "ALTER TABLE mcp_slack_events ADD COLUMN probe text; CREATE TABLE mcp_probe (id integer);",
    "sqlite": "ALTER TABLE mcp_slack_events ADD COLUMN probe TEXT; CREATE TABLE mcp_probe (id INTEGER);",
}
# A migration that fails after a statement that would have succeeded.
BROKEN_MIGRATION = "CREATE TABLE mcp_probe (id integer); INSERT INTO mcp_no_such_table VALUES (1);"


@pytest.fixture
async def blank_engine(blank_database_url):
    engine = create_engine(blank_database_url)
    yield engine
    await engine.dispose()


def copy_sql(tmp_path: Path, *, up_to: int) -> Path:
    """A copy of sql/ holding only the migrations numbered up to ``up_to``."""
    target = tmp_path / "sql"
    (target / "sqlite").mkdir(parents=True)
    for dialect, folder in (("postgresql", target), ("sqlite", target / "sqlite")):
        for migration in discover(default_sql_dir(), dialect):
            if migration.version <= up_to:
                shutil.copy(migration.path, folder)
    return target


def add_migration(sql_dir: Path, name: str, scripts: dict[str, str]) -> None:
    for dialect, folder in (("postgresql", sql_dir), ("sqlite", sql_dir / "sqlite")):
        (folder / name).write_text(scripts[dialect], encoding="utf-8")


async def table_names(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def recorded_versions(engine) -> list[int]:
    async with engine.connect() as conn:
        query = sa.select(schema_migrations.c.version).order_by(schema_migrations.c.version)
        return list((await conn.execute(query)).scalars())


async def old_connection(engine, *, card_id: str | None = None) -> uuid.UUID:
    """A connection row with the columns of 0001 only, as an old release wrote it (today's Store
    writes and reads the columns added since, so it cannot write to an old schema)."""
    now, connection_id = datetime.now(UTC), uuid.uuid4()
    row = dict(
        id=connection_id,
        team_id=TEAM,
        user_id=USER,
        name="github",
        card_id=card_id,
        transport="sse",
        url="https://x.example.com/sse",
        args=[],
        config={},
        status="new",
        tools=[],
        usage_count=0,
        created_at=now,
        updated_at=now,
    )
    async with engine.begin() as conn:
        await conn.execute(sa.insert(connections).values(row))
    return connection_id


async def assert_kept(engine, connection_id: uuid.UUID, card_id: str | None = None) -> None:
    """The old row reads back whole, with the defaults of the columns added since."""
    kept = await Store(engine).get_connection(TEAM, USER, connection_id)
    assert (kept.name, kept.card_id, kept.url) == ("github", card_id, "https://x.example.com/sse")
    assert kept.tool_prefs == ToolPrefs()


def all_versions(dialect: str) -> list[int]:
    return [m.version for m in discover(default_sql_dir(), dialect)]


async def test_blank_database_gets_every_migration(blank_engine):
    applied = await migrate(blank_engine)

    assert applied == all_versions(blank_engine.dialect.name)
    assert await recorded_versions(blank_engine) == applied
    assert set(metadata.tables) <= await table_names(blank_engine)


async def test_pending_migrations_are_reported_without_changing_anything(blank_engine):
    expected = all_versions(blank_engine.dialect.name)

    assert await pending_migrations(blank_engine) == expected
    assert await table_names(blank_engine) == set()
    await migrate(blank_engine)
    assert await pending_migrations(blank_engine) == []


async def test_migrate_is_idempotent(blank_engine):
    first = await migrate(blank_engine)

    assert await migrate(blank_engine) == []
    assert await recorded_versions(blank_engine) == first


async def test_upgrade_from_partial_history(blank_engine, tmp_path):
    sql_dir = copy_sql(tmp_path, up_to=1)
    assert await migrate(blank_engine, sql_dir=sql_dir) == [1]
    existing = await old_connection(blank_engine)
    next_version = max(all_versions(blank_engine.dialect.name)) + 1
    add_migration(sql_dir, f"{next_version:04d}_probe.sql", PROBE_MIGRATION)

    # The real migrations after 0001 and then the probe are applied, in order, once each.
    assert await migrate(blank_engine, sql_dir=copy_sql(tmp_path / "full", up_to=next_version)) == list(
        range(2, next_version)
    )
    assert await migrate(blank_engine, sql_dir=sql_dir) == [next_version]

    assert await migrate(blank_engine, sql_dir=sql_dir) == []
    assert "mcp_probe" in await table_names(blank_engine)
    await assert_kept(blank_engine, existing)


async def test_upgrading_drops_the_run_cards_table_nothing_read_and_keeps_connections(blank_engine, tmp_path):
    await migrate(blank_engine, sql_dir=copy_sql(tmp_path, up_to=2))
    existing = await old_connection(blank_engine, card_id="github")
    assert "mcp_run_cards" in await table_names(blank_engine)

    assert await migrate(blank_engine, sql_dir=copy_sql(tmp_path / "full", up_to=3)) == [3]

    assert "mcp_run_cards" not in await table_names(blank_engine)
    await migrate(blank_engine)  # and the columns added since (today's Store reads them)
    await assert_kept(blank_engine, existing, "github")


async def test_a_failed_migration_leaves_no_trace_and_is_retried(blank_engine, tmp_path):
    sql_dir = copy_sql(tmp_path, up_to=1)
    await migrate(blank_engine, sql_dir=sql_dir)
    add_migration(sql_dir, "0002_broken.sql", dict.fromkeys(("postgresql", "sqlite"), BROKEN_MIGRATION))

    with pytest.raises(StoreError, match=r"0002_broken\.sql"):
        await migrate(blank_engine, sql_dir=sql_dir)

    assert "mcp_probe" not in await table_names(blank_engine)
    assert await recorded_versions(blank_engine) == [1]
    add_migration(sql_dir, "0002_broken.sql", PROBE_MIGRATION)
    assert await migrate(blank_engine, sql_dir=sql_dir) == [2]


async def test_concurrent_starters_apply_each_migration_once(blank_database_url):
    engines = [create_engine(blank_database_url) for _ in range(3)]
    results: list[list[int]] = []

    async def start(engine) -> None:
        results.append(await migrate(engine))

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for engine in engines:
                    tg.start_soon(start, engine)
    finally:
        for engine in engines:
            await engine.dispose()

    assert sorted(v for applied in results for v in applied) == all_versions(engines[0].dialect.name)


def test_every_migration_has_a_sqlite_twin_and_numbers_have_no_gaps():
    postgres = [(m.version, m.name) for m in discover(default_sql_dir(), "postgresql")]
    sqlite = [(m.version, m.name) for m in discover(default_sql_dir(), "sqlite")]

    assert postgres == sqlite
    assert [version for version, _ in postgres] == list(range(1, len(postgres) + 1))


def test_sqlite_scripts_split_only_at_statement_ends():
    script = """
        -- header; not a statement end
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
            UPDATE t SET x = 'c;d';
        END;
        -- trailing comment
    """

    statements = split_sqlite_script(script)

    assert len(statements) == 2
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("END;")
    with pytest.raises(StoreError):
        split_sqlite_script("CREATE TABLE t (x TEXT);\nSELECT 1")
