"""Benchmark: what the turn journal costs a turn, and what a job queue would add instead.

    .venv/bin/python bench/turn_journal.py [--turns 300] [--orphans 200] [--database-url URL]

Issue 15 left a choice: coordinate turns with row leases of our own (``mcp_core.turn_journal``:
one row per turn, conditional writes, ``FOR UPDATE SKIP LOCKED`` claims) or hand turns to a
job queue on PostgreSQL (procrastinate and the like). This measures both sides in one run, on
the same database:

* **journal** — a turn's journal work as ``bot.chat`` does it: ``begin`` + ``durable`` (the row
  before anything shows in Slack), the round's sealed checkpoint (``checkpointed``),
  ``call_started`` (durable before the tool is sent, with the checkpoint),
  ``call_finished``, ``end``. Sequential turns; the time is what the turn waits for.
* **takeover** — one sweeper claiming ``--orphans`` turns whose owner died, in batches, as
  ``sweep`` does (the handler that tells Slack is not timed).
* **queue hop** (PostgreSQL only) — what a queue puts before a turn's first step: the job is
  inserted and ``NOTIFY``-ed in one transaction, a worker ``LISTEN``-ing on another connection
  wakes and takes it with ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)``
  — the statements procrastinate's worker runs (its ``procrastinate_fetch_job`` is the same
  pattern). The time is from the insert to the worker holding the job. The queue's own
  durability writes (job done, events) would come on top; they are not timed.

SQLite (a temporary file) unless ``--database-url`` names PostgreSQL, on which a throwaway
database is created and dropped. Results: bench/results/turn_journal.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa

from mcp_core.credentials._crypto import parse_keyring
from mcp_core.store import create_engine, migrate
from mcp_core.store._tables import turns
from mcp_core.store._turns import TurnStore
from mcp_core.turn_checkpoint import Checkpoint, CheckpointCall, seal
from mcp_core.turn_journal import TurnJournal

RESULTS = Path(__file__).parent / "results" / "turn_journal.json"
PG_CONNECT_TIMEOUT_S = 10.0
WARMUP = 20
KEYS = parse_keyring(f"bench:{base64.b64encode(os.urandom(32)).decode()}")
ROUND = Checkpoint(
    history=[
        {"role": "user", "content": "<@U0BOT> can you echo hello back to me, and say what the server said?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "toy__echo", "arguments": '{"text":"hello"}'},
                }
            ],
        },
    ],
    calls=[CheckpointCall(id="call_1", name="toy__echo", raw_arguments='{"text":"hello"}')],
    runs=[0],
    waiting=-1,
    offered=[f"toy__tool{n}" for n in range(13)],
)
"""A round's checkpoint of a short mention with one call, sealed into the row as the turn's
first call starts (the size of a real one: the conversation and the calls, not the tools)."""


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
    }


async def journal_turns(journal: TurnJournal, turns: int) -> list[float]:
    """The journal calls of one turn with one tool call, each turn timed."""
    samples: list[float] = []
    for n in range(WARMUP + turns):
        turn_id = f"t{n}-{secrets.token_hex(4)}"
        started = time.perf_counter()
        journal.begin(turn_id, "T1", "U1", "C1", f"{n}.0")
        await journal.durable(turn_id)
        journal.own_message(turn_id, f"{n}.1")
        journal.checkpointed(turn_id, seal(KEYS, "T1", "U1", turn_id, ROUND))  # as bot.chat's on_round
        journal.call_asked(turn_id, 0, "toy__echo")
        await journal.call_started(turn_id, 0, "toy__echo")
        journal.call_finished(turn_id, 0, "toy__echo")
        await journal.end(turn_id)
        if n >= WARMUP:
            samples.append(time.perf_counter() - started)
    return samples


async def takeover(engine: Any, orphans: int) -> float:
    """Seconds for one sweeper to claim ``orphans`` turns of a dead owner."""
    dead = TurnJournal(TurnStore(engine), lease_s=30.0, owner="elsewhere:1:dead")
    for n in range(orphans):
        dead.begin(f"orphan-{n}", "T1", "U1", "C1", f"{n}.0")
    await dead.durable("orphan-0")  # writes every begun turn
    await dead.aclose()
    async with engine.begin() as conn:
        await conn.execute(sa.update(turns).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC)))
    sweeper = TurnJournal(TurnStore(engine), lease_s=30.0, owner="elsewhere:2:live")

    async def tell_slack(turn: Any) -> None:
        return None

    sweeper._on_orphan = tell_slack
    started = time.perf_counter()
    while await sweeper.sweep():
        pass
    return time.perf_counter() - started


QUEUE_DDL = """
CREATE TABLE IF NOT EXISTS bench_jobs (
    id bigserial PRIMARY KEY, queue text NOT NULL, args jsonb NOT NULL,
    status text NOT NULL DEFAULT 'todo', worker text, created_at timestamptz NOT NULL DEFAULT now()
)
"""
FETCH = """
UPDATE bench_jobs SET status = 'doing', worker = $1
WHERE id = (SELECT id FROM bench_jobs WHERE status = 'todo' AND queue = 'turns'
            ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id
"""


async def queue_hops(dsn: str, jobs: int) -> list[float]:
    """Insert + NOTIFY → a LISTEN-ing worker holds the job; each job timed."""
    producer = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
    worker = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        await producer.execute(QUEUE_DDL)
        woken: asyncio.Queue[None] = asyncio.Queue()
        await worker.add_listener("bench_jobs", lambda *_: woken.put_nowait(None))
        samples: list[float] = []
        for n in range(WARMUP + jobs):
            started = time.perf_counter()
            async with producer.transaction():
                await producer.execute(
                    "INSERT INTO bench_jobs (queue, args) VALUES ('turns', $1)", json.dumps({"turn": n})
                )
                await producer.execute("NOTIFY bench_jobs")
            await woken.get()
            taken = await worker.fetchval(FETCH, "worker-1")
            assert taken is not None
            if n >= WARMUP:
                samples.append(time.perf_counter() - started)
        return samples
    finally:
        await producer.close()
        await worker.close()


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        journal = TurnJournal(TurnStore(engine), lease_s=30.0, owner="bench:1:journal")
        turns = await journal_turns(journal, args.turns)
        await journal.aclose()
        claim_s = await takeover(engine, args.orphans)
    finally:
        await engine.dispose()
    result: dict[str, Any] = {
        "journal_per_turn": quantiles(turns),
        "takeover": {"orphans": args.orphans, "total_ms": claim_s * 1000},
    }
    if url.startswith("postgresql"):
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        result["queue_hop"] = quantiles(await queue_hops(dsn, args.turns))
    return result


async def admin(admin_url: str, statement: str) -> None:
    dsn = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if not args.database_url:
        with tempfile.TemporaryDirectory() as tmp:
            return {"sqlite": await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", args)}
    name = f"smb_bench_{secrets.token_hex(6)}"
    await admin(args.database_url, f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
        return {"postgresql": await measure(url, args)}
    finally:
        await admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(results: dict[str, Any]) -> str:
    lines = [
        "| Database | Journal per turn, median | p95 | Takeover of N orphans | Queue hop, median | p95 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for database, got in results.items():
        journal, take = got["journal_per_turn"], got["takeover"]
        hop = got.get("queue_hop")
        lines.append(
            f"| {database} | {journal['median_ms']:.2f} ms | {journal['p95_ms']:.2f} ms | "
            f"{take['total_ms']:.0f} ms ({take['orphans']}) | "
            + (f"{hop['median_ms']:.2f} ms | {hop['p95_ms']:.2f} ms |" if hop else "— | — |")
        )
    for database, got in results.items():
        if hop := got.get("queue_hop"):
            ratio = hop["median_ms"] / got["journal_per_turn"]["median_ms"]
            lines.append(f"\n{database}: queue hop / journal per turn (medians) = {ratio:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="timed turns (and queue jobs); default 300")
    parser.add_argument("--orphans", type=int, default=200, help="orphaned turns to take over; default 200")
    parser.add_argument("--database-url", help="PostgreSQL admin URL (default: SQLite)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": platform.platform(), **results}, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
