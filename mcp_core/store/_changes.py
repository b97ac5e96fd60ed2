"""Hearing about other processes' changes to people's connections, without a query per turn.

Each process caches every person's tool catalog until it changes. Its own changes it sees at
once; those of another process (a second worker, the CLI) reach it here. Migration 0007's
triggers bump the person's row in ``mcp_catalog_versions`` on every change to their
``mcp_connections`` rows (the usage recorder's counter bumps excepted), and:

* PostgreSQL also sends ``pg_notify('mcp_catalog', {"team_id", "user_id"})`` at commit. A
  connection of our own (asyncpg, outside the engine's pool) LISTENs and hands each person on.
  It is checked every ``LISTEN_PING_INTERVAL_S`` — and once before it is trusted — by a probe
  notification it sends itself and must hear back: a connection that answers queries but is
  never delivered notifications (LISTEN through a transaction-mode pooler such as Supabase's
  port 6543, or PgBouncer) fails the probe and is never trusted, so catalogs are read from the
  database on every turn there instead of going stale. When it is lost, notifications may have been
  missed, so the listener is told to stop trusting its caches until LISTEN works again
  (reconnecting with backoff), and then to drop them all.
* SQLite cannot notify. A connection of our own asks ``PRAGMA data_version`` every
  ``SQLITE_POLL_INTERVAL_S`` (it changes when any other connection committed; no table is
  read) and only then reads the versions newer than the last one seen — an indexed range that
  is empty when the commit was only usage rows. Measured on the 2-core machine: the pragma costs
  ~3 µs and a poll with its thread hop ~135 µs of CPU (with a test suite running beside it),
  so four polls a second cost ~0.05 % of a core; a stat of the database file (and its -wal)
  is as cheap but misses a same-size rewrite within one timestamp tick (ext4 timestamps move
  with the kernel tick), which data_version cannot. It runs in a thread of its own: in
  rollback-journal mode it waits on another connection's write lock.

The listener (``ToolRegistry``) gets two calls: ``connections_changed(team, user)`` and
``watching(complete)``; the second says whether every change from now on will be reported
(True: drop every cache, then trust caches again; False: trust none until True).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

try:
    import asyncpg
except ModuleNotFoundError:  # no [postgres] extra: no PostgreSQL engine can exist either
    asyncpg = None

from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CATALOG_CHANNEL",
    "SQLITE_POLL_INTERVAL_S",
    "ChangeListener",
    "ConnectionChanges",
    "watch_connection_changes",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CATALOG_CHANNEL = "mcp_catalog"
"""The PostgreSQL notification channel of migration 0007's trigger."""
SQLITE_POLL_INTERVAL_S = 0.25
"""How stale another process's change may be on SQLite (a person edits a connection, then
mentions the bot: seconds apart)."""
SQLITE_LOCK_WAIT_S = 1.0
"""How long a poll waits for another connection's write lock before trying at the next tick."""
LISTEN_CONNECT_TIMEOUT_S = 10.0
LISTEN_PING_INTERVAL_S = 15.0
"""How often the LISTEN connection is checked (a half-open TCP connection tells nobody)."""
LISTEN_PING_TIMEOUT_S = 5.0
"""How long a probe notification may take to come back."""
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0

_CHANGES_SINCE = "SELECT team_id, user_id, version FROM mcp_catalog_versions WHERE version > ?"
_NEWEST = "SELECT coalesce(max(version), 0) FROM mcp_catalog_versions"


class ChangeListener(Protocol):
    def connections_changed(self, team_id: str, user_id: str) -> None: ...

    def watching(self, complete: bool) -> None: ...


class ConnectionChanges(abc.ABC):
    """A running watch; ``aclose()`` stops it and closes its connection."""

    def __init__(self, listener: ChangeListener) -> None:
        self._listener = listener
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once to start watching (so the first catalogs are cached at once), then keep
        watching in the background; a failure here is retried there, never raised."""
        try:
            await self._open()
        except Exception as exc:  # boundary: caches stay off until the watch works
            logger.warning("not watching connection changes yet (%s); retrying", type(exc).__name__)
            self._listener.watching(False)
            self._task = asyncio.create_task(self._reconnect_then_run(), name="connection-changes")
            return
        self._listener.watching(True)
        self._task = asyncio.create_task(self._run_then_reconnect(), name="connection-changes")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        self._listener.watching(False)

    async def _run_then_reconnect(self) -> None:
        await self._watch_until_lost()
        await self._reconnect_then_run()

    async def _reconnect_then_run(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            self._listener.watching(False)
            await self._close()
            await asyncio.sleep(delay)
            try:
                await self._open()
            except Exception as exc:  # boundary: keep trying, caches stay off meanwhile
                logger.warning("connection changes: reconnect failed (%s)", type(exc).__name__)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            logger.info("connection changes: watching again")
            delay = RECONNECT_FIRST_S
            self._listener.watching(True)
            await self._watch_until_lost()

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _watch_until_lost(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...


class _SqliteChanges(ConnectionChanges):
    def __init__(self, listener: ChangeListener, database: str, poll_s: float) -> None:
        super().__init__(listener)
        self._database = database
        self._poll_s = poll_s
        self._db: sqlite3.Connection | None = None
        self._data_version = -1
        self._seen = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="connection-changes")
        """The one thread that touches the connection: a poll cancelled by ``aclose`` still runs
        to its end there, and the close queued behind it cannot pull the database from under it."""

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    async def _open(self) -> None:
        self._db, self._data_version, self._seen = await self._in_worker(self._connect)

    def _connect(self) -> tuple[sqlite3.Connection, int, int]:
        db = sqlite3.connect(
            self._database,
            timeout=SQLITE_LOCK_WAIT_S,
            isolation_level=None,
            check_same_thread=False,  # used by one worker thread at a time, never at once
            uri=self._database.startswith("file:"),
        )
        try:
            data_version = db.execute("PRAGMA data_version").fetchone()[0]
            newest = db.execute(_NEWEST).fetchone()[0]
        except BaseException:
            db.close()
            raise
        return db, data_version, newest

    def _poll(self, db: sqlite3.Connection) -> list[tuple[str, str, int]]:
        data_version = db.execute("PRAGMA data_version").fetchone()[0]
        if data_version == self._data_version:
            return []
        rows = db.execute(_CHANGES_SINCE, (self._seen,)).fetchall()
        self._data_version = data_version
        return rows

    async def _watch_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                db = self._db
                if db is None:
                    return
                changed = await self._in_worker(functools.partial(self._poll, db))
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    continue  # a writer holds the lock: ask again at the next tick
                logger.warning("connection changes: SQLite poll failed (%s)", exc)
                return
            except sqlite3.Error as exc:
                logger.warning("connection changes: SQLite poll failed (%s)", exc)
                return
            for team_id, user_id, version in changed:
                self._seen = max(self._seen, int(version))
                self._listener.connections_changed(str(team_id), str(user_id))

    async def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._in_worker(db.close)

    async def aclose(self) -> None:
        await super().aclose()
        self._worker.shutdown(wait=False)  # idle: the close above ran after any poll


class _PostgresChanges(ConnectionChanges):
    def __init__(self, listener: ChangeListener, dsn: str) -> None:
        super().__init__(listener)
        self._dsn = dsn
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._undelivered_told = False

    async def _open(self) -> None:
        assert asyncpg is not None  # a PostgreSQL engine cannot be built without it
        self._lost = asyncio.Event()
        conn = await asyncpg.connect(
            self._dsn,
            timeout=LISTEN_CONNECT_TIMEOUT_S,
            server_settings={"application_name": "slack-mcp-bot-listener"},
        )
        try:
            conn.add_termination_listener(lambda _conn: self._lost.set())
            await asyncio.wait_for(conn.add_listener(CATALOG_CHANNEL, self._notified), LISTEN_PING_TIMEOUT_S)
            await self._probe(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _probe(self, conn: Any) -> None:
        """Send a notification on the channel and hear it back within the timeout.

        Raises:
            TimeoutError: it never came (notifications are not delivered on this connection).
        """
        token = uuid.uuid4().hex
        heard = self._probes[token] = asyncio.get_running_loop().create_future()
        try:
            probe = json.dumps({"probe": token})
            await conn.execute(f"NOTIFY {CATALOG_CHANNEL}, '{probe}'", timeout=LISTEN_PING_TIMEOUT_S)
            try:
                await asyncio.wait_for(heard, LISTEN_PING_TIMEOUT_S)
            except TimeoutError:
                if not self._undelivered_told:
                    self._undelivered_told = True
                    logger.warning(
                        "connection changes: LISTEN hears no notifications on DATABASE_URL (a "
                        "transaction-mode pooler, such as Supabase's port 6543?); catalogs are read "
                        "from the database on every turn. Use a direct or session-mode URL for speed."
                    )
                raise
        finally:
            self._probes.pop(token, None)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            person = json.loads(payload)
            if "probe" in person:  # ours is awaited; other processes' probes mean nothing here
                heard = self._probes.get(str(person["probe"]))
                if heard is not None and not heard.done():
                    heard.set_result(None)
                return
            team_id, user_id = person["team_id"], person["user_id"]
        except (ValueError, TypeError, KeyError):
            logger.warning("connection changes: unreadable notification; dropping every catalog")
            self._listener.watching(True)
            return
        self._listener.connections_changed(str(team_id), str(user_id))

    async def _watch_until_lost(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), LISTEN_PING_INTERVAL_S)
            if self._lost.is_set() or self._conn is None or self._conn.is_closed():
                logger.warning("connection changes: lost the LISTEN connection; reconnecting")
                return
            try:
                await self._probe(self._conn)
            except Exception as exc:  # boundary: any failure means the connection is gone
                logger.warning("connection changes: LISTEN connection failed (%s)", type(exc).__name__)
                return

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # immediate: a LISTEN connection has no work to finish


class _Unshared(ConnectionChanges):
    """An in-memory SQLite database: no other process can reach it."""

    async def _open(self) -> None:
        return None

    async def _watch_until_lost(self) -> None:
        await asyncio.Event().wait()

    async def _close(self) -> None:
        return None


async def watch_connection_changes(
    engine: AsyncEngine, listener: ChangeListener, *, poll_s: float = SQLITE_POLL_INTERVAL_S
) -> ConnectionChanges:
    """Start telling ``listener`` about other processes' connection changes on ``engine``'s
    database; the caller closes the result (before disposing of the engine)."""
    url = engine.url
    changes: ConnectionChanges
    if engine.dialect.name == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        changes = _PostgresChanges(listener, dsn)
    elif not url.database or url.database == ":memory:":
        changes = _Unshared(listener)
    else:
        changes = _SqliteChanges(listener, url.database, poll_s)
    await changes.start()
    return changes
