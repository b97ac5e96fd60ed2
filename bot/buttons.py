"""The buttons on a connection: Test (and Retry), Tools (and its pages), Disconnect, Sign in
again, and the tool choices: *Turn off*/*Turn on* on a tools page, *Ask again*/*Turn on* under
a connection in ``/mcp list`` and the Home tab.

Each runs behind ``OwnedConnection``'s middleware, so it only ever sees the requester's own
connection, in ``context["connection"]``; a tool name in a value is checked against that
connection's tools by the registry. Edit belongs to the connect flow (``bot.connect``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot import texts, views
from bot._payload import in_home, owner
from bot.failures import Failures
from bot.home import Home
from bot.middleware import CONNECTION, OwnedConnection
from bot.replies import Replies
from mcp_core import errors
from mcp_core.models import Connection
from mcp_core.services import Services

__all__ = ["chosen_tool", "register_buttons", "tools_target"]

SIGN_IN_LINK = re.compile(rf"^{views.SIGN_IN_LINK_ACTION}(_\d+)?$")
SIGN_IN_AGAIN = re.compile(rf"^{views.SIGN_IN_AGAIN_ACTION}(_\d+)?$")
TOOL_ON = re.compile(rf"^{views.TOOL_ON_ACTION}_\d+$")
ASK_AGAIN = re.compile(rf"^{views.ASK_AGAIN_ACTION}_\d+$")


def _decoded(value: Any) -> dict[str, Any] | None:
    """A button value we wrote as a JSON object, or None (it is whatever the sender wrote)."""
    try:
        target = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):
        return None
    return target if isinstance(target, dict) else None


def tools_target(value: Any) -> tuple[str, int]:
    """(connection id, page) from a Tools / Next / Previous button's value; an odd page is 0."""
    if not isinstance(value, str):
        return "", 0
    target = _decoded(value)
    if target is None:
        return value, 0  # a bare connection id
    connection_id, page = target.get("c"), target.get("p", 0)
    if not isinstance(page, int) or isinstance(page, bool):
        page = 0  # a float (1e999 is inf), a string, null...: views clamp an int to the pages there are
    return (connection_id if isinstance(connection_id, str) else ""), page


def chosen_tool(value: Any) -> tuple[str, bool]:
    """(tool name, whether it is to be on) from a tool switch's value ("" for no name)."""
    target = _decoded(value) or {}
    tool = target.get("t")
    return (tool if isinstance(tool, str) else ""), target.get("on") is True


def register_buttons(
    app: AsyncApp,
    *,
    services: Services,
    replies: Replies,
    home: Home,
    owned: OwnedConnection,
    failures: Failures,
) -> None:
    """Add the connection buttons' listeners; ``owned``'s middleware acks and checks ownership."""
    connections = services.connections
    own_connection = owned.middleware()

    @app.action("mcp_test", middleware=[own_connection])
    @app.action("mcp_retry", middleware=[own_connection])
    @failures.after_ack
    async def test_button(body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext) -> None:
        connection: Connection = context[CONNECTION]
        team_id, user_id = owner(body)
        report = await connections.test(team_id, user_id, connection.id)
        await replies.tell(body, respond, texts.health(report))
        await home.publish(team_id, user_id)

    own_paged = owned.middleware(lambda action: tools_target(action.get("value", ""))[0])

    @app.action("mcp_tools", middleware=[own_paged])
    @app.action(re.compile(r"^mcp_tools_page_\d+$"), middleware=[own_paged])
    @failures.after_ack
    async def tools_button(
        body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        connection: Connection = context[CONNECTION]
        _, page = tools_target(action.get("value", ""))
        blocks = views.tool_page_blocks(connection, page)
        paging = action["action_id"] != "mcp_tools"  # Next/Previous turn the page in place
        await replies.tell(body, respond, texts.tools_of(connection.name), blocks, replace=paging)

    @app.action(views.TOOL_SWITCH_ACTION, middleware=[own_paged])
    @failures.after_ack
    async def switch_tool(
        body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """Turn a tool off or on from its page, which is then shown again in its new state."""
        connection: Connection = context[CONNECTION]
        team_id, user_id = owner(body)
        value = action.get("value", "")
        (_, page), (tool, on) = tools_target(value), chosen_tool(value)
        try:
            changed = await services.registry.set_tool_enabled(team_id, user_id, connection.id, tool, on)
        except errors.ToolError as exc:
            await replies.tell(body, respond, texts.failed(exc))
            return
        blocks = views.tool_page_blocks(changed, page)
        await replies.tell(body, respond, texts.tools_of(changed.name), blocks, replace=True)
        await home.publish(team_id, user_id)

    @app.action(TOOL_ON, middleware=[own_paged])
    @app.action(ASK_AGAIN, middleware=[own_paged])
    @failures.after_ack
    async def undo_choice(
        body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """*Turn on* a switched-off tool, or *Ask again* before an always-allowed one, from
        ``/mcp list`` or the Home tab; the list (or the tab) is shown again."""
        connection: Connection = context[CONNECTION]
        team_id, user_id = owner(body)
        tool, _ = chosen_tool(action.get("value", ""))
        registry = services.registry
        try:
            if ASK_AGAIN.match(str(action.get("action_id", ""))):
                await registry.set_always_allowed(team_id, user_id, connection.id, tool, False)
            else:
                await registry.set_tool_enabled(team_id, user_id, connection.id, tool, True)
        except errors.ToolError as exc:
            await replies.tell(body, respond, texts.failed(exc))
            return
        await home.publish(team_id, user_id)
        if not in_home(body):
            listed = await services.store.list_connections(team_id, user_id)
            await replies.tell(
                body, respond, texts.list_summary(listed), views.connection_blocks(listed), replace=True
            )

    @app.action("mcp_disconnect", middleware=[own_connection])
    @failures.after_ack
    async def disconnect_button(
        body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        connection: Connection = context[CONNECTION]
        team_id, user_id = owner(body)
        await connections.disconnect(team_id, user_id, connection)
        await replies.tell(body, respond, texts.disconnected(connection.name))
        await home.publish(team_id, user_id)

    @app.action(SIGN_IN_AGAIN, middleware=[own_connection])
    @failures.after_ack
    async def sign_in_again(body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext) -> None:
        """A new sign-in link for the requester's own connection: ephemeral under /mcp list,
        in the connection's entry when clicked on the Home tab (where the person is looking;
        a DM would take them elsewhere). No link needed: it connected, and they hear so."""
        connection: Connection = context[CONNECTION]
        team_id, user_id = owner(body)
        try:
            url = await connections.sign_in_url(team_id, user_id, connection.id)
        except errors.OAuthClientMissingError as missing:  # no link can be made: say who can help
            reader = views.Reader(user_id in services.settings.admin_user_ids, services.oauth.redirect_url)
            text, blocks = views.connect_reply(connection, missing, reader=reader)
            await replies.tell(body, respond, text, blocks)
            return
        if url is None:
            current = await services.store.get_connection(team_id, user_id, connection.id)
            await replies.tell(body, respond, texts.connected(current.name, len(current.tools)))
            await home.publish(team_id, user_id)
        elif in_home(body):
            await home.publish(team_id, user_id, sign_in_links={connection.id: url})
        else:
            text = texts.sign_in_again_needed(connection.name)
            await replies.tell(body, respond, text, views.sign_in_blocks(text, connection.name, url))

    @app.action(SIGN_IN_LINK)
    async def sign_in_link(ack: AsyncAck) -> None:
        """Slack sends a link button's click too; the browser does the rest."""
        await ack()
