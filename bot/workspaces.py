"""Which workspace's token a Web API call is made with, in a distributed app.

Single-workspace mode (``SLACK_BOT_TOKEN``) is unchanged: the client carries that token. In
multi-workspace mode the one ``WorkspaceClient`` every module shares has no token of its own;
its ``token`` is the current workspace's, held in a ContextVar:

- on a Slack request, ``workspace_token_middleware`` sets it to the bot token Bolt's authorize
  found for the request's installation (or to None: a call then fails ``not_authed``, it never
  borrows another workspace's token), for the request and every task it starts (an agent
  turn, its approvals, its uploads);
- work that begins outside a request (a turn taken over after a restart, a sign-in's callback
  page) runs inside ``Workspaces.acting_for(team_id)``, which looks the token up and refreshes
  a rotating one that is close to expiry (Bolt's own rotator), and saves it back.

A ContextVar and not a client per workspace, so the modules keep the one client they are given
and cannot pick the wrong one.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncBoltContext
from slack_sdk.errors import SlackClientError, SlackTokenRotationError
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.installations import DatabaseInstallationStore
from mcp_core.errors import McpCoreError
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = ["WorkspaceClient", "Workspaces", "workspace_token_middleware"]

_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("slack_workspace_token", default=None)
ROTATE_MINUTES_BEFORE = 120
"""Bolt's default: a rotating token is refreshed when it expires within this."""


class WorkspaceClient(AsyncWebClient):
    """An AsyncWebClient whose token is the current workspace's (``_TOKEN``), else its own."""

    @property  # type: ignore[override]
    def token(self) -> str | None:
        return _TOKEN.get() or self._own_token

    @token.setter
    def token(self, value: str | None) -> None:
        self._own_token = value


async def workspace_token_middleware(
    context: AsyncBoltContext, body: dict[str, Any], next: Callable[[], Awaitable[None]]
) -> None:
    """Bolt middleware: the request's installation's bot token for everything it runs.

    Bolt's ``next()`` only marks the chain to go on (the listeners run after this returns), so
    the token is set, not reset: it lives in the request's own task's context (aiohttp and
    Socket Mode give each request its task) and in the tasks the listeners start, and every
    request sets it afresh before any listener runs."""
    _TOKEN.set(context.get("bot_token") or None)
    await next()


class Workspaces:
    """Multi-workspace mode's token lookups; in single-workspace mode (no store) a no-op."""

    def __init__(
        self,
        installs: DatabaseInstallationStore | None,
        store: Store,
        *,
        rotator: AsyncTokenRotator | None = None,
    ) -> None:
        self._installs, self._store, self._rotator = installs, store, rotator
        self._orgs_seen: set[tuple[str, str]] = set()

    @property
    def multi(self) -> bool:
        return self._installs is not None

    async def seen(self, team_id: str, enterprise_id: str) -> None:
        """Remember a workspace's org (once per process), so work begun outside a request finds
        an org-wide install from the team alone."""
        if not self.multi or not team_id or not enterprise_id or (team_id, enterprise_id) in self._orgs_seen:
            return
        try:
            await self._store.remember_workspace(team_id, enterprise_id)
            self._orgs_seen.add((team_id, enterprise_id))
        except McpCoreError as exc:
            logger.warning("could not note the org of %s: %s", team_id, exc)

    @asynccontextmanager
    async def acting_for(self, team_id: str) -> AsyncIterator[None]:
        """Web API calls inside use ``team_id``'s installation (no token if it has none)."""
        if self._installs is None:
            yield
            return
        token = await self._token_for(team_id)
        reset = _TOKEN.set(token)
        try:
            yield
        finally:
            _TOKEN.reset(reset)

    def per_turn(
        self, close: Callable[[Any], Awaitable[Callable[[], Awaitable[None]] | None]]
    ) -> Callable[[Any], Awaitable[Callable[[], Awaitable[None]] | None]]:
        """The sweeper's handler (``bot.takeover``) acting for each turn's workspace, and so
        does the follow it may hand back (run later, outside this call)."""
        if self._installs is None:
            return close

        async def closing(turn: Any) -> Callable[[], Awaitable[None]] | None:
            async with self.acting_for(turn.team_id):
                follow = await close(turn)
            if follow is None:
                return None

            async def following() -> None:
                async with self.acting_for(turn.team_id):
                    await follow()

            return following

        return closing

    async def _token_for(self, team_id: str) -> str | None:
        assert self._installs is not None
        try:
            bot = await self._installs.find_bot_for_team(team_id)
        except McpCoreError as exc:  # the database or the credential store failed: no token
            logger.warning("could not read the installation of %s: %s", team_id, exc)
            return None
        if bot is None:
            logger.warning("no installation answers for %s: its calls go without a token", team_id)
            return None
        if self._rotator is not None and bot.bot_refresh_token:
            try:
                rotated = await self._rotator.perform_bot_token_rotation(
                    bot=bot, minutes_before_expiration=ROTATE_MINUTES_BEFORE
                )
            except SlackTokenRotationError as exc:  # Slack refused the refresh token
                logger.warning(
                    "could not refresh the token of %s: %s", team_id, exc.api_error.response.get("error")
                )
                rotated = None
            except (
                SlackClientError,
                aiohttp.ClientError,
                TimeoutError,
            ) as exc:  # unreachable: retried next time
                logger.warning("could not refresh the token of %s: %s", team_id, type(exc).__name__)
                rotated = None
            if rotated is not None:
                try:
                    await self._installs.async_save_bot(rotated)
                except McpCoreError as exc:  # the fresh token works for now; Bolt refreshes again
                    logger.warning("could not save the refreshed token of %s: %s", team_id, exc)
                bot = rotated
        return bot.bot_token
