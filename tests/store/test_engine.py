"""Building engines: URLs, SQLite's data folder and pragmas, and refusing what cannot work."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from mcp_core.errors import ConfigError, StoreError
from mcp_core.settings import Settings
from mcp_core.store import Store, create_engine, migrate

pytestmark = pytest.mark.anyio


async def test_sqlite_file_is_created_in_a_new_data_dir_with_foreign_keys_on(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "deep" / "data", database_url=None)
    engine = create_engine(settings)
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
    finally:
        await engine.dispose()

    assert (tmp_path / "deep" / "data" / "slack-mcp-bot.db").is_file()
    assert foreign_keys == 1


def test_plain_urls_get_their_async_driver(tmp_path):
    assert create_engine("postgres://u@db.example.com/app").url.drivername == "postgresql+asyncpg"
    assert create_engine("postgresql://u@db.example.com/app").url.drivername == "postgresql+asyncpg"
    assert create_engine(f"sqlite:///{tmp_path / 'x.db'}").url.drivername == "sqlite+aiosqlite"


def test_other_databases_are_refused():
    with pytest.raises(ConfigError):
        create_engine("mysql+aiomysql://u@db.example.com/app")


async def test_an_sqlite_engine_built_elsewhere_is_refused(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(ConfigError):
            Store(engine)
        with pytest.raises(ConfigError):
            await migrate(engine)
    finally:
        await engine.dispose()


async def test_an_unreachable_database_raises_store_error():
    engine = create_engine("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(StoreError, match="not answering"):
            await Store(engine).healthcheck()
        with pytest.raises(StoreError):
            await migrate(engine)
    finally:
        await engine.dispose()
