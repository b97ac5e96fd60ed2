"""The interface every credential backend implements: a store, and a module that builds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mcp_core.settings import Settings

__all__ = ["BackendModule", "CredentialStore"]


@runtime_checkable
class CredentialStore(Protocol):
    """Stores a user's secrets under opaque refs; every call is scoped by (team_id, user_id).

    ``get`` makes any credential store a registry ``SecretSource``. Every backend raises
    :class:`~mcp_core.errors.CredentialBackendError` when its store is out of reach (down,
    timed out, throttled, refusing the bot access) and a plain
    :class:`~mcp_core.errors.CredentialError` only for a record that cannot be read (wrong key,
    tampered, not a map of strings): the first is retried later, the second needs a reconnect.
    """

    async def put(
        self, team_id: str, user_id: str, values: Mapping[str, str], ref: str | None = None
    ) -> str: ...

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> Mapping[str, str]: ...

    async def delete(self, team_id: str, user_id: str, credential_ref: str) -> bool: ...

    async def aclose(self) -> None:
        """Release what the store created (cloud clients, channels); borrowed engines and
        clients stay open for their owner. Safe to call twice."""
        ...


class BackendModule(Protocol):
    """What a backend's module offers besides its store class (one row of ``backends.BACKENDS``
    names it; it is imported only when chosen, so its SDK may be an optional extra)."""

    def check(self, settings: Settings) -> str | None:
        """Refuse, with a ``ConfigError``, settings this backend cannot work with; create nothing
        (``slack-mcp-bot check`` calls it). Return a detail for that command's line, or None
        when the extra being installed is all there is to say."""
        ...

    async def open_store(self, settings: Settings, engine: AsyncEngine) -> CredentialStore:
        """Build the store after migrations, borrowing ``engine`` (never disposed by the store)."""
        ...
