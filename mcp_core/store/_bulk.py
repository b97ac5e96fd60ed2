"""One batched statement with the fewest trips to the database's thread: the usage writer's.

``conn.execute(stmt, rows)`` on SQLite costs three trips to aiosqlite's worker thread per
statement (cursor, executemany, close) plus SQLAlchemy's per-row parameter handling; a
usage batch is five or six such statements, and at hundreds of tool calls a second that
was the largest single part of the CPU the registry adds to a call. On SQLite,
:func:`execute_many` compiles the statement once per set of parameter names, turns each row
into a tuple with the bind types' own processors (the same values SQLAlchemy would send) and
hands it to the driver's ``executemany``: one trip. The driver's errors are wrapped as
SQLAlchemy's (``DBAPIError.instance``), so ``transaction`` still turns them into
``StoreError``. Other dialects (asyncpg batches on its
own) take SQLAlchemy's path unchanged.

Only for plain INSERT/UPDATE/upsert constructs whose values all come from the rows (no Python
column defaults, no expanding ``IN``), as the usage writer's are; the tests compare both
paths' rows.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["execute_many"]

_Plan = tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]


async def execute_many(conn: AsyncConnection, stmt: sa.Executable, rows: Sequence[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)``, in one driver call on SQLite; every row has the same keys."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(stmt, list(rows))
        return
    sql, as_tuple = _plan(conn.dialect, stmt, tuple(rows[0]))
    params = [as_tuple(row) for row in rows]
    raw = await conn.get_raw_connection()
    try:
        await raw.driver_connection.executemany(sql, params)
    except sqlite3.Error as exc:  # wrapped as SQLAlchemy wraps it, so callers' handling holds
        raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


@functools.lru_cache(maxsize=64)
def _plan(dialect: sa.Dialect, stmt: sa.Executable, keys: tuple[str, ...]) -> _Plan:
    """The statement's SQL for rows with ``keys``, and what turns a row into its parameters."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    positions = compiled.positiontup
    if positions is None or compiled.literal_execute_params or compiled.post_compile_params:
        raise TypeError("execute_many takes positional statements without expanding parameters")
    missing = [name for name in positions if name not in keys]
    if missing:
        raise TypeError(f"execute_many: the rows give no value for {', '.join(missing)}")
    processors = [
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in positions
    ]
    pick = operator.itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
    converted = [(i, process) for i, process in enumerate(processors) if process is not None]

    def as_tuple(row: dict[str, Any]) -> tuple[Any, ...]:
        values = pick(row)
        if not converted:
            return values
        out = list(values)
        for i, process in converted:
            if out[i] is not None:
                out[i] = process(out[i])
        return tuple(out)

    return compiled.string, as_tuple
