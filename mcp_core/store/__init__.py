"""The database: schema migrations, the shared engine and the ``Store`` that queries it.

Typical wiring (the composition root owns the engine; the store only borrows it)::

    engine = create_engine(settings)
    await migrate(engine)
    store = Store(engine)
    ...
    await engine.dispose()

PostgreSQL (or Supabase) when ``DATABASE_URL`` is set, otherwise an SQLite file in
``DATA_DIR``. The schema lives in ``sql/`` as numbered, append-only migrations.
"""

from __future__ import annotations

from mcp_core.store._changes import ConnectionChanges, watch_connection_changes
from mcp_core.store._engine import create_engine
from mcp_core.store._migrations import migrate, pending_migrations
from mcp_core.store._store import UPDATABLE_FIELDS, Store
from mcp_core.store._usage import ToolUsageSummary

__all__ = [
    "UPDATABLE_FIELDS",
    "ConnectionChanges",
    "Store",
    "ToolUsageSummary",
    "create_engine",
    "migrate",
    "pending_migrations",
    "watch_connection_changes",
]
