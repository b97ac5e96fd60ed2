"""The Bolt app: thin listeners that ack first, then call one service.

Who is asking is always the verified request's team and user (Bolt has checked the
signature, or the Socket Mode connection is ours); ids carried in button values and in a
modal's private_metadata are only looked up *within* that user's connections, so a crafted
payload naming someone else's connection finds nothing and is refused.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncBoltRequest, AsyncRespond
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import owner
from bot._respond import PooledRespond, SharedSession
from bot.chat import register_chat
from bot.connect import register_connect
from mcp_core import errors
from mcp_core.models import Connection
from mcp_core.services import Services
from run_cards import (
    BUILTIN_DIR,
    CardCatalog,
    OperatorValues,
    RunCard,
    load_cards,
    read_operator_values,
)

logger = logging.getLogger(__name__)

__all__ = ["create_app"]

URL_CHECK_TIMEOUT_S = 2.0
"""View submissions must be acked within 3 s; the URL check (DNS) gets at most this."""
_BEARER_PREFIX = re.compile(r"^bearer\s+", re.IGNORECASE)
_INTERACTIVE = ("block_actions", "view_submission")
_VERIFIED = "mcp_request_verified"
"""Context key set once Bolt has checked a request; an unset key means nothing may be sent."""
Listener = Callable[..., Awaitable[None]]


def _tools_target(value: Any) -> tuple[str, int]:
    """(connection id, page) from a Tools / Next / Previous button's value; an odd page is 0."""
    if not isinstance(value, str):
        return "", 0
    try:
        target = json.loads(value)
    except (ValueError, RecursionError):
        return value, 0  # a bare connection id
    if not isinstance(target, dict):
        return value, 0
    connection_id, page = target.get("c"), target.get("p", 0)
    if not isinstance(page, int) or isinstance(page, bool):
        page = 0  # a float (1e999 is inf), a string, null...: views clamp an int to the pages there are
    return (connection_id if isinstance(connection_id, str) else ""), page


def create_app(
    services: Services,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    responses: SharedSession | None = None,
    catalog: CardCatalog | None = None,
    operator_values: OperatorValues | None = None,
) -> AsyncApp:
    """Build the app. ``client`` carries the bot token and the Web API base URL.

    ``catalog`` is the run-card catalog (loaded from the built-in folder and RUN_CARDS_DIR
    when None); the caller syncs it to the store. ``operator_values`` pre-fill card fields
    for admins (read from ``./.env`` when None; see ``run_cards.operator``).

    ``signing_secret`` None means Socket Mode, where requests are not signed. ``responses`` is
    the HTTP session replies to response_url go through; the caller closes it on shutdown.
    """
    responses = responses or SharedSession()
    # Given no token, Bolt falls back to $SLACK_BOT_TOKEN and then warns that the client's token
    # wins over it. The client carries that same token, so the warning is noise; no argument
    # avoids Bolt's fallback, hence the filter around the construction alone.
    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")

    def not_token_skipped(record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()

    bolt_logger.addFilter(not_token_skipped)
    try:
        app = AsyncApp(
            client=client,
            signing_secret=signing_secret or "socket-mode-does-not-sign",
            request_verification_enabled=signing_secret is not None,
            ignoring_self_events_enabled=True,
        )
    finally:
        bolt_logger.removeFilter(not_token_skipped)
    store, registry, credentials = services.store, services.registry, services.credentials
    settings = services.settings
    cards = catalog if catalog is not None else load_cards(BUILTIN_DIR, settings.run_cards_dir)
    if operator_values is None:
        operator_values = read_operator_values(cards.all(), Path(".env"))
    if operator_values and not settings.admin_user_ids:
        logger.warning("MCP_<CARD>_<FIELD> values in .env go to admins only, and ADMIN_USER_IDS is empty")

    def operator_fields(user_id: str, card: RunCard) -> dict[str, str]:
        """The operator's pre-fill values for ``card``, for admins only (they are the operator's)."""
        return dict(operator_values.get(card.id, {})) if user_id in settings.admin_user_ids else {}

    @app.middleware
    async def mark_verified(context: AsyncBoltContext, request: AsyncBoltRequest, next: Any) -> Any:
        """Bolt runs our middleware only once its own checks passed (the signature, in HTTP
        mode); from here on the request's body may be answered (see ``report``)."""
        context[_VERIFIED] = signing_secret is not None or request.mode == "socket_mode"
        return await next()

    @app.middleware
    async def drop_retried_events(body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Slack retries events it thinks failed; the store remembers event ids across processes."""
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and not await store.claim_event(str(event_id), body.get("team_id")):
            return BoltResponse(status=200, body="")
        return await next()

    @app.middleware
    async def pooled_respond(context: AsyncBoltContext, next: Any) -> BoltResponse | None:
        """Replies to response_url reuse connections instead of opening one per reply."""
        if context.respond is not None:
            context["respond"] = PooledRespond(response_url=context.respond.response_url, session=responses)
        return await next()

    async def report(
        error: Exception, body: dict[str, Any], respond: AsyncRespond | None, *, verified: bool
    ) -> None:
        """Say what happened in the user's words; log anything unexpected (with its trace).

        Nothing at all is sent for a request that was not verified: its response_url and user
        are whatever the sender wrote, and answering would make us their messenger.
        """
        if not verified:
            logger.warning("a request failed before it was verified (nothing sent): %s", type(error).__name__)
            return
        if isinstance(error, errors.McpCoreError):
            message = texts.failed(error)
        else:
            logger.exception("unhandled error in a Slack listener", exc_info=error)
            message = texts.INTERNAL_ERROR
        if not body.get("response_url") and body.get("type") not in _INTERACTIVE:
            return  # an event: nobody is waiting for an answer
        try:
            await tell(body, respond, message)
        except Exception as exc:  # boundary: the error path must not raise again
            logger.warning("could not tell the user about an error: %s", type(exc).__name__)

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], respond: AsyncRespond | None, context: AsyncBoltContext
    ) -> None:
        """Failures before the ack (Bolt answers 500) and in middleware, Bolt's own included."""
        await report(error, body, respond, verified=context.get(_VERIFIED) is True)

    def after_ack(listener: Listener) -> Listener:
        """Report a listener's failure itself once it has acked.

        Bolt (1.30, async) resets a listener's ack to None when the listener raises soon after
        acking: the request then hangs for 3 s and answers 404, and Slack shows an error or
        retries. So failures after the ack never reach Bolt.
        """

        @functools.wraps(listener)
        async def guarded(**kwargs: Any) -> None:
            try:
                await listener(**kwargs)
            except Exception as exc:
                ack = kwargs.get("ack")
                if ack is not None and ack.response is None:
                    raise  # not acked yet: Bolt answers with an error and calls on_error
                # a listener runs only after every middleware, mark_verified included
                await report(exc, kwargs.get("body") or {}, kwargs.get("respond"), verified=True)

        return guarded

    async def publish_home(team_id: str, user_id: str) -> None:
        """Refresh the Home tab; best effort, since Slack asks again whenever it is opened."""
        connections = await store.list_connections(team_id, user_id)
        try:
            await client.views_publish(user_id=user_id, view=views.home_view(connections))
        except SlackApiError as exc:
            logger.warning("could not refresh the Home tab of %s: %s", user_id, exc.response.get("error"))

    async def tell(
        body: dict[str, Any],
        respond: AsyncRespond | None,
        text: str,
        blocks: list[Block] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Reply privately: via response_url when the request has one, else by DM."""
        if respond is not None and body.get("response_url"):
            await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=replace)
        else:
            _, user_id = owner(body)
            await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    async def notify(channel: str | None, user_id: str, text: str, blocks: list[Block] | None = None) -> None:
        """Ephemeral in the channel the user started from; a DM when there is none or it fails."""
        if channel:
            try:
                await client.chat_postEphemeral(channel=channel, user=user_id, text=text, blocks=blocks)
                return
            except SlackApiError as exc:
                logger.info("ephemeral reply failed (%s); sending a DM", exc.response.get("error"))
        await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)

    # -- /mcp ---------------------------------------------------------------------------

    @app.command("/mcp")
    @after_ack
    async def mcp_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        words = (body.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        arg = " ".join(words[1:])
        if sub == "connect":
            await open_connect(body, respond, arg)
            return
        handler = {
            "list": show_list,
            "tools": show_tools,
            "test": run_tests,
            "disconnect": confirm_disconnect,
        }.get(sub)
        if handler is None:
            await respond(text=texts.USAGE, response_type="ephemeral")
        else:
            await handler(body, respond, arg)

    async def find(body: dict[str, Any], respond: AsyncRespond, name: str) -> Connection | None:
        """The user's connection named ``name`` (any case); else the user hears their names."""
        team_id, user_id = owner(body)
        connection = await store.find_connection(team_id, user_id, name)
        if connection is None:
            names = [c.name for c in await store.list_connections(team_id, user_id)]
            await respond(text=texts.unknown_connection(name, names), response_type="ephemeral")
        return connection

    async def show_list(body: dict[str, Any], respond: AsyncRespond, _: str) -> None:
        connections = await store.list_connections(*owner(body))
        blocks = views.connection_blocks(connections)
        await respond(text=texts.list_summary(connections), blocks=blocks, response_type="ephemeral")

    async def show_tools(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        if name:
            connection = await find(body, respond, name)
            if connection is not None:
                blocks = views.tool_page_blocks(connection, 0)
                await respond(text=texts.tools_of(connection.name), blocks=blocks, response_type="ephemeral")
            return
        connections = await store.list_connections(*owner(body))
        if not connections:
            await respond(text=texts.NO_CONNECTIONS, response_type="ephemeral")
            return
        blocks = views.all_tools_blocks(connections)
        await respond(text=texts.ALL_TOOLS, blocks=blocks, response_type="ephemeral")

    async def run_tests(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        """One reply for all the checks (a response_url takes at most five)."""
        team_id, user_id = owner(body)
        if name:
            connection = await find(body, respond, name)
            targets = [connection] if connection is not None else []
        else:
            targets = await store.list_connections(team_id, user_id)
            if not targets:
                await respond(text=texts.NO_CONNECTIONS, response_type="ephemeral")
        if not targets:
            return
        reports = await asyncio.gather(*(registry.test(team_id, user_id, c.id) for c in targets))
        await respond(text="\n".join(texts.health(r) for r in reports), response_type="ephemeral")
        await publish_home(team_id, user_id)

    async def confirm_disconnect(body: dict[str, Any], respond: AsyncRespond, name: str) -> None:
        if not name:
            await respond(text=texts.WHICH_ONE, response_type="ephemeral")
            return
        connection = await find(body, respond, name)
        if connection is not None:
            blocks = views.connection_blocks([connection])
            await respond(
                text=texts.disconnect_prompt(connection.name), blocks=blocks, response_type="ephemeral"
            )

    # -- buttons ------------------------------------------------------------------------

    async def owned(body: dict[str, Any], respond: AsyncRespond | None, raw_id: str) -> Connection | None:
        """The connection a button names, looked up only among the requester's own; anything
        else is refused with a message (and logged: it may be a crafted payload)."""
        team_id, user_id = owner(body)
        try:
            return await store.get_connection(team_id, user_id, uuid.UUID(str(raw_id)))
        except (ValueError, errors.ConnectionNotFoundError):
            logger.warning("refused %s/%s a connection that is not theirs: %.64r", team_id, user_id, raw_id)
        await tell(body, respond, texts.NOT_YOUR_CONNECTION)
        return None

    @app.action("mcp_test")
    @app.action("mcp_retry")
    @after_ack
    async def test_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection = await owned(body, respond, action.get("value", ""))
        if connection is None:
            return
        team_id, user_id = owner(body)
        report = await registry.test(team_id, user_id, connection.id)
        await tell(body, respond, texts.health(report))
        await publish_home(team_id, user_id)

    @app.action("mcp_tools")
    @app.action(re.compile(r"^mcp_tools_page_\d+$"))
    @after_ack
    async def tools_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection_id, page = _tools_target(action.get("value", ""))
        connection = await owned(body, respond, connection_id)
        if connection is None:
            return
        blocks = views.tool_page_blocks(connection, page)
        paging = action["action_id"] != "mcp_tools"  # Next/Previous turn the page in place
        await tell(body, respond, texts.tools_of(connection.name), blocks, replace=paging)

    @app.action("mcp_disconnect")
    @after_ack
    async def disconnect_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection = await owned(body, respond, action.get("value", ""))
        if connection is None:
            return
        team_id, user_id = owner(body)
        await registry.remove_connection(team_id, user_id, connection.id)
        if connection.credential_ref and credentials is not None:
            await credentials.delete(team_id, user_id, connection.credential_ref)
        await tell(body, respond, texts.disconnected(connection.name))
        await publish_home(team_id, user_id)

    open_connect = register_connect(
        app,
        services=services,
        client=client,
        cards=cards,
        operator_fields=operator_fields,
        tell=tell,
        notify=notify,
        publish_home=publish_home,
        owned=owned,
        after_ack=after_ack,
    )

    # -- App Home -----------------------------------------------------------------------

    @app.event("app_home_opened")
    @after_ack
    async def home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") == "home" and isinstance(user, str) and user:
            await publish_home(str(body.get("team_id")), user)

    register_chat(app, services, client, cards)

    return app
