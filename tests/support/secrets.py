"""An in-memory `SecretSource`: what the credential manager will be, minus encryption and storage.

    secrets = DictSecrets()
    secrets.put(TEAM, USER, "ref-1", {"header:Authorization": "Bearer s3cret"})
    services = await build_services(settings, secrets=secrets)
    # a NewConnection(..., credential_ref="ref-1") now opens with that header

Keys say where each value goes when a session opens: `header:<Name>`, `env:<NAME>` or
`query:<name>`. The registry asks only for connections whose `credential_ref` is set.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DictSecrets"]

Owner = tuple[str, str, str]


class DictSecrets:
    """Secrets per (team, user, credential_ref), kept in a dict; implements `SecretSource`."""

    def __init__(self) -> None:
        self._values: dict[Owner, dict[str, str]] = {}
        self.reads: list[Owner] = []
        """Every `get` so far, in order: lets a test see when (and for whom) secrets were read."""

    def put(self, team_id: str, user_id: str, credential_ref: str, values: Mapping[str, str]) -> None:
        """Replace the secrets stored under ``credential_ref`` (the next session opened uses them)."""
        self._values[(team_id, user_id, credential_ref)] = dict(values)

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> Mapping[str, str]:
        """The secrets under ``credential_ref``, or none: like a credential store, never another user's."""
        self.reads.append((team_id, user_id, credential_ref))
        return dict(self._values.get((team_id, user_id, credential_ref), {}))
