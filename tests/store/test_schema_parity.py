"""The SQLite and PostgreSQL migrations build the same schema, and _tables.py describes it.

Both blank databases are migrated and reflected; they must agree table by table on columns,
nullability, a coarse type family, keys, foreign keys and indexes. SQLite keeps uuid and json
as text, which is the only difference allowed.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from mcp_core.store import create_engine, migrate
from mcp_core.store._tables import metadata

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

# What SQLite stores in place of a PostgreSQL type family.
SQLITE_STORAGE = {"uuid": "text", "json": "text"}


def family(type_: sa.types.TypeEngine[Any]) -> str:
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    for cls, name in (
        (sa.Uuid, "uuid"),
        (sa.JSON, "json"),
        (sa.DateTime, "timestamp"),
        (sa.Date, "date"),
        (sa.Boolean, "bool"),
        (sa.Integer, "int"),
        (sa.Float, "float"),
        (sa.String, "text"),
    ):
        if isinstance(type_, cls):
            return name
    raise AssertionError(f"no type family for {type_!r}")


def reflect(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    inspector = sa.inspect(conn)
    schema: dict[str, dict[str, Any]] = {}
    for table in inspector.get_table_names():
        schema[table] = {
            "columns": {c["name"]: (family(c["type"]), c["nullable"]) for c in inspector.get_columns(table)},
            "timestamps_have_time_zones": {
                c["name"]: getattr(c["type"], "timezone", None)
                for c in inspector.get_columns(table)
                if family(c["type"]) == "timestamp"
            },
            "primary_key": set(inspector.get_pk_constraint(table)["constrained_columns"]),
            "unique": {frozenset(u["column_names"]) for u in inspector.get_unique_constraints(table)},
            "foreign_keys": {
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk["options"].get("ondelete") or "NO ACTION").upper(),
                )
                for fk in inspector.get_foreign_keys(table)
            },
            "indexes": {
                (ix["name"], tuple(ix["column_names"]))
                for ix in inspector.get_indexes(table)
                if not ix["unique"]
            },
        }
    return schema


@pytest.fixture(scope="module")
async def schemas(anyio_backend, pg_server, tmp_path_factory) -> dict[str, dict[str, dict[str, Any]]]:
    name = await pg_server.create_database()
    urls = {
        "postgresql": pg_server.url_for(name),
        "sqlite": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('parity') / 'parity.db'}",
    }
    reflected = {}
    try:
        for dialect, url in urls.items():
            engine = create_engine(url)
            try:
                await migrate(engine)
                async with engine.connect() as conn:
                    reflected[dialect] = await conn.run_sync(reflect)
                    if dialect == "postgresql":
                        rls = await conn.exec_driver_sql(
                            "SELECT relname, relrowsecurity FROM pg_class"
                            " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                        )
                        reflected["postgresql_rls"] = {name: enabled for name, enabled in rls}
            finally:
                await engine.dispose()
    finally:
        await pg_server.drop_database(name)
    return reflected


TABLES = sorted(metadata.tables)


def test_both_databases_have_exactly_the_tables_of_the_metadata(schemas):
    assert sorted(schemas["postgresql"]) == TABLES
    assert sorted(schemas["sqlite"]) == TABLES


@pytest.mark.parametrize("table", TABLES)
def test_columns_agree_in_name_nullability_and_type_family(schemas, table):
    postgres = schemas["postgresql"][table]["columns"]
    sqlite = schemas["sqlite"][table]["columns"]

    assert list(postgres) == list(sqlite)
    for column, (postgres_family, nullable) in postgres.items():
        expected = (SQLITE_STORAGE.get(postgres_family, postgres_family), nullable)
        assert sqlite[column] == expected, f"{table}.{column}"


@pytest.mark.parametrize("table", TABLES)
def test_metadata_columns_match_the_migrations(schemas, table):
    declared = {c.name: (family(c.type), c.nullable) for c in metadata.tables[table].columns}

    assert schemas["postgresql"][table]["columns"] == declared


@pytest.mark.parametrize("table", TABLES)
def test_keys_foreign_keys_and_indexes_agree(schemas, table):
    postgres, sqlite = schemas["postgresql"][table], schemas["sqlite"][table]

    for aspect in ("primary_key", "unique", "foreign_keys", "indexes"):
        assert postgres[aspect] == sqlite[aspect], aspect
    declared = metadata.tables[table]
    assert postgres["primary_key"] == {c.name for c in declared.primary_key}
    assert postgres["unique"] == {
        frozenset(c.name for c in uc.columns)
        for uc in declared.constraints
        if isinstance(uc, sa.UniqueConstraint)
    }
    assert postgres["foreign_keys"] == {
        (
            (fk.parent.name,),
            fk.column.table.name,
            (fk.column.name,),
            (fk.ondelete or "NO ACTION").upper(),
        )
        for fk in declared.foreign_keys
    }


def test_postgres_timestamps_carry_time_zones(schemas):
    """Every table keeps a point in time, with its zone; the daily rollups keep a UTC day."""
    for table in TABLES:
        flags = schemas["postgresql"][table]["timestamps_have_time_zones"]
        columns = schemas["postgresql"][table]["columns"]
        assert flags or columns.get("day") == ("date", False), table
        assert all(flags.values()), table


def test_every_postgres_table_has_row_level_security(schemas):
    assert {table for table, enabled in schemas["postgresql_rls"].items() if enabled} == set(TABLES)
