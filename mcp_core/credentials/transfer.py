"""``slack-mcp-bot credentials migrate --to <backend>``: move every stored secret to another backend.

Each connection's secrets are copied under the *same* ref and read back before they count as
moved, so nothing in the connections table has to change: the switch is setting
``CREDENTIAL_BACKEND`` to the new backend once the report has no failures. The source is never
modified, so a run that fails half-way loses nothing and simply runs again (copies are
idempotent: a put under an existing ref replaces it). Stop the bot while migrating so no
secret changes in between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mcp_core.credentials._protocol import CredentialStore
from mcp_core.credentials.backends import Selection, detect_backend, open_backend, preflight
from mcp_core.errors import ConfigError, McpCoreError
from mcp_core.settings import Settings
from mcp_core.store import Store, create_engine, migrate

logger = logging.getLogger(__name__)

__all__ = ["MigrationReport", "migrate_credentials"]


@dataclass
class MigrationReport:
    copied: int = 0
    empty: int = 0
    failed: list[str] = field(default_factory=list)
    """``team/user/connection`` of each record that could not be copied (never a secret)."""


async def migrate_credentials(settings: Settings, target: str) -> MigrationReport:
    """Copy every connection's secrets from the current backend to ``target`` and verify them.

    Raises:
        ConfigError: ``target`` is the current backend, or either backend is misconfigured.
    """
    source_selection = detect_backend(settings)
    if source_selection.backend == target:
        raise ConfigError(
            f"The credentials already live in the {target} backend ({source_selection.reason})."
        )
    target_selection = Selection(target, "--to")
    preflight(source_selection, settings)
    preflight(target_selection, settings)
    engine = create_engine(settings)
    report = MigrationReport()
    opened: list[CredentialStore] = []
    try:
        await migrate(engine)
        source = await open_backend(source_selection, settings, engine)
        opened.append(source)
        destination = await open_backend(target_selection, settings, engine)
        opened.append(destination)
        for team_id, user_id, ref, name in await Store(engine).credential_owners():
            where = f"{team_id}/{user_id}/{name}"
            try:
                values = dict(await source.get(team_id, user_id, ref))
                if not values:
                    report.empty += 1
                    continue
                await destination.put(team_id, user_id, values, ref=ref)
                if dict(await destination.get(team_id, user_id, ref)) != values:
                    raise ConfigError("the copy read back differently")
            except McpCoreError as exc:
                logger.warning("could not migrate the credentials of %s: %s", where, exc)
                report.failed.append(where)
                continue
            report.copied += 1
    finally:
        for backend in opened:
            await backend.aclose()
        await engine.dispose()
    return report
