"""An admin registers the bot's OAuth client in Slack, for servers that let no client register.

Some authorization servers (GitHub's) offer neither dynamic registration nor Client ID
Metadata Documents: someone must register the bot there as an OAuth app and give the bot its
client id. The operator can (``OAUTH_<CARD>_CLIENT_ID``, for a card's own URL); so can a
workspace admin, here: their own connection's *Couldn't connect* message carries *Register a
client*, which opens a form; its client is kept for the workspace and exactly that server URL
(``OAuthFlows.add_team_client``), and the admin's connection goes on to its sign-in link.

Who may: the verified requester, if in ADMIN_USER_IDS, checked when the form opens and again
when it is submitted; the connection is looked up only among the requester's own.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import channel_of, form_values, metadata_of, owner
from bot.failures import Failures
from bot.home import Home
from bot.middleware import CONNECTION, OwnedConnection
from bot.replies import Replies
from mcp_core import errors
from mcp_core.models import Connection
from mcp_core.services import Services

logger = logging.getLogger(__name__)

__all__ = ["register_admin_clients"]


def register_admin_clients(
    app: AsyncApp,
    *,
    services: Services,
    client: AsyncWebClient,
    replies: Replies,
    home: Home,
    owned: OwnedConnection,
    failures: Failures,
) -> None:
    """Add the *Register a client* button's and form's listeners to ``app``."""
    settings, connections, oauth = services.settings, services.connections, services.oauth

    def is_admin(user_id: str) -> bool:
        return user_id in settings.admin_user_ids

    @app.action(views.CLIENT_FORM_ACTION, middleware=[owned.middleware()])
    @failures.after_ack
    async def open_form(body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext) -> None:
        connection: Connection = context[CONNECTION]
        if not is_admin(owner(body)[1]):
            await replies.tell(body, respond, texts.ADMINS_ONLY)
            return
        metadata = {"connection": str(connection.id), "channel": channel_of(body)}
        form = views.client_form(connection, oauth.redirect_url, metadata=metadata)
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=form)
        except SlackApiError as exc:
            logger.warning("views.open failed: %s", exc.response.get("error"))
            await replies.tell(body, respond, texts.FORM_DID_NOT_OPEN)

    @app.view(views.CLIENT_FORM_CALLBACK)
    @failures.after_ack
    async def submit_form(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Check the form (problems keep it open), then keep the client and sign in again."""
        team_id, user_id = owner(body)
        values, metadata = form_values(view), metadata_of(view)
        client_id = values.get(views.CLIENT_ID_BLOCK, "").strip()
        if not is_admin(user_id):
            await ack(response_action="errors", errors={views.CLIENT_ID_BLOCK: texts.ADMINS_ONLY})
            return
        if not client_id or any(ch.isspace() for ch in client_id):
            await ack(response_action="errors", errors={views.CLIENT_ID_BLOCK: texts.CLIENT_ID_FORMAT})
            return
        connection = await _own_connection(services, team_id, user_id, metadata.get("connection", ""))
        if connection is None:
            await ack(response_action="errors", errors={views.CLIENT_ID_BLOCK: texts.NOT_YOUR_CONNECTION})
            return
        await ack()
        channel = metadata.get("channel")
        registered = False
        try:  # the server names its sign-in server (the issuer the client is bound to) on a connect
            url = await connections.sign_in_url(team_id, user_id, connection.id)
        except errors.OAuthClientMissingError as missing:
            server_url = missing.server_url or connection.url or ""
            secret = values.get(views.CLIENT_SECRET_BLOCK, "")
            try:
                await oauth.add_team_client(
                    team_id, user_id, server_url, client_id, secret, issuer=missing.issuer
                )
            except (ValueError, errors.McpCoreError) as exc:
                await replies.notify(channel, user_id, texts.failed(exc))
                return
            logger.info("%s: an admin registered an OAuth client for the workspace", connection.name)
            registered = True
            url = await connections.sign_in_url(team_id, user_id, connection.id)
        current = await services.store.get_connection(team_id, user_id, connection.id)
        done = texts.client_registered(current.name) + " " if registered else ""
        if url is None:
            await replies.notify(channel, user_id, done + texts.connected(current.name, len(current.tools)))
        else:
            text = done + texts.sign_in_needed(current.name)
            await replies.notify(channel, user_id, text, views.sign_in_blocks(text, current.name, url))
        await home.publish(team_id, user_id)


async def _own_connection(services: Services, team_id: str, user_id: str, raw_id: str) -> Connection | None:
    """The requester's own connection a form's metadata names, or None."""
    try:
        return await services.store.get_connection(team_id, user_id, uuid.UUID(raw_id))
    except (ValueError, errors.ConnectionNotFoundError):
        return None
