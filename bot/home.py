"""The App Home tab: the person's connections and their last week's usage (with a link to the
newest usage chart, ``bot.usage_chart``), refreshed when opened and after each change."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.failures import Failures
from bot.stats_views import home_stats_blocks
from mcp_core.errors import StoreError
from mcp_core.stats import home_stats
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = ["Home", "register_home"]

HOME_DAYS = 7


class Home:
    """Publishes one person's Home tab."""

    def __init__(self, store: Store, client: AsyncWebClient) -> None:
        self._store = store
        self._client = client

    async def publish(
        self, team_id: str, user_id: str, *, sign_in_links: Mapping[uuid.UUID, str] | None = None
    ) -> None:
        """Refresh the Home tab; best effort, since Slack asks again whenever it is opened.

        ``sign_in_links``: fresh sign-in links by connection, shown as *Sign in to …* buttons
        in their entries until the tab is next refreshed (a link expires; *Sign in again*
        makes a new one).
        """
        connections = await self._store.list_connections(team_id, user_id)
        try:
            usage = home_stats_blocks(*await home_stats(self._store, team_id, user_id, HOME_DAYS))
        except StoreError as exc:  # the tab is still worth showing without its usage section
            logger.warning("could not read the usage of %s for the Home tab: %s", user_id, exc)
            usage = []
        view = views.home_view(connections, sign_in_links=sign_in_links, usage=usage)
        try:
            await self._client.views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            logger.warning("could not refresh the Home tab of %s: %s", user_id, exc.response.get("error"))


def register_home(app: AsyncApp, home: Home, failures: Failures) -> None:
    """Publish the Home tab when its person opens it."""

    @app.event("app_home_opened")
    @failures.after_ack
    async def home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") == "home" and isinstance(user, str) and user:
            await home.publish(str(body.get("team_id")), user)
