"""The housekeeping loop (``mcp_core.periodic``): a pass after the first delay, then one per
interval, in a task outside any turn, stopped by ``aclose``."""

from __future__ import annotations

import asyncio

import pytest

from mcp_core.logs import TURN_ID, in_turn
from mcp_core.periodic import Periodic

pytestmark = pytest.mark.anyio


class Counting(Periodic):
    name = "counting"

    def __init__(self, **timing: float) -> None:
        super().__init__(**timing)
        self.passes: list[str | None] = []

    async def run_once(self) -> int:
        self.passes.append(TURN_ID.get())
        return 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_passes_repeat_outside_turns_until_closed() -> None:
    loop = Counting(every_s=0.01, first_after_s=0.0)
    with in_turn("turn-1"):
        loop.start()
        loop.start()  # once only
    await asyncio.sleep(0.1)
    await loop.aclose()
    done = len(loop.passes)
    await asyncio.sleep(0.05)

    assert done >= 3
    assert len(loop.passes) == done
    assert set(loop.passes) == {None}


async def test_the_first_pass_waits() -> None:
    loop = Counting(every_s=0.01, first_after_s=10.0)
    loop.start()
    await asyncio.sleep(0.05)
    await loop.aclose()

    assert loop.passes == []
