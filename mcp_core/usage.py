"""Background batching of usage rows, so recording never slows a tool call or an answer.

Two kinds of rows share the queue and its transactions: tool calls (``UsageRecord``, from the
registry) and agent turns with their tokens (``TurnRecord``, from ``record_turn``).

``record()`` only appends to an in-memory queue; a task writes batches every
``flush_interval_s`` (or sooner when ``max_batch`` rows wait) in one transaction, and
``aclose()`` flushes whatever is left. A failed write is logged and dropped: analytics must
never take a tool call down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mcp_core.logs import outside_turns
from mcp_core.models import TurnRecord, TurnUsage, UsageRecord
from mcp_core.periodic import Periodic

logger = logging.getLogger(__name__)

__all__ = ["UsagePruner", "UsageRecorder"]

FLUSH_INTERVAL_S = 0.5
MAX_BATCH = 500
MAX_QUEUED = 50_000
"""Beyond this many unwritten rows (database down for a long time) new rows are dropped."""


Row = UsageRecord | TurnRecord


PRUNE_EVERY_S = 3600.0


class UsageSink(Protocol):
    async def record_usage(self, rows: list[Row]) -> None: ...


class PruneSink(Protocol):
    async def prune_usage(self, before: datetime) -> int: ...


class UsageRecorder:
    def __init__(
        self, sink: UsageSink, *, flush_interval_s: float = FLUSH_INTERVAL_S, max_batch: int = MAX_BATCH
    ) -> None:
        self._sink = sink
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._rows: list[Row] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0

    def record(self, row: Row) -> None:
        """Queue one row; never blocks and never raises."""
        if self._closed or len(self._rows) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._rows.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="usage-recorder", context=outside_turns())
        if len(self._rows) >= self._max_batch:
            self._wake.set()

    def record_turn(
        self, team_id: str, user_id: str, usage: TurnUsage, *, turn_id: str | None = None
    ) -> None:
        """Queue what one agent turn of this person cost (``Agent.run``'s ``on_usage``); never
        blocks and never raises. ``turn_id``: the turn's own id, which feedback on its answer
        names (``Store.record_feedback``)."""
        self.record(
            TurnRecord(
                **usage.model_dump(),
                team_id=team_id,
                user_id=user_id,
                created_at=datetime.now(UTC),
                turn_id=turn_id,
            )
        )

    async def flush(self) -> None:
        """Write every queued row now; returns only when they are written (or dropped)."""
        async with self._lock:
            while self._rows:
                await self._write_queued()

    async def _write_queued(self) -> None:
        """Write the rows queued right now, not those that arrive meanwhile: those wait for the
        next tick, which is what keeps writes batched under a steady stream of calls."""
        pending, self._rows = self._rows, []
        for start in range(0, len(pending), self._max_batch):
            batch = pending[start : start + self._max_batch]
            try:
                await self._sink.record_usage(batch)
            except Exception:  # boundary: analytics must not break tool calls
                logger.exception("could not record %d usage rows; dropping them", len(batch))
                self.dropped += len(batch)

    async def aclose(self) -> None:
        """Stop accepting rows and write every queued one (the task is woken, not cancelled,
        so a batch being written is never lost half-way)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def _run(self) -> None:
        while self._rows:
            if not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            async with self._lock:
                await self._write_queued()


PRUNE_FIRST_AFTER_S = 120.0


class UsagePruner(Periodic):
    """Deletes raw usage rows older than ``retention_days`` (``USAGE_RETENTION_DAYS``) a little
    after start and then every ``every_s`` (``mcp_core.periodic``); the daily rollups stay, so
    stats keep their history. Every process prunes; the deletes are idempotent and batched
    (``Store.prune_usage``)."""

    name = "usage-pruner"

    def __init__(
        self,
        sink: PruneSink,
        retention_days: int,
        *,
        every_s: float = PRUNE_EVERY_S,
        first_after_s: float = PRUNE_FIRST_AFTER_S,
    ) -> None:
        super().__init__(every_s=every_s, first_after_s=first_after_s)
        self._sink = sink
        self._retention = timedelta(days=retention_days)

    async def prune(self) -> int:
        """One pass now; how many raw rows went. Never raises."""
        try:
            removed = await self._sink.prune_usage(datetime.now(UTC) - self._retention)
        except Exception:  # boundary: analytics housekeeping must not take the bot down
            logger.exception("could not prune old usage rows")
            return 0
        if removed:
            logger.info("pruned %d usage rows older than %d days", removed, self._retention.days)
        return removed

    run_once = prune
