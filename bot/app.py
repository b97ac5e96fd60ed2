"""The Bolt app: thin listeners that ack first, then call one service.

Who is asking is always the verified request's team and user (Bolt has checked the
signature, or the Socket Mode connection is ours); ids carried in button values are only
looked up *within* that user's connections, so a crafted payload naming someone else's
connection finds nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from mcp_core import errors
from mcp_core.models import NewConnection, normalize_connection_name
from mcp_core.security import check_remote_url
from mcp_core.services import Services

logger = logging.getLogger(__name__)

__all__ = ["create_app"]

URL_CHECK_TIMEOUT_S = 2.0
"""View submissions must be acked within 3 s; the URL check (DNS) gets at most this."""


def _owner(body: dict[str, Any]) -> tuple[str, str]:
    """(team, user) of the verified request, for commands, actions, views and events alike."""
    user = body.get("user") or {}
    user_id = body.get("user_id") or (user.get("id") if isinstance(user, dict) else user)
    team = body.get("team") or {}
    team_id = (
        body.get("team_id")
        or (team.get("id") if isinstance(team, dict) else None)
        or (user.get("team_id") if isinstance(user, dict) else None)
        or (body.get("enterprise") or {}).get("id")
    )
    if not team_id or not user_id:
        raise errors.McpCoreError("This request does not say who sent it.")
    return str(team_id), str(user_id)


def create_app(services: Services, *, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    """Build the app. ``client`` carries the bot token and the Web API base URL."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "socket-mode-does-not-sign",
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,
        ignoring_self_events_enabled=True,
    )
    store, registry = services.store, services.registry

    @app.middleware
    async def drop_retried_events(body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Slack retries events it thinks failed; the store remembers event ids across processes."""
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and not await store.claim_event(str(event_id), body.get("team_id")):
            return BoltResponse(status=200, body="")
        return await next()

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        if isinstance(error, errors.McpCoreError):
            message = f"❌ {error}"
        else:
            logger.exception("unhandled error in a Slack listener", exc_info=error)
            message = texts.INTERNAL_ERROR
        if respond is not None and body.get("response_url"):
            await respond(text=message, response_type="ephemeral", replace_original=False)

    async def publish_home(team_id: str, user_id: str) -> None:
        connections = await store.list_connections(team_id, user_id)
        await client.views_publish(user_id=user_id, view=views.home_view(connections))

    async def tell(
        body: dict[str, Any], respond: AsyncRespond, text: str, blocks: list | None = None
    ) -> None:
        """Reply privately: via response_url when the request has one, else by DM."""
        if body.get("response_url") or (body.get("container") or {}).get("type") == "message":
            await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        else:
            _, user_id = _owner(body)
            await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    # -- /mcp ---------------------------------------------------------------------------

    @app.command("/mcp")
    async def mcp_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        words = (body.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        arg = " ".join(words[1:])
        if sub == "connect":
            await ack()
            await open_connect(body, arg)
            return
        await ack()
        team_id, user_id = _owner(body)
        if sub == "list":
            connections = await store.list_connections(team_id, user_id)
            blocks = views.connection_blocks(connections)
            await respond(text=texts.list_summary(connections), blocks=blocks, response_type="ephemeral")
        elif sub == "tools":
            await show_tools(body, respond, arg)
        elif sub == "test":
            await run_tests(body, respond, arg)
        elif sub == "disconnect":
            await confirm_disconnect(body, respond, arg)
        else:
            await respond(text=texts.USAGE, response_type="ephemeral")

    async def find(body: dict[str, Any], respond: AsyncRespond, name: str):
        team_id, user_id = _owner(body)
        try:
            connection = await store.find_connection(team_id, user_id, name)
        except ValueError:
            connection = None
        if connection is None:
            names = [c.name for c in await store.list_connections(team_id, user_id)]
            await respond(text=texts.unknown_connection(name, names), response_type="ephemeral")
        return connection

    async def show_tools(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        team_id, user_id = _owner(body)
        if name:
            connection = await find(body, respond, name)
            if connection is not None:
                await respond(
                    text=f"Tools of {connection.name}", blocks=views.tool_page_blocks(connection, 0)
                )
            return
        connections = await store.list_connections(team_id, user_id)
        if not connections:
            await respond(text=texts.NO_CONNECTIONS, response_type="ephemeral")
        for connection in connections:
            await respond(text=f"Tools of {connection.name}", blocks=views.tool_page_blocks(connection, 0))

    async def run_tests(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        team_id, user_id = _owner(body)
        if name:
            connection = await find(body, respond, name)
            targets = [connection] if connection is not None else []
        else:
            targets = await store.list_connections(team_id, user_id)
            if not targets:
                await respond(text=texts.NO_CONNECTIONS, response_type="ephemeral")
        for connection in targets:
            report = await registry.test(team_id, user_id, connection.id)
            await tell(body, respond, texts.health(report))
        if targets:
            await publish_home(team_id, user_id)

    async def confirm_disconnect(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        if not name:
            await respond(text="Which one? `/mcp disconnect <name>`", response_type="ephemeral")
            return
        connection = await find(body, respond, name)
        if connection is not None:
            blocks = views.connection_blocks([connection])
            await respond(text=f"Disconnect {connection.name}?", blocks=blocks, response_type="ephemeral")

    # -- buttons ------------------------------------------------------------------------

    async def owned(body: dict[str, Any], raw_id: str):
        """The connection named by a button, looked up only among the requester's own."""
        team_id, user_id = _owner(body)
        try:
            connection_id = uuid.UUID(raw_id)
        except ValueError:
            raise errors.ConnectionNotFoundError("that") from None
        return await store.get_connection(team_id, user_id, connection_id)

    @app.action("mcp_test")
    @app.action("mcp_retry")
    async def test_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection = await owned(body, action["value"])
        team_id, user_id = _owner(body)
        report = await registry.test(team_id, user_id, connection.id)
        await tell(body, respond, texts.health(report))
        await publish_home(team_id, user_id)

    @app.action("mcp_tools")
    @app.action(re.compile(r"^mcp_tools_page_\d+$"))
    async def tools_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        target = json.loads(action["value"])
        connection = await owned(body, str(target.get("c", "")))
        blocks = views.tool_page_blocks(connection, int(target.get("p", 0)))
        await tell(body, respond, f"Tools of {connection.name}", blocks)

    @app.action("mcp_disconnect")
    async def disconnect_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection = await owned(body, action["value"])
        team_id, user_id = _owner(body)
        await registry.remove_connection(team_id, user_id, connection.id)
        if connection.credential_ref and services.credentials is not None:
            await services.credentials.delete(team_id, user_id, connection.credential_ref)
        await tell(body, respond, f"🗑️ Disconnected *{connection.name}*.")
        await publish_home(team_id, user_id)

    # -- connect ------------------------------------------------------------------------

    async def open_connect(body: dict[str, Any], card: str, *, name: str = "", url: str = "") -> None:
        if card and card.lower() != "custom":
            await client.chat_postEphemeral(
                channel=body.get("channel_id") or _owner(body)[1],
                user=_owner(body)[1],
                text=texts.unknown_card(card),
            )
            return
        metadata = {"channel": body.get("channel_id") or (body.get("channel") or {}).get("id") or ""}
        await client.views_open(
            trigger_id=body["trigger_id"], view=views.connect_form(metadata=metadata, name=name, url=url)
        )

    @app.action("mcp_connect_open")
    async def connect_button(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await open_connect(body, "")

    @app.action("mcp_edit")
    async def edit_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        connection = await owned(body, action["value"])
        await open_connect(body, "", name=connection.name, url=connection.url or "")

    @app.view(views.CONNECT_CALLBACK)
    async def connect_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        team_id, user_id = _owner(body)
        values = {
            block: next(iter(v.values())).get("value") or "" for block, v in view["state"]["values"].items()
        }
        problems: dict[str, str] = {}
        name = ""
        try:
            name = normalize_connection_name(values.get("name", ""))
        except ValueError as exc:
            problems["name"] = str(exc)
        url = values.get("url", "").strip()
        try:
            await _with_timeout(check_remote_url(url, services.settings.mcp_allowed_hosts))
        except errors.PolicyError as exc:
            problems["url"] = str(exc)
        existing = await store.find_connection(team_id, user_id, name) if name else None
        if existing is not None:
            problems["name"] = f"You already have a connection named “{name}”."
        if problems:
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        metadata = json.loads(view.get("private_metadata") or "{}")
        token = values.get("token", "").strip()
        ref = None
        if token and services.credentials is not None:
            ref = await services.credentials.put(
                team_id, user_id, {"header:Authorization": f"Bearer {token}"}
            )
        transport = "sse" if url.rstrip("/").endswith("/sse") else "streamable_http"
        new = NewConnection(name=name, transport=transport, url=url, card_id="custom", credential_ref=ref)
        try:
            outcome = await registry.add_connection(team_id, user_id, new)
        except errors.McpCoreError as exc:
            if ref is not None:
                await services.credentials.delete(team_id, user_id, ref)
            await notify(metadata.get("channel"), user_id, f"❌ Couldn't connect *{name}*: {exc}")
            return
        connection = outcome.connection
        if outcome.error is None:
            text = f"✅ Connected *{connection.name}* — {len(connection.tools)} tools available"
            await notify(metadata.get("channel"), user_id, text)
        else:
            text = f"❌ Couldn't connect *{connection.name}*: {outcome.error}"
            blocks = views.result_blocks(text, connection_id=connection.id, failed=True)
            await notify(metadata.get("channel"), user_id, text, blocks)
        await publish_home(team_id, user_id)

    async def notify(channel: str | None, user_id: str, text: str, blocks: list | None = None) -> None:
        """Ephemeral in the channel the user started from; a DM when there is none or it fails."""
        if channel:
            try:
                await client.chat_postEphemeral(channel=channel, user=user_id, text=text, blocks=blocks)
                return
            except SlackApiError as exc:
                logger.info("ephemeral reply failed (%s); sending a DM", exc.response.get("error"))
        await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    # -- App Home -----------------------------------------------------------------------

    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            await publish_home(str(body.get("team_id")), event["user"])

    return app


async def _with_timeout(coro: Any) -> Any:
    try:
        return await asyncio.wait_for(coro, URL_CHECK_TIMEOUT_S)
    except TimeoutError:
        raise errors.PolicyError(
            "Checking that URL took too long. Check the host name and try again."
        ) from None
