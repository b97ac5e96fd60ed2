"""The interface every credential backend implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["CredentialStore"]


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
