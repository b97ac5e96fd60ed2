"""Who is an admin, and who may add connections, asked of Slack.

An admin is a user in ``ADMIN_USER_IDS`` or one Slack calls a workspace admin or owner
(``users.info``: ``is_admin`` / ``is_owner`` / ``is_primary_owner``). User-group membership
comes from ``usergroups.users.list``. Slack's answer is the authority, so a failed or refused
call counts as "no" (a clear refusal, never a door left open), and answers are kept for a
minute so a form and its submission do not ask twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from mcp_core.policy import Policy, WhoMayAdd, may_add

logger = logging.getLogger(__name__)

__all__ = ["SlackRoles"]

CACHE_S = 60.0


class SlackRoles:
    """Admin and user-group answers for one bot token's workspace(s), cached briefly."""

    def __init__(
        self,
        client: AsyncWebClient,
        admin_user_ids: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._admins = frozenset(admin_user_ids)
        self._clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, object]] = {}

    async def is_admin(self, team_id: str, user_id: str) -> bool:
        if user_id in self._admins:
            return True
        key = ("admin", team_id, user_id)
        if (hit := self._cached(key)) is not None:
            return bool(hit)
        try:
            user = (await self._client.users_info(user=user_id)).get("user") or {}
        except SlackApiError as exc:
            logger.warning("users.info refused for %s: %s", user_id, exc.response.get("error"))
            return False
        admin = isinstance(user, dict) and any(
            user.get(k) is True for k in ("is_admin", "is_owner", "is_primary_owner")
        )
        admin = admin and user.get("team_id") in (None, team_id)  # an admin of their own workspace
        self._cache[key] = (self._clock(), admin)
        return admin

    async def in_usergroup(self, team_id: str, usergroup_id: str, user_id: str) -> bool:
        key = ("group", team_id, usergroup_id)
        members = self._cached(key)
        if members is None:
            try:
                answer = await self._client.usergroups_users_list(usergroup=usergroup_id, team_id=team_id)
            except SlackApiError as exc:
                logger.warning(
                    "usergroups.users.list refused for %s: %s", usergroup_id, exc.response.get("error")
                )
                return False
            found = answer.get("users")
            members = (
                frozenset(u for u in found if isinstance(u, str)) if isinstance(found, list) else frozenset()
            )
            self._cache[key] = (self._clock(), members)
        return user_id in members  # type: ignore[operator]

    async def add_refusal(self, policy: Policy, team_id: str, user_id: str) -> WhoMayAdd | None:
        """None when the person may add connections under ``policy``; else who may."""
        if policy.who_may_add == "everyone":
            return None
        admin = await self.is_admin(team_id, user_id)
        in_group = (
            not admin
            and policy.who_may_add == "usergroup"
            and policy.usergroup_id is not None
            and await self.in_usergroup(team_id, policy.usergroup_id, user_id)
        )
        return may_add(policy, is_admin=admin, in_usergroup=in_group)

    def _cached(self, key: tuple[str, ...]) -> object | None:
        hit = self._cache.get(key)
        if hit is None or self._clock() - hit[0] > CACHE_S:
            self._cache.pop(key, None)
            return None
        return hit[1]
