"""Benchmark: what writing a batch of usage rows costs, one driver trip per statement vs SQLAlchemy's.

    .venv/bin/python bench/usage_writes.py [--reps 8] [--database-url URL]

Every tool call queues a usage row; the recorder (``mcp_core.usage``) writes them in batches
(every 0.5 s, at most 500) with ``Store.record_usage``: the connection counters, the raw rows
and four daily rollups, in one transaction. At hundreds of calls a second that write was most
of the CPU the registry adds to a call (``bench/tool_calls.py``). Measured here, alternating
in one run, with the same rows:

* **now**: ``mcp_core.store._bulk.execute_many`` — on SQLite one trip to aiosqlite's thread per
  statement with parameters converted by the bind types' own processors;
* **sqlalchemy**: the previous design, ``conn.execute(stmt, rows)`` for each statement (three
  trips per statement on SQLite and SQLAlchemy's per-row parameter handling).

On PostgreSQL both take the same path (asyncpg batches on its own), so its row is a check
that nothing changed there. Reported: process CPU (all threads: the driver's work counts)
and wall time per batch, medians over ``--reps`` rounds of 6 batches per size.

SQLite (a temporary file) unless ``--database-url`` names PostgreSQL, on which a throwaway
database is created and dropped. Results: bench/results/usage_writes.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.turn_journal import admin  # the throwaway-database helper both benches use
from mcp_core.models import NewConnection, UsageRecord
from mcp_core.store import Store, _rollups, _store, create_engine, migrate
from mcp_core.store._bulk import execute_many
from mcp_core.store._tables import tool_usage

RESULTS = Path(__file__).resolve().parent / "results" / "usage_writes.json"
SIZES = (1, 50, 200, 500)
BATCHES_PER_ROUND = 6
TEAM, USER = "T0BENCH", "U0BENCH"


async def _sqlalchemy_executemany(conn: Any, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """The previous design of each statement's write."""
    if rows:
        await conn.execute(stmt, list(rows))


DESIGNS = {"now": execute_many, "sqlalchemy": _sqlalchemy_executemany}


def _use(design: str) -> None:
    """Point the store's two writers at one design (both modules import the name)."""
    _store.execute_many = _rollups.execute_many = DESIGNS[design]  # type: ignore[attr-defined]


async def measure(url: str, reps: int) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        store = Store(engine)
        new = NewConnection(name="bench", transport="stdio", command="/bin/true")
        connection = await store.create_connection(TEAM, USER, new)

        def batch(n: int) -> list[UsageRecord]:
            now = datetime.now(UTC)
            return [
                UsageRecord(
                    team_id=TEAM,
                    user_id=USER,
                    connection_id=connection.id,
                    tool_name=f"tool{i % 5}",
                    latency_ms=1.0 + i % 40,
                    success=i % 17 != 0,
                    error_class=None if i % 17 else "McpServerError",
                    error_message=None if i % 17 else "the server failed",
                    created_at=now,
                    server="stdio:true",
                )
                for i in range(n)
            ]

        samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        expected = 0
        for rep in range(reps + 1):  # the first round warms caches and is not kept
            for design in DESIGNS if rep % 2 == 0 else reversed(DESIGNS):
                _use(design)
                for size in SIZES:
                    batches = [batch(size) for _ in range(BATCHES_PER_ROUND)]
                    cpu, wall = time.process_time(), time.perf_counter()
                    for rows in batches:
                        await store.record_usage(rows)
                    expected += size * BATCHES_PER_ROUND
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    if rep:
                        samples.setdefault((design, size), []).append(
                            (cpu / BATCHES_PER_ROUND, wall / BATCHES_PER_ROUND)
                        )
        async with engine.connect() as conn:
            written = (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one()
    finally:
        _use("now")
        await engine.dispose()
    result: dict[str, Any] = {"rows_written": written, "rows_expected": expected, "sizes": {}}
    for size in SIZES:
        row = {}
        for design in DESIGNS:
            cpu = statistics.median(c for c, _ in samples[(design, size)]) * 1000
            wall = statistics.median(w for _, w in samples[(design, size)]) * 1000
            row[design] = {
                "cpu_ms": round(cpu, 3),
                "wall_ms": round(wall, 3),
                "cpu_us_per_row": round(cpu * 1000 / size, 1),
            }
        row["cpu_ratio"] = round(row["now"]["cpu_ms"] / row["sqlalchemy"]["cpu_ms"], 3)
        result["sizes"][str(size)] = row
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if not args.database_url:
        with tempfile.TemporaryDirectory() as tmp:
            return {"sqlite": await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", args.reps)}
    name = f"smb_bench_{secrets.token_hex(6)}"
    await admin(args.database_url, f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
        return {"postgresql": await measure(url, args.reps)}
    finally:
        await admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(results: dict[str, Any]) -> str:
    lines = [
        "| Database | Rows per batch | CPU per batch, now | SQLAlchemy's | now / SQLAlchemy's | "
        "CPU per row, now → before | Wall per batch, now / before |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for database, got in results.items():
        for size, row in got["sizes"].items():
            now, old = row["now"], row["sqlalchemy"]
            lines.append(
                f"| {database} | {size} | {now['cpu_ms']:.2f} ms | {old['cpu_ms']:.2f} ms | "
                f"{row['cpu_ratio']:.2f} | "
                f"{old['cpu_us_per_row']:.0f} → {now['cpu_us_per_row']:.0f} µs | "
                f"{now['wall_ms']:.2f} / {old['wall_ms']:.2f} ms |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=8, help="rounds per design (default 8)")
    parser.add_argument("--database-url", help="PostgreSQL admin URL (default: SQLite)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": platform.platform(), **results}, indent=2) + "\n")
    print(table(results))
    for database, got in results.items():
        print(f"{database}: {got['rows_written']} of {got['rows_expected']} rows in the table")
        if got["rows_written"] != got["rows_expected"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
