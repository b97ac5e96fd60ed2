"""The composition root: build every real component from ``Settings`` in one place.

Tests build the same ``Services`` with their own parts (a temporary database, a secret
source of their own) through the keyword arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.connections import ConnectionPool
from mcp_core.registry import SecretSource, ToolRegistry
from mcp_core.settings import Settings
from mcp_core.store import Store, create_engine
from mcp_core.store.migrate import migrate
from mcp_core.usage import UsageRecorder

logger = logging.getLogger(__name__)

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    settings: Settings
    store: Store
    pool: ConnectionPool
    usage: UsageRecorder
    registry: ToolRegistry
    _engine: AsyncEngine | None = None

    async def aclose(self) -> None:
        """Close sessions (reaping children), flush usage, then release the engine we made."""
        await self.pool.aclose()
        await self.usage.aclose()
        if self._engine is not None:
            await self._engine.dispose()


async def build_services(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    secrets: SecretSource | None = None,
    run_migrations: bool = True,
) -> Services:
    """Wire the real store, pool, usage recorder and registry; migrate the schema first."""
    owned = engine is None
    engine = engine or create_engine(settings)
    if run_migrations:
        applied = await migrate(engine)
        if applied:
            logger.info("applied database migrations %s", applied)
    store = Store(engine)
    usage = UsageRecorder(store)
    pool = ConnectionPool(idle_timeout_s=settings.mcp_idle_timeout_s, max_sessions=settings.mcp_max_sessions)
    registry = ToolRegistry(store, pool, usage, settings, secrets)
    pool.on_tools_changed = registry.on_tools_changed
    return Services(settings, store, pool, usage, registry, engine if owned else None)
