"""What a workspace's admins allow: which run cards, custom URLs, who may add connections, and
where the agent may run tools (migration 0012, ``/mcp admin``).

One ``Policy`` per workspace, stored as JSON; no row means everything is allowed, as before
policies existed. Every change is written together with its audit entry (who, when, which
fields, before and after) in one transaction, so the log cannot miss a change. The checks
are pure functions of the policy, so ``/mcp connect``, its submission and the agent ask the
same question the same way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_core.models import CatalogEntry
from mcp_core.store import Store

__all__ = [
    "ChannelTools",
    "Policy",
    "PolicyCache",
    "PolicyChange",
    "WhoMayAdd",
    "change_policy",
    "channel_catalog",
    "load_policy",
    "may_add",
]

WhoMayAdd = Literal["everyone", "usergroup", "admins"]
ChannelTools = Literal["all", "read_only", "none"]

_USERGROUP = re.compile(r"^S[A-Z0-9]{2,30}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9_]{2,30}$")
MAX_LISTED = 500
"""Cards or channels one list may hold (a modal's multi-select gives at most 100)."""


class Policy(BaseModel):
    """A workspace's rules. The defaults allow everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_cards: tuple[str, ...] | None = None
    """Run card ids people may connect; None: every card."""
    custom_urls: bool = True
    """Whether people may connect a server by its URL or command (the custom card)."""
    who_may_add: WhoMayAdd = "everyone"
    usergroup_id: str | None = None
    """The Slack user group (``S…``) whose members may add connections, with ``usergroup``."""
    no_tool_channels: tuple[str, ...] = Field(default=(), max_length=MAX_LISTED)
    """Channels where the agent answers without tools."""
    read_only_channels: tuple[str, ...] = Field(default=(), max_length=MAX_LISTED)
    """Channels where the agent runs only tools their servers mark read-only."""
    audit_arguments: bool = False
    """Keep a call's (redacted) arguments in the audit log of approvals."""

    @field_validator("usergroup_id")
    @classmethod
    def _usergroup(cls, value: str | None) -> str | None:
        if value is not None and not _USERGROUP.match(value):
            raise ValueError("a user group id looks like S0123ABCD")
        return value

    @field_validator("no_tool_channels", "read_only_channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if bad := [c for c in value if not _CHANNEL.match(c)]:
            raise ValueError(f"not channel ids: {', '.join(bad[:3])}")
        return tuple(sorted(set(value)))

    @field_validator("allowed_cards")
    @classmethod
    def _cards(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _group_named(self) -> Policy:
        if self.who_may_add == "usergroup" and self.usergroup_id is None:
            raise ValueError("choose the user group whose members may add connections")
        return self

    def card_allowed(self, card_id: str, *, custom: bool) -> bool:
        """Whether a connection may be made from this card (``custom``: it asks for a URL or
        command of the person's own choosing)."""
        if custom and not self.custom_urls:
            return False
        return self.allowed_cards is None or card_id in self.allowed_cards

    def channel_tools(self, channel_id: str) -> ChannelTools:
        if channel_id in self.no_tool_channels:
            return "none"
        if channel_id in self.read_only_channels:
            return "read_only"
        return "all"


class PolicyChange(BaseModel):
    """One audited change: the fields that differ, before and after."""

    changed: list[str]
    before: dict[str, object]
    after: dict[str, object]


def may_add(policy: Policy, *, is_admin: bool, in_usergroup: bool) -> WhoMayAdd | None:
    """None when the person may add connections; else who may (for the refusal's words)."""
    if is_admin or policy.who_may_add == "everyone":
        return None
    if policy.who_may_add == "usergroup" and in_usergroup:
        return None
    return policy.who_may_add


def channel_catalog(
    policy: Policy, channel_id: str, catalog: Sequence[CatalogEntry]
) -> tuple[list[CatalogEntry], ChannelTools]:
    """The entries the agent may use in ``channel_id``, and the channel's rule. Read-only means
    the server marks the tool ``readOnlyHint``: a tool that says nothing might write."""
    rule = policy.channel_tools(channel_id)
    if rule == "none":
        return [], rule
    if rule == "read_only":
        return [e for e in catalog if e.tool.read_only is True], rule
    return list(catalog), rule


POLICY_CACHE_S = 30.0


class PolicyCache:
    """Policies for the agent's hot path: a warm turn makes no database read (issue 13). A
    change made on this process (``forget``) applies at once; one made on another process within
    ``ttl_s`` (``/mcp connect`` and the admin's own reads always go to the database)."""

    def __init__(
        self, store: Store, *, ttl_s: float = POLICY_CACHE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store, self._ttl_s, self._clock = store, ttl_s, clock
        self._cached: dict[str, tuple[float, Policy]] = {}

    async def get(self, team_id: str) -> Policy:
        """Raises: StoreError: the database failed (and nothing was cached)."""
        hit = self._cached.get(team_id)
        if hit is not None and self._clock() - hit[0] < self._ttl_s:
            return hit[1]
        policy = await load_policy(self._store, team_id)
        self._cached[team_id] = (self._clock(), policy)
        return policy

    def forget(self, team_id: str) -> None:
        self._cached.pop(team_id, None)


async def load_policy(store: Store, team_id: str) -> Policy:
    """The workspace's policy (everything allowed when none was saved).

    Raises:
        StoreError: the database failed.
    """
    stored = await store.workspace_policy(team_id)
    return Policy() if stored is None else Policy.model_validate(stored)


async def change_policy(store: Store, team_id: str, actor_id: str, new: Policy) -> PolicyChange | None:
    """Save ``new`` with an audit entry of what changed, at once; None when nothing did.

    Raises:
        StoreError: the database failed; nothing was saved.
    """
    old = await load_policy(store, team_id)
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    changed = [name for name in after if before.get(name) != after[name]]
    if not changed:
        return None
    change = PolicyChange(
        changed=changed,
        before={k: before.get(k) for k in changed},
        after={k: after[k] for k in changed},
    )
    await store.save_policy(team_id, actor_id, after, change.model_dump(mode="json"))
    return change
