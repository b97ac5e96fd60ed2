"""UsageRecorder: queued usage rows reach the sink in batches, and never hold up a tool call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from mcp_core.models import UsageRecord
from mcp_core.usage import UsageRecorder
from tests.support.pool import WAIT_S, wait_until

pytestmark = pytest.mark.anyio

LONG_INTERVAL_S = 60.0
"""A flush interval no test waits out: anything written earlier was written for another reason."""


def row(tool: str = "echo") -> UsageRecord:
    return UsageRecord(
        team_id="T1",
        user_id="U1",
        connection_id=uuid.uuid4(),
        tool_name=tool,
        latency_ms=1.0,
        success=True,
        created_at=datetime.now(UTC),
    )


class ListSink:
    """Keeps every batch it is given; ``gate``, when set, holds each write until it is opened."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.writing = anyio.Event()
        self.gate = anyio.Event()
        if not gated:
            self.gate.set()

    async def record_usage(self, rows: list[UsageRecord]) -> None:
        self.writing.set()
        await self.gate.wait()
        self.batches.append(list(rows))

    @property
    def tools(self) -> list[str]:
        return [r.tool_name for batch in self.batches for r in batch]


async def test_rows_are_written_in_the_background_after_the_flush_interval() -> None:
    sink = ListSink()
    recorder = UsageRecorder(sink, flush_interval_s=0.01)

    recorder.record(row("a"))
    recorder.record(row("b"))

    await wait_until(lambda: sink.tools == ["a", "b"], what="the background task wrote both rows")
    assert len(sink.batches) == 1
    await recorder.aclose()


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    sink = ListSink()
    recorder = UsageRecorder(sink, flush_interval_s=LONG_INTERVAL_S, max_batch=3)

    for name in "abc":
        recorder.record(row(name))

    await wait_until(lambda: sink.tools == ["a", "b", "c"], what="a full batch was written early")
    await recorder.aclose()


async def test_aclose_writes_every_queued_row_in_batches_and_then_refuses_new_ones() -> None:
    sink = ListSink()
    recorder = UsageRecorder(sink, flush_interval_s=LONG_INTERVAL_S, max_batch=2)
    for n in range(5):
        recorder.record(row(str(n)))

    with anyio.fail_after(WAIT_S):
        await recorder.aclose()
    recorder.record(row("late"))

    assert sink.tools == ["0", "1", "2", "3", "4"]
    assert all(len(batch) <= 2 for batch in sink.batches)
    assert recorder.dropped == 1


async def test_record_returns_at_once_while_a_write_is_stuck() -> None:
    sink = ListSink(gated=True)
    recorder = UsageRecorder(sink, flush_interval_s=0.01)
    recorder.record(row("first"))
    with anyio.fail_after(WAIT_S):
        await sink.writing.wait()

    for n in range(100):
        recorder.record(row(str(n)))  # plain calls: a blocking one would never return here

    sink.gate.set()
    with anyio.fail_after(WAIT_S):
        await recorder.aclose()
    assert len(sink.tools) == 101


async def test_flush_returns_only_once_rows_taken_by_the_background_task_are_written() -> None:
    sink = ListSink(gated=True)
    recorder = UsageRecorder(sink, flush_interval_s=0.01)
    recorder.record(row("in flight"))
    with anyio.fail_after(WAIT_S):
        await sink.writing.wait()  # the background task holds the row now

    async with anyio.create_task_group() as tg:
        flushed = anyio.Event()

        async def flush() -> None:
            await recorder.flush()
            flushed.set()

        tg.start_soon(flush)
        await wait_all_tasks_blocked()  # flush() has returned, or is waiting for the write
        returned_early = flushed.is_set()
        sink.gate.set()

    await recorder.aclose()
    assert not returned_early, "flush() returned before the row it was asked to write was written"
