"""The turn journal: every agent turn in progress is in the database with its owner and a
lease, so a turn whose process died is found by another process (or the next start) and
closed honestly instead of saying "Thinking…" forever.

The owner (this process) writes what a takeover needs to say what happened — the Slack
messages the turn owns and, per tool call, its catalog name and whether it was sent and ended
— and, sealed under the credential keyring where there is one, where the turn stands as each
model round's calls begin (the conversation and the calls' exact arguments: ``checkpointed``),
never readable arguments or results. Writes stay off the hot path: ``begin``, ``own_message``,
``call_asked``, ``call_finished``, ``waiting`` and ``running`` only change the turn in memory
and wake a background task that writes every changed turn together (``FLUSH_INTERVAL_S``).
``durable`` waits for the write: the Slack side calls it before a turn shows anything, and
``own_message`` is written at once without waiting, so a message Slack posted is without a row
that names it only for the one write after Slack's answer. ``call_started`` waits for its
write too (shared with any other call starting meanwhile):
a call is sent only once the journal says it may have run, so a takeover never says "did not
run" of a call that ran, and nothing is ever run twice (nothing is ever re-run at all).

The same task renews, every ``lease_s / 3``, the lease of every live turn this process holds
in one UPDATE. A sweeper (``start_sweeping``) claims turns whose lease ran out, or whose owner
was a process of this host that is gone (a restart on the same host closes the previous run's
turns at once), and hands each to the caller's ``on_orphan`` (the Slack side closes it in its
thread); then the turn is ``closed`` — unless the handler hands back a ``Follow`` (a call
its remote server runs as an MCP task is followed to its result): the turn then lives on as this
process's, leased like any other, so if this process dies too the next one follows it again
(the thread is told once). ``drain`` is SIGTERM's: no new turns, the running ones
get a grace period, the rest are cancelled and released for a sweeper — this process's own
when it is the only one (SQLite), another live process's otherwise.

If the database stops answering, the leases lapse and other processes close this process's
turns; its next ``call_started`` then raises ``TurnTakenOverError`` and the turn stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp_core.agent import ToolProgress
from mcp_core.errors import McpCoreError, StoreError, TurnTakenOverError
from mcp_core.store._turns import StopOutcome, TurnCall, TurnRow, TurnStore

__all__ = ["Follow", "StopOutcome", "TurnCall", "TurnJournal", "TurnRow", "process_owner"]

Show = Callable[[ToolProgress], Awaitable[None]]

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
"""Changes that need not be durable at once wait this long to share a write."""
SWEEP_MAX_S = 5.0
"""The sweeper looks for orphaned turns at least this often (more often with a short lease)."""
CLAIM_BATCH = 20
"""Turns one sweep claims at most; the next sweep takes more."""
PURGE_AFTER = timedelta(days=1)
"""Ended turns are kept this long (for operators' questions), then deleted by the sweeper."""
PURGE_EVERY = 100
"""Sweeps between purges."""
CANCEL_WAIT_S = 1.0
"""At the end of a drain, how long cancelled turns get to unwind."""
STOP_POLL_S = 1.0
"""While this process runs a turn older than this, it looks this often for a Stop that landed
on another process (one indexed read of its own live rows; a turn younger than that is not
looked for, so a quick turn never reads the database for it)."""

Follow = Callable[[], Awaitable[None]]
"""What a process that took a turn over still does for it (follow its calls' MCP tasks)."""
OrphanHandler = Callable[[TurnRow], Awaitable[Follow | None]]
"""Closes a claimed turn in its thread; returns a ``Follow`` if the turn goes on here."""


def process_owner() -> str:
    """This process's owner id, ``host:pid:random`` (random: a restarted process that gets the
    same pid, as in a container, is still a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class TurnJournal:
    """This process's turns in the database (see the module docstring)."""

    def __init__(
        self,
        store: TurnStore,
        *,
        lease_s: float,
        owner: str | None = None,
        sole_process: bool = False,
    ) -> None:
        """``sole_process``: no other process can be relied on to close what this one
        releases at shutdown (SQLite), so ``drain`` closes them itself."""
        self.owner = owner or process_owner()
        self._store = store
        self._lease = timedelta(seconds=lease_s)
        self.heartbeat_s = lease_s / 3
        self.sweep_s = min(SWEEP_MAX_S, lease_s / 3)
        self._sole = sole_process
        self._turns: dict[str, TurnRow] = {}
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._written: set[str] = set()
        self._dirty: set[str] = set()
        self._lost: set[str] = set()
        self._lost_signals: dict[str, asyncio.Event] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._on_orphan: OrphanHandler | None = None
        self._follows: set[asyncio.Task[None]] = set()
        self._began: dict[str, float] = {}
        self._stops_heard: set[str] = set()
        self._stop_watch: asyncio.Task[None] | None = None
        self._stop_signals: dict[str, asyncio.Event] = {}
        self.on_stop_requested: Callable[[str], None] | None = None
        """Set by the Slack side: stops this process's turn of that id as a Stop clicked here
        would (the process the Stop landed on checked that the clicker asked it)."""
        self._frozen = False
        """Set by ``drain`` once it released what was left: nothing more is written."""
        self._lock = asyncio.Lock()
        """Held by every write of this process's turns, so an ``end`` never overtakes the
        write that creates the row."""
        self.draining = False
        """True once ``drain`` began: the Slack side starts no new turn."""
        self.questions_continue = False
        """Set by the Slack side when waiting turns carry a checkpoint (a keyring is set up):
        a claimed turn whose question is still open is then parked, not closed."""

    # -- the owner's side ---------------------------------------------------------------------

    def begin(
        self,
        turn_id: str,
        team_id: str,
        user_id: str,
        channel_id: str,
        thread_ts: str,
        *,
        taken: TurnRow | None = None,
    ) -> None:
        """A turn starts in this process (written in the background); the calling task is the
        one ``drain`` cancels if the turn outlives the grace period. ``taken``: the turn is one
        this process just took from the database (``take_question``), with what it owns."""
        if taken is not None:
            row = TurnRow(
                turn_id,
                team_id,
                user_id,
                channel_id,
                thread_ts,
                messages=list(taken.messages),
                calls=list(taken.calls),
            )
            self._written.add(turn_id)
        else:
            row = TurnRow(turn_id, team_id, user_id, channel_id, thread_ts)
        self._turns[turn_id] = row
        with contextlib.suppress(RuntimeError):
            if (task := asyncio.current_task()) is not None:
                self._tasks[turn_id] = task
        self._idle.clear()
        self._changed(turn_id)
        self._began[turn_id] = asyncio.get_running_loop().time()
        if not self._frozen and (self._stop_watch is None or self._stop_watch.done()):
            self._stop_watch = asyncio.create_task(self._watch_stops(), name="turn-stops")

    def own_message(self, turn_id: str, ts: str) -> None:
        """The turn posted (or started streaming) the Slack message ``ts``."""
        turn = self._turns.get(turn_id)
        if turn is not None and ts and ts not in turn.messages:
            turn.messages.append(ts)
            self._changed(turn_id)
            self._wake.set()  # written at once, not after FLUSH_INTERVAL_S: the message needs its row

    async def durable(self, turn_id: str) -> None:
        """Returns once the turn, as it is now, is in the database (shared with any write
        due meanwhile). Before a turn shows anything in Slack: a message posted by a turn
        with no row yet would be left saying "Thinking…" if the process died then.

        Raises:
            TurnTakenOverError: another process closed this turn.
            StoreError: the database did not take the write.
        """
        if turn_id in self._lost:
            raise TurnTakenOverError()
        if turn_id not in self._turns:
            return
        self._changed(turn_id)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter
        if turn_id in self._lost:
            raise TurnTakenOverError()

    def call_asked(self, turn_id: str, index: int, name: str) -> None:
        """The model asked for call ``index`` (not sent yet)."""
        if self._call(turn_id, index, name) is not None:
            self._changed(turn_id)

    async def call_started(self, turn_id: str, index: int, name: str) -> None:
        """Call ``index`` is about to be sent: returns once the journal says so durably.

        Raises:
            TurnTakenOverError: another process closed this turn (its lease ran out); the
                call must not be sent.
            StoreError: the database did not take the write; the call must not be sent.
        """
        if turn_id in self._lost:
            raise TurnTakenOverError()
        call = self._call(turn_id, index, name)
        if call is None:
            return
        call.started = True
        await self.durable(turn_id)

    def call_finished(self, turn_id: str, index: int, name: str) -> None:
        """Call ``index`` ended (a result, an error, a refusal before it was sent, a stop)."""
        if (call := self._call(turn_id, index, name)) is not None and not call.finished:
            call.finished = True
            self._changed(turn_id)

    def call_task(self, turn_id: str, index: int, name: str, task_id: str) -> None:
        """Call ``index`` runs as MCP task ``task_id`` on its server (written with the next flush:
        the call is already journaled as started, so a takeover never runs it again)."""
        if (call := self._call(turn_id, index, name)) is not None and call.task != task_id:
            call.task = task_id[:200]
            self._changed(turn_id)

    def waiting(self, turn_id: str) -> None:
        """The turn waits for a person (an approval, a server's question)."""
        self._set_state(turn_id, "waiting")

    def running(self, turn_id: str) -> None:
        """The turn works again after a wait."""
        self._set_state(turn_id, "running")

    async def suspend(self, turn_id: str, question: str, expires_at: datetime, checkpoint: Any) -> None:
        """The turn asks ``question`` and waits, from ``checkpoint`` (sealed): written now, so
        that a click on any process, or after this one died, can take it (``take_question``).

        Raises:
            TurnTakenOverError: another process closed this turn.
            StoreError: the database did not take the write (the question is then this
                process's alone, as without a checkpoint).
        """
        self._set_state(turn_id, "waiting")
        if (row := self._turns.get(turn_id)) is not None:
            row.progress = None  # the question's checkpoint supersedes an unwritten round's
        await self.durable(turn_id)
        async with self._lock:
            held = await self._store.suspend(
                turn_id,
                owner=self.owner,
                question=question,
                expires_at=expires_at,
                checkpoint=checkpoint,
                now=_now(),
            )
        if not held:
            self._mark_lost({turn_id})
            raise TurnTakenOverError()

    def checkpointed(self, turn_id: str, checkpoint: Any) -> None:
        """Where the turn stands as a model round's calls are about to run (sealed), written
        with the turn's next write (the first call's ``call_started`` waits for it)."""
        if (row := self._turns.get(turn_id)) is not None:
            row.progress = checkpoint
            self._changed(turn_id)

    async def take_own(self, turn_id: str, question: str, *, expired_ok: bool = False) -> bool:
        """This process's own turn gets the answer to its question (a click here, or the wait's
        end): True if it took it, False if a click on another process did first (the turn
        goes on there; this process lets it go)."""
        taken = await self.take_question(question, expired_ok=expired_ok)
        if taken is None or taken.turn_id != turn_id:
            self._mark_lost({turn_id})
            return False
        self._set_state(turn_id, "running")
        return True

    async def find_question(self, question: str) -> TurnRow | None:
        """The waiting turn (of any process) whose open question is ``question``.

        Raises:
            StoreError: the database failed.
        """
        return await self._store.find_question(question)

    async def take_question(self, question: str, *, expired_ok: bool = False) -> TurnRow | None:
        """Take the turn waiting on ``question`` for this process (exactly one process gets
        it); None if it was answered, expired or closed meanwhile.

        Raises:
            StoreError: the database failed.
        """
        now = _now()
        return await self._store.take_question(
            question, owner=self.owner, lease_until=now + self._lease, now=now, expired_ok=expired_ok
        )

    def stop_signal(self, turn_id: str) -> asyncio.Event:
        """Set once a Stop for this process's turn ``turn_id`` was asked on any process (this
        one included): for work the Slack side's own Stop cannot reach (a followed task)."""
        return self._stop_signals.setdefault(turn_id, asyncio.Event())

    def lost_signal(self, turn_id: str) -> asyncio.Event:
        """Set once this process learns that its turn was taken by another process (a click
        there) or closed by one: whatever the turn waits for here, it should stop quietly."""
        signal = self._lost_signals.setdefault(turn_id, asyncio.Event())
        if turn_id in self._lost:
            signal.set()
        return signal

    async def end(self, turn_id: str) -> None:
        """The turn ended in its thread (answered, failed, stopped): ``done``, written now so
        that no sweeper can mistake a shown answer for an orphan. Never raises."""
        turn = self._forget(turn_id)
        if turn is None:
            return
        try:
            async with self._lock:
                if turn_id in self._written and turn_id not in self._lost:
                    await self._store.finish(turn_id, owner=self.owner, state="done", now=_now())
        except McpCoreError as exc:
            logger.warning("could not mark turn %s done (%s); a sweeper may close it", turn_id, exc)

    async def abandon(self, turn_id: str) -> None:
        """The turn stopped without telling its thread (cancelled at shutdown): its lease is
        released so a sweeper closes it. Never raises."""
        turn = self._forget(turn_id)
        if turn is None or turn_id in self._lost:
            return
        try:
            async with self._lock:
                now = _now()  # written whole: the sweeper must know what it owned
                await self._store.save([turn], owner=self.owner, lease_until=now, now=now)
        except McpCoreError as exc:
            logger.warning("could not release turn %s (%s); its lease will run out", turn_id, exc)

    @contextlib.asynccontextmanager
    async def turn(
        self,
        turn_id: str,
        team_id: str,
        user_id: str,
        channel_id: str,
        thread_ts: str,
        *,
        taken: TurnRow | None = None,
    ) -> AsyncIterator[None]:
        """``begin`` … ``end`` around a turn that tells its thread how it ended; a turn cut
        short (cancelled, or an error past the Slack side's own handling) is ``abandon``-ed."""
        self.begin(turn_id, team_id, user_id, channel_id, thread_ts, taken=taken)
        try:
            yield
        except BaseException:
            await asyncio.shield(self.abandon(turn_id))
            raise
        await self.end(turn_id)

    def progress(self, turn_id: str, show: Show, *, first: int = 0) -> Show:
        """``show`` (the display's ``on_progress``) with each call journaled first: asked,
        started (durably, before the call is sent: it raises as ``call_started`` does),
        finished (``done``, ``failed``, ``denied``, ``stopped``). ``first``: the number of the
        first call it will see (a continued turn's calls go on after those that ended)."""
        numbers: dict[int, int] = {}

        async def journaled(progress: ToolProgress) -> None:
            index = numbers.setdefault(id(progress.call), first + len(numbers))
            name = progress.call.name
            if progress.state == "pending":
                self.call_asked(turn_id, index, name)
            elif progress.state == "running":
                if progress.note is None:  # a note is news about a call already started
                    await self.call_started(turn_id, index, name)
                elif progress.task_id is not None:
                    self.call_task(turn_id, index, name, progress.task_id)
            else:
                self.call_finished(turn_id, index, name)
            await show(progress)

        return journaled

    @property
    def live(self) -> int:
        """Turns this process is running now."""
        return len(self._turns)

    # -- background: writes and heartbeat -----------------------------------------------------

    def _call(self, turn_id: str, index: int, name: str) -> TurnCall | None:
        turn = self._turns.get(turn_id)
        if turn is None or index < 0:
            return None
        while len(turn.calls) <= index:
            turn.calls.append(TurnCall(name))
        call = turn.calls[index]
        call.name = name
        return call

    def _set_state(self, turn_id: str, state: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is not None and turn.state != state:
            turn.state = "waiting" if state == "waiting" else "running"
            self._changed(turn_id)

    def _changed(self, turn_id: str) -> None:
        """Mark ``turn_id`` for the next write. The first change after a quiet spell wakes the
        writer, which otherwise sleeps until the next heartbeat: a call's end or a wait would
        reach the database up to ``heartbeat_s`` late; later changes batch behind it."""
        if self._frozen:
            return
        quiet = not self._dirty
        self._dirty.add(turn_id)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="turn-journal")
        elif quiet:
            self._wake.set()

    def _mark_lost(self, turn_ids: set[str]) -> None:
        self._lost |= turn_ids
        for turn_id in turn_ids:
            if (signal := self._lost_signals.get(turn_id)) is not None:
                signal.set()

    def _forget(self, turn_id: str) -> TurnRow | None:
        turn = self._turns.pop(turn_id, None)
        self._tasks.pop(turn_id, None)
        self._began.pop(turn_id, None)
        self._stops_heard.discard(turn_id)
        self._stop_signals.pop(turn_id, None)
        self._lost_signals.pop(turn_id, None)
        self._dirty.discard(turn_id)
        if not self._turns:
            self._idle.set()
        return turn

    async def _write_loop(self) -> None:
        """Changed turns written together; the lease of every live turn renewed in time."""
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.heartbeat_s
        while True:
            wait = FLUSH_INTERVAL_S if self._dirty else max(0.0, renew_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            await self._flush()
            if loop.time() >= renew_at:
                renew_at = loop.time() + self.heartbeat_s
                await self._renew()

    async def _flush(self) -> None:
        waiters, self._waiters = self._waiters, []
        dirty, self._dirty = self._dirty, set()
        rows = [self._turns[t] for t in sorted(dirty) if t in self._turns and t not in self._lost]
        failure: McpCoreError | None = None
        if rows:
            now = _now()
            progress = {row.turn_id: row.progress for row in rows}
            try:
                async with self._lock:
                    refused = await self._store.save(
                        rows, owner=self.owner, lease_until=now + self._lease, now=now
                    )
                for row in rows:  # a round's checkpoint is written once, not with every change
                    if row.progress is progress[row.turn_id]:
                        row.progress = None
            except McpCoreError as exc:
                logger.warning("could not write %d turns to the journal: %s", len(rows), exc)
                failure = exc
                self._dirty |= {row.turn_id for row in rows}  # tried again with the next change
            else:
                self._written |= {row.turn_id for row in rows} - refused
                for turn_id in refused - self._lost:
                    logger.warning("turn %s was taken over by another process; it stops here", turn_id)
                self._mark_lost(refused)
        for waiter in waiters:
            if waiter.done():
                continue
            if failure is not None:
                waiter.set_exception(StoreError(str(failure)))
            else:
                waiter.set_result(None)

    async def _renew(self) -> None:
        mine = {t for t in self._turns if t in self._written and t not in self._lost}
        try:
            held = await self._store.renew(owner=self.owner, lease_until=_now() + self._lease)
        except McpCoreError as exc:
            logger.warning("could not renew this process's turn leases: %s", exc)
            return
        gone = {t for t in mine - held if t in self._turns}  # not ended here meanwhile
        for turn_id in gone:
            logger.info("turn %s goes on in another process (or was closed there)", turn_id)
        self._mark_lost(gone)

    # -- Stops that landed elsewhere ----------------------------------------------------------

    async def request_stop(
        self,
        team_id: str,
        user_id: str,
        *,
        turn_id: str | None = None,
        thread: tuple[str, str] | None = None,
    ) -> tuple[StopOutcome, str | None]:
        """A Stop this process is not running the turn of: ask the turn's owner, wherever it
        runs, to stop it (``TurnStore.request_stop``; the owner hears it within about
        ``STOP_POLL_S``).

        Raises:
            StoreError: the database failed (nothing was asked).
        """
        return await self._store.request_stop(team_id, user_id, now=_now(), turn_id=turn_id, thread=thread)

    async def _watch_stops(self) -> None:
        """While this process runs turns: every ``STOP_POLL_S``, the Stops asked elsewhere for
        those older than that, each told once to its ``stop_signal`` and ``on_stop_requested``."""
        loop = asyncio.get_running_loop()
        while self._turns and not self._frozen:
            await asyncio.sleep(STOP_POLL_S)
            now = loop.time()
            old = {
                t
                for t, began in self._began.items()
                if now - began >= STOP_POLL_S and t in self._written and t not in self._lost
            }
            if not old:
                continue
            try:
                asked = await self._store.stops_requested(owner=self.owner)
            except McpCoreError as exc:
                logger.warning("could not look for Stops asked on other processes: %s", exc)
                continue
            for turn_id in sorted((asked & old) - self._stops_heard):
                self._stops_heard.add(turn_id)
                logger.info("turn %s was stopped from another process", turn_id)
                if (signal := self._stop_signals.get(turn_id)) is not None:
                    signal.set()
                if self.on_stop_requested is not None:
                    self.on_stop_requested(turn_id)

    # -- the sweeper --------------------------------------------------------------------------

    def start_sweeping(self, on_orphan: OrphanHandler) -> None:
        """Look for orphaned turns every ``sweep_s`` (at once first), closing each through
        ``on_orphan``. Call from the running event loop; ``aclose`` stops it."""
        self._on_orphan = on_orphan
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="turn-sweeper")

    async def sweep(self) -> int:
        """One sweep: claim orphaned turns and close each; how many were closed.

        Raises:
            StoreError: the claim failed (the next sweep tries again).
        """
        now = _now()
        dead = await self._dead_owners_here()
        claimed = await self._store.claim(
            owner=self.owner, now=now, lease_until=now + self._lease, limit=CLAIM_BATCH, dead_owners=dead
        )
        for turn in claimed:
            await self._close(turn)
        return len(claimed)

    async def _sweep_loop(self) -> None:
        sweeps = 0
        while True:
            try:
                while await self.sweep() == CLAIM_BATCH:
                    pass
                if sweeps % PURGE_EVERY == 0:
                    await self._store.purge(before=_now() - PURGE_AFTER)
            except McpCoreError as exc:
                logger.warning("could not look for interrupted turns: %s", exc)
            sweeps += 1
            await asyncio.sleep(self.sweep_s)

    async def _dead_owners_here(self) -> list[str]:
        """Owners on this host whose process is gone (or is this pid, under an older id)."""
        host, pid = socket.gethostname(), str(os.getpid())
        dead: list[str] = []
        for owner in await self._store.live_owners():
            parts = owner.rsplit(":", 2)
            if owner == self.owner or len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if parts[1] == pid or not _alive(int(parts[1])):
                dead.append(owner)
        return dead

    async def _close(self, turn: TurnRow) -> None:
        """Close one claimed turn through ``on_orphan``; ``closed`` however that went (a turn
        Slack refuses to close must not come back every few seconds). A turn that waits on a
        question still open, with its checkpoint, is parked instead: it keeps waiting for the
        click that continues it."""
        if self.questions_continue and turn.question and turn.checkpoint is not None:
            try:
                if await self._store.park(turn.turn_id, owner=self.owner, now=_now()):
                    logger.info("turn %s keeps waiting for its question's answer", turn.turn_id)
                    return
            except McpCoreError as exc:
                logger.warning("could not keep turn %s waiting (%s); closing it", turn.turn_id, exc)
        follow: Follow | None = None
        try:
            if self._on_orphan is not None:
                follow = await self._on_orphan(turn)
        except Exception:  # boundary: one turn's closing must not stop the sweeper
            logger.exception("closing interrupted turn %s failed", turn.turn_id)
        if follow is not None:
            await self._keep(turn, follow)
            return
        try:
            await self._store.finish(turn.turn_id, owner=self.owner, state="closed", now=_now())
        except McpCoreError as exc:
            logger.warning("could not mark turn %s closed (%s)", turn.turn_id, exc)
        logger.info("closed interrupted turn %s (%d calls)", turn.turn_id, len(turn.calls))

    async def _keep(self, turn: TurnRow, follow: Follow) -> None:
        """A claimed turn goes on here for ``follow`` (written first, with what its handler
        changed). Shutting down: left released, for the next process or start to follow."""
        leaving = self.draining or self._frozen
        now = _now()
        try:
            async with self._lock:
                lease = now if leaving else now + self._lease
                await self._store.save([turn], owner=self.owner, lease_until=lease, now=now)
        except McpCoreError as exc:
            logger.warning("could not keep turn %s (%s); a sweeper takes it again", turn.turn_id, exc)
            return
        if leaving:
            logger.info("turn %s is left for the next process to follow", turn.turn_id)
            return
        task = asyncio.create_task(self._follow(turn, follow), name=f"follow-{turn.turn_id}")
        self._follows.add(task)
        task.add_done_callback(self._follows.discard)

    async def _follow(self, turn: TurnRow, follow: Follow) -> None:
        """``follow`` as this process's turn: drained, released and taken over like any other.
        Its own failure ends it (taken again, it would only fail again)."""
        self.begin(turn.turn_id, turn.team_id, turn.user_id, turn.channel_id, turn.thread_ts, taken=turn)
        try:
            await follow()
        except asyncio.CancelledError:
            await asyncio.shield(self.abandon(turn.turn_id))
            raise
        except Exception:  # boundary: the follow's handler tells its thread what it can
            logger.exception("following turn %s failed", turn.turn_id)
        await self.end(turn.turn_id)

    # -- shutdown -----------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: no new turns (``draining``); running turns get ``grace_s`` to end; the
        rest are cancelled and released. With ``sole_process`` this process then closes them
        itself; otherwise another process's sweeper does (within its sweep interval)."""
        self.draining = True
        if self._turns:
            logger.info("letting %d turns finish (at most %g s)", len(self._turns), grace_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        left = list(self._turns)
        if not left:
            return
        logger.info("%d turns did not finish in time: releasing them", len(left))
        self._frozen = True
        await self._stop(self._writer)  # no more renewals of what is released next
        rows = [self._turns[t] for t in left]
        tasks = [self._tasks[t] for t in left if t in self._tasks]
        self._mark_lost(set(left))  # nothing they do from here is written
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)
        for turn_id in left:
            self._forget(turn_id)
        try:
            async with self._lock:  # written whole, with what they owned, already expired
                now = _now()
                await self._store.save(rows, owner=self.owner, lease_until=now, now=now)
            if self._sole:
                for turn in await self._store.own_expired(owner=self.owner, now=_now()):
                    await self._close(turn)
        except McpCoreError as exc:
            logger.warning("could not release the unfinished turns (%s); their leases will run out", exc)

    async def aclose(self) -> None:
        """Stop following (released, for the next process), write what is pending, then stop
        the writer and the sweeper."""
        for task in list(self._follows):
            await self._stop(task)
        if self._dirty or self._waiters:
            await self._flush()
        await self._stop(self._writer)
        await self._stop(self._sweeper)
        await self._stop(self._stop_watch)
        self._writer = self._sweeper = self._stop_watch = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(StoreError("The bot is shutting down."))

    @staticmethod
    async def _stop(task: asyncio.Task[None] | None) -> None:
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _now() -> datetime:
    return datetime.now(UTC)
