"""The store: every database read and write the app makes, on a borrowed engine.

Each public method is one transaction. Every query on user data is scoped by the
``(team_id, user_id)`` the caller took from the verified Slack request, so a user can neither
read nor change another user's rows even with a guessed id. SQLAlchemy and driver errors are
translated here into :class:`~mcp_core.errors.StoreError` with texts fit for users.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_core.errors import ConnectionNotFoundError, DuplicateConnectionError
from mcp_core.models import (
    AnswerFeedback,
    AuditEntry,
    Connection,
    ConnectionStatus,
    InstallationRecord,
    NewConnection,
    ToolInfo,
    ToolPrefs,
    TurnRecord,
    UsageChart,
    UsageRecord,
    Vote,
    normalize_connection_name,
)
from mcp_core.store import _installations
from mcp_core.store._bulk import execute_many
from mcp_core.store._engine import check_engine, transaction, writer
from mcp_core.store._rollups import write_rollups
from mcp_core.store._stats import RollupRows, read_rollups
from mcp_core.store._tables import (
    agent_turns,
    answer_feedback,
    audit_log,
    connections,
    metadata,
    slack_events,
    slack_installations,
    tool_usage,
    usage_charts,
    workspace_policy,
    workspace_removals,
)
from mcp_core.store._team_stats import TeamRows, read_team_rollups
from mcp_core.store._usage import BUMP_COUNTERS, INSERT_ROWS, ToolUsageSummary, batch_params, summary_query

__all__ = ["UPDATABLE_FIELDS", "Store", "ToolUsageSummary"]

PRUNE_BATCH = 10_000
"""Raw usage rows one pruning transaction deletes at most."""

# The connection fields a user may edit after creating it.
UPDATABLE_FIELDS = frozenset({"name", "transport", "url", "args", "config", "credential_ref"})


class Store:
    """Typed access to connections, tool usage, agent turns, answer feedback, card popularity and
    Slack event dedupe.

    Takes an engine built by :func:`mcp_core.store.create_engine` and migrated with
    :func:`mcp_core.store._migrations`; it never disposes of it (the creator does).

    Raises:
        ConfigError: the engine is not PostgreSQL or SQLite from ``create_engine``.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        check_engine(engine)
        self._engine = engine
        self._writer = writer(engine)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # -- connections -------------------------------------------------------------------------

    async def create_connection(self, team_id: str, user_id: str, new: NewConnection) -> Connection:
        """Store a new connection with status ``new`` and no tools.

        Raises:
            DuplicateConnectionError: this user already has a connection with that name.
            StoreError: the database failed; nothing was written.
        """
        now = _utcnow()
        values = {
            **new.model_dump(),
            "id": uuid.uuid4(),
            "team_id": team_id,
            "user_id": user_id,
            "status": ConnectionStatus.NEW.value,
            "tools": [],
            "tool_prefs": ToolPrefs().stored(),
            "usage_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        query = sa.insert(connections).values(values).returning(*connections.c)
        async with self._transaction(write=True) as conn:
            try:
                row = (await conn.execute(query)).one()
            except sa.exc.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise DuplicateConnectionError(new.name) from exc
                raise
        return _connection(row)

    async def get_connection(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> Connection:
        """Return the user's connection with this id.

        Raises:
            ConnectionNotFoundError: no such connection for this user.
            StoreError: the database failed.
        """
        query = sa.select(connections).where(*_owned(team_id, user_id, connection_id))
        async with self._transaction() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise ConnectionNotFoundError(str(connection_id))
        return _connection(row)

    async def find_connection(self, team_id: str, user_id: str, name: str) -> Connection | None:
        """Return the user's connection named ``name`` (any case), or None.

        Raises:
            StoreError: the database failed.
        """
        try:
            canonical = normalize_connection_name(name)
        except ValueError:
            return None  # no stored name can be invalid
        query = sa.select(connections).where(
            connections.c.team_id == team_id,
            connections.c.user_id == user_id,
            connections.c.name == canonical,
        )
        async with self._transaction() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _connection(row)

    async def list_connections(self, team_id: str, user_id: str) -> list[Connection]:
        """Return all of the user's connections, ordered by name.

        Raises:
            StoreError: the database failed.
        """
        query = (
            sa.select(connections)
            .where(connections.c.team_id == team_id, connections.c.user_id == user_id)
            .order_by(connections.c.name)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [_connection(row) for row in rows]

    async def credential_owners(self) -> list[tuple[str, str, str, str]]:
        """(team, user, credential_ref, connection name) of every connection with secrets.

        Not scoped to a user on purpose: only operator commands (``credentials migrate``) call it,
        never anything a Slack request reaches.

        Raises:
            StoreError: the database failed.
        """
        c = connections.c
        query = (
            sa.select(c.team_id, c.user_id, c.credential_ref, c.name)
            .where(c.credential_ref.is_not(None))
            .order_by(c.team_id, c.user_id, c.name)
        )
        async with self._transaction() as conn:
            return [tuple(row) for row in (await conn.execute(query)).all()]

    async def save_tools(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        tools: list[ToolInfo],
        verified_at: datetime,
    ) -> None:
        """Replace the connection's tool list after a successful discovery; marks it healthy.

        Raises:
            ConnectionNotFoundError: no such connection for this user.
            StoreError: the database failed.
        """
        await self._update_owned(
            team_id,
            user_id,
            connection_id,
            tools=[tool.model_dump(mode="json") for tool in tools],
            last_verified_at=verified_at,
            status=ConnectionStatus.HEALTHY.value,
            status_detail=None,
        )

    async def set_status(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        status: ConnectionStatus,
        detail: str | None = None,
    ) -> None:
        """Record the connection's health, with a user-safe detail (e.g. the last error).

        Raises:
            ConnectionNotFoundError: no such connection for this user.
            StoreError: the database failed.
        """
        await self._update_owned(
            team_id, user_id, connection_id, status=ConnectionStatus(status).value, status_detail=detail
        )

    async def update_connection(
        self, team_id: str, user_id: str, connection_id: uuid.UUID, **changes: Any
    ) -> Connection:
        """Change some of ``name``, ``transport``, ``url``, ``args``, ``config``, ``credential_ref``.

        The result is validated as a whole (a remote connection keeps a URL, names stay
        canonical) before anything is written.

        Raises:
            ValueError: an unknown field, or the changed connection would be invalid.
            ConnectionNotFoundError: no such connection for this user.
            DuplicateConnectionError: the new name is taken by another of the user's connections.
            StoreError: the database failed.
        """
        unknown = changes.keys() - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"These connection fields cannot be changed: {', '.join(sorted(unknown))}")
        owned = _owned(team_id, user_id, connection_id)
        async with self._transaction(write=True) as conn:
            current = (
                await conn.execute(sa.select(connections).where(*owned).with_for_update())
            ).one_or_none()
            if current is None:
                raise ConnectionNotFoundError(str(connection_id))
            merged = NewConnection.model_validate({**_connection(current).model_dump(), **changes})
            values = {field: getattr(merged, field) for field in changes}
            query = (
                sa.update(connections)
                .where(*owned)
                .values(**values, updated_at=_utcnow())
                .returning(*connections.c)
            )
            try:
                row = (await conn.execute(query)).one()
            except sa.exc.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise DuplicateConnectionError(merged.name) from exc
                raise
        return _connection(row)

    async def set_tool_pref(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        kind: Literal["off", "always"],
        tool: str,
        chosen: bool,
        *,
        fingerprint: str = "",
    ) -> Connection:
        """Add ``tool`` to the connection's ``off`` or ``always`` set (``chosen``), or remove it;
        ``fingerprint``: the definition an ``always`` is for (``ToolPrefs``).

        Read and written in one transaction (the row locked on PostgreSQL), so two clicks at
        once do not lose each other's change. Which names may be chosen is the caller's rule
        (``ToolRegistry``); the store keeps what it is given.

        Raises:
            ConnectionNotFoundError: no such connection for this user.
            StoreError: the database failed.
        """
        owned = _owned(team_id, user_id, connection_id)
        async with self._transaction(write=True) as conn:
            current = (
                await conn.execute(sa.select(connections.c.tool_prefs).where(*owned).with_for_update())
            ).one_or_none()
            if current is None:
                raise ConnectionNotFoundError(str(connection_id))
            prefs = ToolPrefs.model_validate(current.tool_prefs or {}).with_choice(
                kind, tool, chosen, fingerprint=fingerprint
            )
            query = (
                sa.update(connections)
                .where(*owned)
                .values(tool_prefs=prefs.stored(), updated_at=_utcnow())
                .returning(*connections.c)
            )
            row = (await conn.execute(query)).one()
        return _connection(row)

    async def delete_connection(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> bool:
        """Delete the user's connection; its usage rows stay, unlinked. False if there was none.

        Raises:
            StoreError: the database failed.
        """
        query = sa.delete(connections).where(*_owned(team_id, user_id, connection_id))
        async with self._transaction(write=True) as conn:
            result = await conn.execute(query)
        return result.rowcount > 0

    # -- tool usage ----------------------------------------------------------------------------

    async def record_usage(self, rows: Sequence[UsageRecord | TurnRecord]) -> None:
        """Write a batch of tool calls and agent turns, and bump each touched connection's
        counters, atomically.

        Called by a background batcher, so it costs at most seven batched statements whatever
        the size (the raw rows, and the daily rollups they add to: ``_rollups``). A tool call
        whose connection is gone (or belongs to someone else) is kept with no link.

        Raises:
            StoreError: the database failed; nothing from the batch was written.
        """
        calls = [row for row in rows if isinstance(row, UsageRecord)]
        turn_records = [row for row in rows if isinstance(row, TurnRecord)]
        turns = [row.model_dump() for row in turn_records]
        if not calls and not turns:
            return
        counters, inserts = batch_params(calls)
        async with self._transaction(write=True) as conn:
            # Counters first: on PostgreSQL their row locks hold off a concurrent delete, so
            # the link INSERT_ROWS looks up cannot vanish before commit.
            await execute_many(conn, BUMP_COUNTERS, counters)
            await execute_many(conn, INSERT_ROWS, inserts)
            if turns:
                await conn.execute(sa.insert(agent_turns), turns)
            await write_rollups(conn, calls, turn_records)

    async def prune_usage(self, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
        """Delete raw tool-call and agent-turn rows older than ``before`` (their daily rollups
        stay), ``batch`` rows per transaction so no lock is held for long; how many went.

        Raises:
            StoreError: the database failed (what was deleted before stays deleted).
        """
        removed = 0
        for table in (tool_usage, agent_turns):
            while True:
                old = sa.select(table.c.id).where(table.c.created_at < before).limit(batch)
                async with self._transaction(write=True) as conn:
                    delete = sa.delete(table).where(table.c.id.in_(old.scalar_subquery()))
                    gone = (await conn.execute(delete)).rowcount
                removed += gone
                if gone < batch:
                    break
        return removed

    async def card_use(self, team_id: str) -> dict[str, int]:
        """How many people of the team have a connection made from each run card (counts
        only: no names), for the "your teammates use …" suggestion.

        Raises:
            StoreError: the database failed.
        """
        c = connections.c
        query = (
            sa.select(c.card_id, sa.func.count(sa.distinct(c.user_id)))
            .where(c.team_id == team_id, c.card_id.is_not(None))
            .group_by(c.card_id)
        )
        async with self._transaction() as conn:
            return {str(card): int(n) for card, n in (await conn.execute(query)).all()}

    async def usage_rollups(self, team_id: str, user_id: str, since: date) -> RollupRows:
        """One person's daily rollups from ``since`` (UTC day) on: per tool with latency
        buckets, errors by class, tokens per model, calls per day, 👍 / 👎 (``mcp_core.stats``
        makes them readable).

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await read_rollups(conn, team_id, user_id, since)

    async def team_rollups(self, team_id: str, since: date) -> TeamRows:
        """The workspace's usage from ``since`` (UTC day) on, for its admins: calls per server
        and tool and per day, errors by class, tokens per model, people asking, connections
        per card and server, connections waiting for a sign-in (``mcp_core.team_stats``).

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await read_team_rollups(conn, team_id, since)

    # -- workspace policy and audit log ----------------------------------------------------------

    async def workspace_policy(self, team_id: str) -> dict[str, Any] | None:
        """The workspace's saved policy (``mcp_core.policy.Policy`` as JSON), None if never set.

        Raises:
            StoreError: the database failed.
        """
        query = sa.select(workspace_policy.c.policy).where(workspace_policy.c.team_id == team_id)
        async with self._transaction() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
        return dict(found) if found is not None else None

    async def save_policy(
        self, team_id: str, actor_id: str, policy: dict[str, Any], change: dict[str, Any]
    ) -> None:
        """Replace the workspace's policy and log ``change`` by ``actor_id``, atomically.

        Raises:
            StoreError: the database failed; neither was written.
        """
        now = _utcnow()
        insert = (postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert)(
            workspace_policy
        ).values(team_id=team_id, policy=policy, updated_by=actor_id, updated_at=now)
        upsert = insert.on_conflict_do_update(
            index_elements=["team_id"],
            set_={"policy": insert.excluded.policy, "updated_by": actor_id, "updated_at": now},
        )
        async with self._transaction(write=True) as conn:
            await conn.execute(upsert)
            await conn.execute(
                sa.insert(audit_log).values(
                    team_id=team_id, actor_id=actor_id, action="policy_changed", detail=change, created_at=now
                )
            )

    async def add_audit(self, team_id: str, actor_id: str, action: str, detail: dict[str, Any]) -> None:
        """Append one entry to the workspace's audit log.

        Raises:
            StoreError: the database failed.
        """
        row = {"team_id": team_id, "actor_id": actor_id, "action": action, "detail": detail}
        async with self._transaction(write=True) as conn:
            await conn.execute(sa.insert(audit_log).values(**row, created_at=_utcnow()))

    async def list_audit(
        self, team_id: str, *, limit: int = 50, since: datetime | None = None
    ) -> list[AuditEntry]:
        """The workspace's newest audit entries first, at most ``limit``, optionally from ``since``.

        Raises:
            StoreError: the database failed.
        """
        a = audit_log.c
        query = sa.select(audit_log).where(a.team_id == team_id)
        if since is not None:
            query = query.where(a.created_at >= since)
        query = query.order_by(a.created_at.desc(), a.id.desc()).limit(limit)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEntry.model_validate(dict(row._mapping)) for row in rows]

    # -- Slack installations (a distributed app: mcp_core.store._installations) -------------------

    async def save_installation(self, record: InstallationRecord) -> str | None:
        """Insert or replace an installer's installation (and cancel a pending purge of the
        workspace); the credential ref it replaced, whose secret the caller deletes.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction(write=True) as conn:
            return await _installations.save_installation(conn, record)

    async def newest_installation(
        self, client_id: str, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> InstallationRecord | None:
        """The workspace's (org's, with team '') newest installation, or that installer's.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await _installations.newest_installation(conn, client_id, enterprise_id, team_id, user_id)

    async def installation_for_team(self, client_id: str, team_id: str) -> InstallationRecord | None:
        """The installation answering for ``team_id`` when its org is not known (work begun
        outside a request): its own, else its org's org-wide one.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await _installations.installation_for_team(conn, client_id, team_id)

    async def remember_workspace(self, team_id: str, enterprise_id: str) -> None:
        """Note which Enterprise Grid org ``team_id`` is in (its requests say so).

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction(write=True) as conn:
            await _installations.remember_workspace(conn, team_id, enterprise_id, _utcnow())

    async def delete_installations(
        self, client_id: str, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> list[InstallationRecord]:
        """Delete a workspace's installations (one installer's with ``user_id``); the rows gone,
        whose secrets the caller deletes.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction(write=True) as conn:
            return await _installations.delete_installations(conn, client_id, enterprise_id, team_id, user_id)

    async def count_installations(self, client_id: str) -> tuple[int, int]:
        """(workspaces and orgs installed, installation rows) of the app ``client_id``.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await _installations.count_installations(conn, client_id)

    async def issue_oauth_state(self, state: str, expires_at: datetime) -> None:
        """Raises: StoreError: the database failed."""
        async with self._transaction(write=True) as conn:
            await _installations.issue_state(conn, state, expires_at)

    async def consume_oauth_state(self, state: str) -> bool:
        """Whether an install's ``state`` is one we issued, unexpired; it is gone afterwards.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction(write=True) as conn:
            return await _installations.consume_state(conn, state, _utcnow())

    async def schedule_workspace_removal(
        self, enterprise_id: str, team_id: str, reason: str, purge_after: datetime
    ) -> None:
        """Mark the workspace's people's data for deletion after ``purge_after``.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction(write=True) as conn:
            await _installations.schedule_removal(
                conn, enterprise_id, team_id, reason, _utcnow(), purge_after
            )

    async def due_workspace_removals(self) -> list[tuple[str, str]]:
        """(enterprise, team) of workspaces whose grace period is over, oldest first.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await _installations.due_removals(conn, _utcnow())

    async def list_team_connections(self, team_id: str) -> list[Connection]:
        """Every connection of the team, by person and name (an admin's export: the rows hold
        no secret, only refs to them).

        Raises:
            StoreError: the database failed.
        """
        c = connections.c
        query = sa.select(connections).where(c.team_id == team_id).order_by(c.user_id, c.name)
        async with self._transaction() as conn:
            return [_connection(row) for row in (await conn.execute(query)).all()]

    async def team_users_with_connections(self, team_id: str) -> list[str]:
        """Everyone of the team who has a connection (for purging a removed workspace).

        Raises:
            StoreError: the database failed.
        """
        c = connections.c
        query = sa.select(c.user_id).where(c.team_id == team_id).distinct().order_by(c.user_id)
        async with self._transaction() as conn:
            return [str(u) for u in (await conn.execute(query)).scalars().all()]

    async def purge_team(self, team_id: str, enterprise_id: str) -> dict[str, int]:
        """Delete every row of the team in every table that has a ``team_id`` (what is left
        once its connections went through the connection service), and its removal mark;
        rows deleted per table.

        Raises:
            StoreError: the database failed; nothing was deleted.
        """
        removed: dict[str, int] = {}
        async with self._transaction(write=True) as conn:
            for table in reversed(metadata.sorted_tables):  # children before their parents
                if "team_id" in table.c and table is not slack_installations:
                    gone = (await conn.execute(sa.delete(table).where(table.c.team_id == team_id))).rowcount
                    if gone:
                        removed[table.name] = gone
            r = workspace_removals.c
            await conn.execute(
                sa.delete(workspace_removals).where(r.team_id == team_id, r.enterprise_id == enterprise_id)
            )
        return removed

    async def list_turns(self, team_id: str, user_id: str, since: datetime | None = None) -> list[TurnRecord]:
        """The person's recorded agent turns (tokens, rounds, tool calls), oldest first,
        optionally from ``since``.

        Raises:
            StoreError: the database failed.
        """
        t = agent_turns.c
        query = (
            sa.select(*(c for c in agent_turns.c if c.name != "id"))
            .where(t.team_id == team_id, t.user_id == user_id)
            .order_by(t.created_at, t.id)
        )
        if since is not None:
            query = query.where(t.created_at >= since)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [TurnRecord.model_validate(dict(row._mapping)) for row in rows]

    async def usage_summary(
        self, team_id: str, user_id: str, since: datetime | None = None
    ) -> list[ToolUsageSummary]:
        """Summarise the user's tool calls per connection and tool, optionally from ``since``.

        Raises:
            StoreError: the database failed.
        """
        query = summary_query(team_id, user_id, since)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [ToolUsageSummary.model_validate(dict(row._mapping)) for row in rows]

    # -- usage charts --------------------------------------------------------------------------

    async def save_usage_chart(
        self, team_id: str, user_id: str, *, file_id: str, permalink: str, days: int
    ) -> UsageChart:
        """Remember the chart just sent to this person; it replaces the one before.

        Raises:
            StoreError: the database failed.
        """
        chart = UsageChart(
            team_id=team_id,
            user_id=user_id,
            file_id=file_id,
            permalink=permalink,
            days=days,
            created_at=_utcnow(),
        )
        u = usage_charts.c
        values = chart.model_dump()
        query = (
            self._insert(usage_charts)
            .values(values)
            .on_conflict_do_update(
                index_elements=[u.team_id, u.user_id],
                set_={k: values[k] for k in ("file_id", "permalink", "days", "created_at")},
            )
        )
        async with self._transaction(write=True) as conn:
            await conn.execute(query)
        return chart

    async def usage_chart(self, team_id: str, user_id: str) -> UsageChart | None:
        """The newest chart sent to this person, if any.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            return await _read_usage_chart(conn, team_id, user_id)

    async def home_usage(
        self, team_id: str, user_id: str, since: date
    ) -> tuple[RollupRows, UsageChart | None]:
        """The App Home's usage section in one read: ``usage_rollups`` and ``usage_chart``.

        Raises:
            StoreError: the database failed.
        """
        async with self._transaction() as conn:
            rows = await read_rollups(conn, team_id, user_id, since)
            return rows, await _read_usage_chart(conn, team_id, user_id)

    # -- Slack events --------------------------------------------------------------------------

    async def claim_event(self, event_id: str, team_id: str | None) -> bool:
        """Claim a Slack event for this process; False if any process claimed it before.

        Raises:
            StoreError: the database failed (the caller should not assume either answer).
        """
        query = (
            self._insert(slack_events)
            .values(event_id=event_id, team_id=team_id, received_at=_utcnow())
            .on_conflict_do_nothing(index_elements=[slack_events.c.event_id])
            .returning(slack_events.c.event_id)
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(query)).first() is not None

    async def purge_events(self, older_than: datetime) -> int:
        """Forget claims received before ``older_than`` (Slack stops retrying after minutes).

        Raises:
            StoreError: the database failed.
        """
        query = sa.delete(slack_events).where(slack_events.c.received_at < older_than)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(query)
        return result.rowcount

    # -- answer feedback -----------------------------------------------------------------------

    async def record_feedback(self, team_id: str, user_id: str, turn_id: str, vote: Vote) -> None:
        """Record this person's vote on one answer; a later vote of theirs replaces it.

        ``team_id`` and ``user_id`` are the verified clicker's; ``turn_id`` comes from the
        button, so it may name no turn at all (then the row names nothing, harmlessly).

        Raises:
            StoreError: the database failed.
        """
        now = _utcnow()
        f = answer_feedback.c
        row = {"team_id": team_id, "turn_id": turn_id, "user_id": user_id, "vote": vote}
        query = (
            self._insert(answer_feedback)
            .values(**row, created_at=now, updated_at=now)
            .on_conflict_do_update(
                index_elements=[f.team_id, f.turn_id, f.user_id], set_={"vote": vote, "updated_at": now}
            )
        )
        async with self._transaction(write=True) as conn:
            await conn.execute(query)

    async def turn_feedback(self, team_id: str, turn_id: str) -> list[AnswerFeedback]:
        """The votes on one answer of this team, by voter.

        Raises:
            StoreError: the database failed.
        """
        f = answer_feedback.c
        query = (
            sa.select(f.team_id, f.turn_id, f.user_id, f.vote, f.updated_at)
            .where(f.team_id == team_id, f.turn_id == turn_id)
            .order_by(f.user_id)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [AnswerFeedback.model_validate(dict(row._mapping)) for row in rows]

    # -- card popularity -----------------------------------------------------------------------

    async def card_popularity(self, team_id: str) -> dict[str, int]:
        """How many of the team's connections were made from each card (``card_id`` → count).

        Raises:
            StoreError: the database failed.
        """
        c = connections.c
        query = (
            sa.select(c.card_id, sa.func.count())
            .where(c.team_id == team_id, c.card_id.is_not(None))
            .group_by(c.card_id)
        )
        async with self._transaction() as conn:
            return {str(card): int(count) for card, count in (await conn.execute(query)).all()}

    # -- plumbing ------------------------------------------------------------------------------

    async def healthcheck(self) -> None:
        """Check the database answers.

        Raises:
            StoreError: it does not.
        """
        async with self._transaction() as conn:
            await conn.execute(sa.select(sa.literal(1)))

    async def _update_owned(
        self, team_id: str, user_id: str, connection_id: uuid.UUID, **values: Any
    ) -> None:
        query = (
            sa.update(connections)
            .where(*_owned(team_id, user_id, connection_id))
            .values(**values, updated_at=_utcnow())
        )
        async with self._transaction(write=True) as conn:
            result = await conn.execute(query)
        if result.rowcount == 0:
            raise ConnectionNotFoundError(str(connection_id))

    def _transaction(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction, committed on success; foreign errors become ``StoreError``."""
        return transaction(self._writer if write else self._engine)


def _owned(team_id: str, user_id: str, connection_id: uuid.UUID) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        connections.c.id == connection_id,
        connections.c.team_id == team_id,
        connections.c.user_id == user_id,
    )


async def _read_usage_chart(conn: AsyncConnection, team_id: str, user_id: str) -> UsageChart | None:
    u = usage_charts.c
    query = sa.select(*usage_charts.c).where(u.team_id == team_id, u.user_id == user_id)
    row = (await conn.execute(query)).first()
    return UsageChart.model_validate(dict(row._mapping)) if row is not None else None


def _connection(row: sa.Row[Any]) -> Connection:
    return Connection.model_validate(dict(row._mapping))


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    return (
        getattr(orig, "sqlstate", None) == "23505"  # PostgreSQL unique_violation
        or getattr(orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_UNIQUE"
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)
