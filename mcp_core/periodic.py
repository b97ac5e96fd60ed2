"""Housekeeping that runs every so often in a task of its own, outside any agent turn.

``Periodic`` is the loop the usage pruner and the workspace purger share: a first pass a
little after start — ``first_after_s`` plus up to as much again at random, so processes
started together (a deploy) do not all work at once and a start stays free of housekeeping —
then one every ``every_s``. A pass must not raise (each subclass's ``run_once`` catches at
its own boundary); ``aclose`` stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from mcp_core.logs import outside_turns

__all__ = ["Periodic"]


class Periodic:
    """Subclasses give ``name`` and ``run_once``."""

    name = "periodic"

    def __init__(self, *, every_s: float, first_after_s: float) -> None:
        self._every_s, self._first_after_s = every_s, first_after_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass now; how much it did. Never raises."""
        raise NotImplementedError

    def start(self) -> None:
        """Call from the running event loop; ``aclose`` stops it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name, context=outside_turns())

    async def _run(self) -> None:
        await asyncio.sleep(self._first_after_s * (1 + random.random()))
        while True:
            await self.run_once()
            await asyncio.sleep(self._every_s)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
