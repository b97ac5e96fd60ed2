"""The SQL of a distributed Slack app's installations (migration 0013): the rows Bolt's
installation store reads and writes (tokens are never here, only the credential manager's ref),
its OAuth states, and workspaces waiting for their data to be purged.

Keys are (client_id, enterprise_id, team_id, user_id) with '' for "none", so an Enterprise
Grid org-wide install (team '') and a plain workspace (enterprise '') share one key space
without NULL comparisons.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_core.models import InstallationRecord
from mcp_core.store._tables import (
    slack_installations,
    slack_oauth_states,
    slack_workspaces,
    workspace_removals,
)

__all__ = [
    "consume_state",
    "count_installations",
    "delete_installations",
    "due_removals",
    "installation_for_team",
    "issue_state",
    "newest_installation",
    "remember_workspace",
    "save_installation",
    "schedule_removal",
]

_i = slack_installations.c


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def save_installation(conn: AsyncConnection, record: InstallationRecord) -> str | None:
    """Insert or replace the installer's row; the credential ref it replaced, if another."""
    key = _key(record.client_id, record.enterprise_id, record.team_id)
    old = (
        await conn.execute(sa.select(_i.credential_ref).where(*key, _i.user_id == record.user_id))
    ).scalar_one_or_none()
    insert = _insert(conn, slack_installations).values(**record.model_dump())
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["client_id", "enterprise_id", "team_id", "user_id"],
            set_={
                "is_enterprise_install": insert.excluded.is_enterprise_install,
                "data": insert.excluded.data,
                "credential_ref": insert.excluded.credential_ref,
                "installed_at": insert.excluded.installed_at,
            },
        )
    )
    await conn.execute(
        sa.delete(workspace_removals).where(
            workspace_removals.c.enterprise_id == record.enterprise_id,
            workspace_removals.c.team_id == record.team_id,
        )
    )
    return old if old is not None and old != record.credential_ref else None


async def newest_installation(
    conn: AsyncConnection, client_id: str, enterprise_id: str, team_id: str, user_id: str | None = None
) -> InstallationRecord | None:
    query = sa.select(slack_installations).where(*_key(client_id, enterprise_id, team_id))
    if user_id is not None:
        query = query.where(_i.user_id == user_id)
    row = (await conn.execute(query.order_by(_i.installed_at.desc()).limit(1))).one_or_none()
    return None if row is None else InstallationRecord.model_validate(dict(row._mapping))


async def installation_for_team(
    conn: AsyncConnection, client_id: str, team_id: str
) -> InstallationRecord | None:
    """The newest installation answering for ``team_id`` when its org is not known: the
    workspace's own (in whichever org), else its org's org-wide one (``mcp_slack_workspaces``)."""
    own = (
        sa.select(slack_installations)
        .where(_i.client_id == client_id, _i.team_id == team_id)
        .order_by(_i.installed_at.desc())
        .limit(1)
    )
    row = (await conn.execute(own)).one_or_none()
    if row is None:
        w = slack_workspaces.c
        org = sa.select(w.enterprise_id).where(w.team_id == team_id).scalar_subquery()
        wide = (
            sa.select(slack_installations)
            .where(_i.client_id == client_id, _i.team_id == "", _i.enterprise_id == org)
            .order_by(_i.installed_at.desc())
            .limit(1)
        )
        row = (await conn.execute(wide)).one_or_none()
    return None if row is None else InstallationRecord.model_validate(dict(row._mapping))


async def remember_workspace(conn: AsyncConnection, team_id: str, enterprise_id: str, now: datetime) -> None:
    insert = _insert(conn, slack_workspaces).values(team_id=team_id, enterprise_id=enterprise_id, seen_at=now)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["team_id"], set_={"enterprise_id": enterprise_id, "seen_at": now}
        )
    )


async def delete_installations(
    conn: AsyncConnection, client_id: str, enterprise_id: str, team_id: str, user_id: str | None = None
) -> list[InstallationRecord]:
    """Delete the workspace's rows (one installer's, with ``user_id``); the rows deleted."""
    where = [*_key(client_id, enterprise_id, team_id)]
    if user_id is not None:
        where.append(_i.user_id == user_id)
    rows = (await conn.execute(sa.select(slack_installations).where(*where))).all()
    await conn.execute(sa.delete(slack_installations).where(*where))
    return [InstallationRecord.model_validate(dict(row._mapping)) for row in rows]


async def count_installations(conn: AsyncConnection, client_id: str) -> tuple[int, int]:
    """(workspaces or orgs installed, installation rows)."""
    workspaces = sa.select(sa.func.count()).select_from(
        sa.select(_i.enterprise_id, _i.team_id).where(_i.client_id == client_id).distinct().subquery()
    )
    rows = sa.select(sa.func.count()).select_from(slack_installations).where(_i.client_id == client_id)
    return int((await conn.execute(workspaces)).scalar_one()), int((await conn.execute(rows)).scalar_one())


async def issue_state(conn: AsyncConnection, state: str, expires_at: datetime) -> None:
    await conn.execute(sa.insert(slack_oauth_states).values(state=state, expires_at=expires_at))


async def consume_state(conn: AsyncConnection, state: str, now: datetime) -> bool:
    """Whether ``state`` was issued and has not expired; it cannot be used again either way."""
    s = slack_oauth_states.c
    found = (await conn.execute(sa.select(s.expires_at).where(s.state == state))).scalar_one_or_none()
    await conn.execute(sa.delete(slack_oauth_states).where(sa.or_(s.state == state, s.expires_at < now)))
    return found is not None and found > now


async def schedule_removal(
    conn: AsyncConnection, enterprise_id: str, team_id: str, reason: str, now: datetime, purge_after: datetime
) -> None:
    """Mark the workspace for purging; a workspace already marked keeps its first date."""
    insert = _insert(conn, workspace_removals).values(
        enterprise_id=enterprise_id, team_id=team_id, reason=reason, removed_at=now, purge_after=purge_after
    )
    await conn.execute(insert.on_conflict_do_nothing(index_elements=["enterprise_id", "team_id"]))


async def due_removals(conn: AsyncConnection, now: datetime) -> list[tuple[str, str]]:
    r = workspace_removals.c
    query = sa.select(r.enterprise_id, r.team_id).where(r.purge_after <= now).order_by(r.purge_after)
    return [(str(e), str(t)) for e, t in (await conn.execute(query)).all()]


def _key(client_id: str, enterprise_id: str, team_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (_i.client_id == client_id, _i.enterprise_id == enterprise_id, _i.team_id == team_id)
