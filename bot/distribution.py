"""A distributed app: every workspace installs it with Slack's OAuth v2 flow ("Add to Slack").

Multi-workspace mode (``SLACK_CLIENT_ID`` + ``SLACK_CLIENT_SECRET``, no ``SLACK_BOT_TOKEN``):

- ``GET /slack/install`` and ``GET /slack/oauth_redirect`` are Bolt's OAuth flow, its state
  in ``mcp_slack_oauth_states`` and each installation in ``bot.installations`` (tokens in the
  credential manager); Bolt's authorize finds the request's installation and rotates a
  rotating token before it expires; ``bot.workspaces`` makes every Web API call of the
  request use it.
- ``app_uninstalled``, and ``tokens_revoked`` naming the bot: the workspace's tokens are
  deleted at once and its people's data is marked for deletion after
  ``SLACK_UNINSTALL_GRACE_DAYS`` (``mcp_core.workspace_purge``; a reinstall keeps it).

Keys are the verified request's (enterprise, team): an org-wide Enterprise Grid install
answers for every workspace of its org; connections stay per workspace and person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.installations import DatabaseInstallationStore, DatabaseStateStore
from bot.workspaces import Workspaces
from mcp_core.errors import ConfigError
from mcp_core.services import Services

logger = logging.getLogger(__name__)

__all__ = [
    "BOT_SCOPES",
    "INSTALL_PATH",
    "REDIRECT_PATH",
    "Distribution",
    "add_install_routes",
    "register_distribution",
]

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
BOT_SCOPES = (
    "commands",
    "chat:write",
    "app_mentions:read",
    "im:history",
    "im:write",
    "channels:history",
    "groups:history",
    "mpim:history",
    "files:write",
    "assistant:write",
    "users:read",
    "usergroups:read",
)
"""What an install asks for: manifest.yml's bot scopes (a test keeps the two equal)."""


@dataclass
class Distribution:
    """Multi-workspace mode's parts, built once per app."""

    client_id: str
    client_secret: str
    installs: DatabaseInstallationStore
    states: DatabaseStateStore
    workspaces: Workspaces
    redirect_url: str | None
    grace: timedelta

    @classmethod
    def of(cls, services: Services, client: AsyncWebClient) -> Distribution | None:
        """None in single-workspace mode.

        Raises:
            ConfigError: multi-workspace mode without a credential store for the tokens.
        """
        settings = services.settings
        if not settings.multi_workspace:
            return None
        assert settings.slack_client_id is not None
        assert settings.slack_client_secret is not None
        if services.credentials is None:
            raise ConfigError(
                "A distributed app keeps each workspace's token in the credential store; none is set up."
            )
        client_id, secret = settings.slack_client_id, settings.slack_client_secret.get_secret_value()
        installs = DatabaseInstallationStore(services.store, services.credentials, client_id)
        rotator = AsyncTokenRotator(client_id=client_id, client_secret=secret, client=client)
        return cls(
            client_id=client_id,
            client_secret=secret,
            installs=installs,
            states=DatabaseStateStore(services.store),
            workspaces=Workspaces(installs, services.store, rotator=rotator),
            redirect_url=settings.slack_install_redirect_url,
            grace=timedelta(days=settings.slack_uninstall_grace_days),
        )

    def oauth_settings(self) -> AsyncOAuthSettings:
        return AsyncOAuthSettings(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=list(BOT_SCOPES),
            redirect_uri=self.redirect_url,
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            installation_store=self.installs,
            installation_store_bot_only=True,
            state_store=self.states,
            logger=logger,
        )

    async def removed(self, enterprise_id: str, team_id: str, reason: str, services: Services) -> None:
        """The workspace uninstalled the app or revoked its bot token: its tokens go now, its
        people's data after the grace period."""
        await self.installs.async_delete_all(enterprise_id=enterprise_id or None, team_id=team_id or None)
        purge_after = datetime.now(UTC) + self.grace
        await services.store.schedule_workspace_removal(enterprise_id, team_id, reason, purge_after)
        logger.info(
            "%s: %s removed; its data is deleted after %s", reason, team_id or enterprise_id, purge_after
        )


def register_distribution(app: AsyncApp, distribution: Distribution, services: Services) -> None:
    """The uninstall and revocation events."""

    @app.event("app_uninstalled")
    async def uninstalled(body: dict[str, Any]) -> None:
        enterprise_id, team_id = _workspace(body)
        await distribution.removed(enterprise_id, team_id, "app_uninstalled", services)

    @app.event("tokens_revoked")
    async def revoked(body: dict[str, Any], event: dict[str, Any]) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        if tokens.get("bot"):  # user tokens: the bot keeps none
            enterprise_id, team_id = _workspace(body)
            await distribution.removed(enterprise_id, team_id, "tokens_revoked", services)


def add_install_routes(web_app: web.Application, app: AsyncApp) -> None:
    """``GET /slack/install`` (the Add to Slack page) and ``GET /slack/oauth_redirect``."""
    flow = app.oauth_flow
    assert flow is not None

    async def install(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def redirect(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    web_app.router.add_get(INSTALL_PATH, install)
    web_app.router.add_get(REDIRECT_PATH, redirect)


def _workspace(body: dict[str, Any]) -> tuple[str, str]:
    """(enterprise, team) of an event's installation: its ``authorizations``, else the body's."""
    found = body.get("authorizations")
    first = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}
    enterprise = first.get("enterprise_id") or body.get("enterprise_id") or ""
    team = "" if first.get("is_enterprise_install") else first.get("team_id") or body.get("team_id") or ""
    return str(enterprise), str(team)
