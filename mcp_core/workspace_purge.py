"""Deleting a removed workspace's data once its grace period is over (a distributed app).

A workspace that uninstalls the app, or revokes its bot token, has its tokens deleted at once
(``bot.distribution``) and is marked in ``mcp_workspace_removals`` with a date
(``SLACK_UNINSTALL_GRACE_DAYS`` later). ``WorkspacePurger`` checks every hour: each workspace
past its date loses every person's connections through the connection service — live sessions
closed, OAuth grants revoked, secrets deleted from whichever credential backend holds them —
and then every row of the team in every table (usage, turns, policy, audit, …). A reinstall
before the date removes the mark, and nothing is deleted. Every process checks; the deletes
are idempotent.
"""

from __future__ import annotations

import logging

from mcp_core.connection_service import ConnectionService
from mcp_core.errors import McpCoreError
from mcp_core.periodic import Periodic
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = ["WorkspacePurger", "purge_workspace"]

PURGE_EVERY_S = 3600.0
PURGE_FIRST_AFTER_S = 120.0


async def purge_workspace(
    store: Store, connections: ConnectionService, enterprise_id: str, team_id: str
) -> int:
    """Delete everything of ``team_id``: connections (and their secrets) first, then its rows;
    how many connections went.

    Raises:
        StoreError: the database failed (what was deleted stays deleted; the next pass goes on).
    """
    removed = 0
    for user_id in await store.team_users_with_connections(team_id):
        for connection in await store.list_connections(team_id, user_id):
            try:
                await connections.disconnect(team_id, user_id, connection)
            except McpCoreError as exc:  # its row goes below all the same; the secret may linger
                logger.warning("could not disconnect %s of a removed workspace: %s", connection.id, exc)
            removed += 1
    rows = await store.purge_team(team_id, enterprise_id)
    logger.info("purged workspace %s: %d connections, rows %s", team_id, removed, rows)
    return removed


class WorkspacePurger(Periodic):
    """Purges removed workspaces whose grace period is over, a little after start and then every
    ``every_s`` (``mcp_core.periodic``)."""

    name = "workspace-purger"

    def __init__(
        self,
        store: Store,
        connections: ConnectionService,
        *,
        every_s: float = PURGE_EVERY_S,
        first_after_s: float = PURGE_FIRST_AFTER_S,
    ) -> None:
        super().__init__(every_s=every_s, first_after_s=first_after_s)
        self._store, self._connections = store, connections

    async def purge_due(self) -> int:
        """One pass; how many workspaces were purged. Never raises."""
        purged = 0
        try:
            for enterprise_id, team_id in await self._store.due_workspace_removals():
                await purge_workspace(self._store, self._connections, enterprise_id, team_id)
                purged += 1
        except Exception:  # boundary: housekeeping must not take the bot down
            logger.exception("could not purge removed workspaces")
        return purged

    run_once = purge_due
