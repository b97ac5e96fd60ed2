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
from mcp_core import errors
from mcp_core.models import Connection, NewConnection, normalize_connection_name
from mcp_core.security import check_endpoint, check_remote_url
from mcp_core.services import Services
from run_cards import (
    BUILTIN_DIR,
    CardCatalog,
    CardFieldError,
    OperatorValues,
    RunCard,
    load_cards,
    operator_var,
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


# The readers below are total: a value of an unexpected type or shape reads as absent, and
# the listener then answers as it does for a missing value (a field error, "not yours").


def _channel(body: dict[str, Any]) -> str:
    """The channel a command or a button click came from ("" on the Home tab)."""
    channel = body.get("channel")
    found = body.get("channel_id") or (channel.get("id") if isinstance(channel, dict) else None)
    return found if isinstance(found, str) else ""


def _form_values(view: dict[str, Any]) -> dict[str, str]:
    """``{block_id: value}`` of a submitted form's plain-text inputs ("" for any other value)."""
    state = view.get("state")
    blocks = state.get("values") if isinstance(state, dict) else None
    values: dict[str, str] = {}
    for block, actions in blocks.items() if isinstance(blocks, dict) else ():
        element = next(iter(actions.values()), None) if isinstance(actions, dict) else None
        value = element.get("value") if isinstance(element, dict) else None
        values[block] = value if isinstance(value, str) else ""
    return values


def _metadata(view: dict[str, Any]) -> dict[str, str]:
    """The string entries of a modal's private_metadata (a JSON object we wrote)."""
    raw = view.get("private_metadata")
    try:
        metadata = json.loads(raw) if isinstance(raw, str) and raw else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(v, str)}


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

    # -- connect ------------------------------------------------------------------------

    def usable_cards(user_id: str) -> list[RunCard]:
        return cards.for_user(user_id in settings.admin_user_ids)

    def usable_card(user_id: str, card_id: str) -> RunCard | None:
        card = cards.get(card_id.lower())
        if card is None or (card.admin_only and user_id not in settings.admin_user_ids):
            return None
        return card

    async def open_connect(
        body: dict[str, Any], respond: AsyncRespond | None, card_id: str, *, editing: Connection | None = None
    ) -> None:
        """Open the picker or a card's form on the request's trigger_id (valid ~3 s)."""
        _, user_id = owner(body)
        metadata = {"channel": _channel(body)}
        if editing is not None:
            card_id = editing.card_id or "custom"
        if not card_id:
            available = usable_cards(user_id)
            try:
                popularity = await store.card_popularity(owner(body)[0])
            except errors.McpCoreError as exc:
                logger.warning("could not count card use: %s", exc)
                popularity = {}
            available.sort(key=lambda c: (-popularity.get(c.id, 0), c.name.lower()))
            form = views.card_picker(available, metadata=metadata)
        else:
            card = usable_card(user_id, card_id)
            if card is None:
                await tell(body, respond, texts.unknown_card(card_id, [c.id for c in usable_cards(user_id)]))
                return
            form = card_form(user_id, card, metadata, editing)
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=form)
        except SlackApiError as exc:
            logger.warning("views.open failed: %s", exc.response.get("error"))
            await tell(body, respond, texts.FORM_DID_NOT_OPEN)

    def card_form(
        user_id: str, card: RunCard, metadata: dict[str, str], editing: Connection | None = None
    ) -> Any:
        metadata = {**metadata, "card": card.id}
        if editing is not None:
            metadata["edit"] = str(editing.id)
        return views.card_form(
            card,
            metadata=metadata,
            name=editing.name if editing else "",
            values=(editing.config.get("card_values") or {}) if editing is not None else {},
            editing=editing is not None,
            from_operator=set(operator_fields(user_id, card)),
        )

    @app.action("mcp_connect_open")
    @after_ack
    async def connect_button(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await open_connect(body, respond, "")

    @app.action(views.CARD_PICK_ACTION)
    @after_ack
    async def pick_card(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A card picked in the catalog: the picker turns into that card's form."""
        await ack()
        _, user_id = owner(body)
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        view_id, view_hash = view.get("id"), view.get("hash")
        card = usable_card(user_id, str(action.get("value", "")))
        if card is None:
            logger.warning("refused %s a card not offered to them: %.64r", user_id, action.get("value"))
            return
        if not view_id or not isinstance(view_id, str):  # not clicked in a picker: open the form
            await open_connect(body, None, card.id)
            return
        channel = _metadata(view).get("channel", "")
        form = card_form(user_id, card, {"channel": channel})
        await client.views_update(
            view_id=view_id, hash=view_hash if isinstance(view_hash, str) else None, view=form
        )

    @app.action("mcp_edit")
    @after_ack
    async def edit_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        connection = await owned(body, respond, action.get("value", ""))
        if connection is not None:
            await open_connect(body, respond, "", editing=connection)

    async def _editing(team_id: str, user_id: str, metadata: dict[str, str]) -> Connection | None:
        """The user's own connection an Edit form was opened for; None for a new one (or a
        connection that is gone or not theirs: then the form simply adds a new connection)."""
        try:
            return await store.get_connection(team_id, user_id, uuid.UUID(metadata["edit"]))
        except (KeyError, ValueError, errors.ConnectionNotFoundError):
            return None

    @app.view(views.CONNECT_CALLBACK)
    @after_ack
    async def connect_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Validate every field (errors keep the modal open), then ack and connect."""
        team_id, user_id = owner(body)
        form, metadata = _form_values(view), _metadata(view)
        card = usable_card(user_id, metadata.get("card") or "custom")
        if card is None:
            await ack(response_action="errors", errors={views.NAME_BLOCK: texts.CARD_NOT_ALLOWED})
            return
        editing = await _editing(team_id, user_id, metadata)
        if editing is not None and (editing.card_id or "custom") != card.id:
            editing = None
        values = _card_values(card, form)
        operator = operator_fields(user_id, card)
        from_operator = {  # blank fields the operator's .env fills; an edit keeps stored secrets
            k: v for k, v in operator.items() if k not in values and not (editing and card.field(k).secret)
        }
        values.update(from_operator)
        problems: dict[str, str] = {}
        name = ""
        try:
            name = normalize_connection_name(form.get(views.NAME_BLOCK, ""))
        except ValueError as exc:
            problems[views.NAME_BLOCK] = str(exc)
        blank_secrets = [f.key for f in card.fields if f.secret and not values.get(f.key)]
        old_secrets: dict[str, str] = {}
        builder = card
        if editing is not None and blank_secrets:  # blank secrets keep their stored values
            if editing.credential_ref and credentials is not None:
                old_secrets = dict(await credentials.get(team_id, user_id, editing.credential_ref))
            relaxed = [
                f.model_copy(update={"required": False}) if f.key in blank_secrets else f for f in card.fields
            ]
            builder = card.model_copy(update={"fields": relaxed})
        new = None
        secrets: dict[str, str] = {}
        try:
            new, secrets = builder.build(values, name=name or card.id, unshown=from_operator)
        except CardFieldError as exc:
            known = any(f.key == exc.field_key for f in card.fields)
            message = exc.message  # never contains the value, so naming the variable is enough
            if exc.field_key in from_operator:
                message = f"{operator_var(card.id, exc.field_key)} in the bot's .env {message}"
            problems.setdefault(exc.field_key if known else views.NAME_BLOCK, message)
        except ValueError as exc:
            problems.setdefault(views.NAME_BLOCK, str(exc))
        if new is not None and editing is not None:
            for key in blank_secrets:
                destination = _destination(card, key, values)
                if destination in old_secrets:
                    secrets[destination] = old_secrets[destination]
                elif key in operator:
                    secrets[destination] = operator[key]
                elif card.field(key).required:
                    problems[key] = "required"
        if new is not None:
            check = check_endpoint if new.transport == "stdio" else check_remote_url
            for key, url in _policy_targets(card, new, values):
                try:
                    await _with_timeout(check(url, settings.mcp_allowed_hosts))
                except errors.PolicyError as exc:  # an operator's value is never shown back
                    refused = texts.operator_value_refused(card.id, key)
                    problems.setdefault(key, refused if key in from_operator else str(exc))
        existing = await store.find_connection(team_id, user_id, name) if name else None
        if existing is not None and (editing is None or existing.id != editing.id):
            problems[views.NAME_BLOCK] = texts.duplicate_name(name)
        if editing is None:
            try:
                await registry.check_room(team_id, user_id)
            except errors.LimitError as exc:
                problems[views.NAME_BLOCK] = str(exc)
        if secrets and credentials is None:
            problems[next(f.key for f in card.fields if f.secret)] = texts.NO_CREDENTIAL_STORE
        if problems or new is None:
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        channel = metadata.get("channel")
        old_ref = editing.credential_ref if editing is not None else None
        ref = None
        if editing is not None and secrets and secrets == old_secrets:
            ref = old_ref  # nothing new to keep
        elif secrets and credentials is not None:
            ref = await credentials.put(team_id, user_id, secrets)
        try:
            if editing is not None:  # changed in place: same id, usage history kept
                outcome = await registry.update_connection(
                    team_id,
                    user_id,
                    editing.id,
                    name=name,
                    transport=new.transport,
                    url=new.url,
                    args=new.args,
                    config=new.config,
                    credential_ref=ref,
                )
            else:
                outcome = await registry.add_connection(
                    team_id, user_id, new.model_copy(update={"name": name, "credential_ref": ref})
                )
        except errors.McpCoreError as exc:  # nothing was changed, so the new secret goes too
            if ref is not None and ref != old_ref and credentials is not None:
                await credentials.delete(team_id, user_id, ref)
            await notify(channel, user_id, texts.connect_failed(name, exc))
            return
        if old_ref and old_ref != ref and credentials is not None:
            await credentials.delete(team_id, user_id, old_ref)
        connection = outcome.connection
        if outcome.error is None:
            await notify(channel, user_id, texts.connected(connection.name, len(connection.tools)))
        else:
            text = texts.connect_failed(connection.name, outcome.error)
            blocks = views.result_blocks(text, connection_id=connection.id, failed=True)
            await notify(channel, user_id, text, blocks)
        await publish_home(team_id, user_id)

    # -- App Home -----------------------------------------------------------------------

    @app.event("app_home_opened")
    @after_ack
    async def home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") == "home" and isinstance(user, str) and user:
            await publish_home(str(body.get("team_id")), user)

    register_chat(app, services, client, cards)

    return app


def _card_values(card: RunCard, form: dict[str, str]) -> dict[str, str]:
    """The submitted values of the card's fields, cleaned the way people paste them."""
    values = {f.key: form[f.key].strip() for f in card.fields if form.get(f.key, "").strip()}
    for key, value in list(values.items()):
        mapping = card.mapping[key]
        if mapping.format and mapping.format.startswith("Bearer "):
            values[key] = _BEARER_PREFIX.sub("", value)  # a token pasted with its "Bearer " prefix
    transport = next((k for k, m in card.mapping.items() if m.kind == "transport"), None)
    url = _url_field(card)
    if transport and url and transport not in values and values.get(url, "").rstrip("/").endswith("/sse"):
        values[transport] = "sse"  # legacy SSE endpoints end in /sse
    return values


def _url_field(card: RunCard) -> str | None:
    return next((k for k, m in card.mapping.items() if m.kind == "url"), None)


def _destination(card: RunCard, key: str, values: dict[str, str]) -> str:
    """Where a secret field's value is stored (``header:Name``, ``env:NAME``, ...)."""
    mapping = card.mapping[key]
    target = mapping.target
    if target.startswith("{") and target.endswith("}"):
        target = values.get(target[1:-1], "")
    return f"{mapping.kind}:{target}"


def _policy_targets(card: RunCard, new: NewConnection, values: dict[str, str]) -> list[tuple[str, str]]:
    """(form field, URL) pairs for the network policy: the remote URL, or each stdio endpoint."""
    if new.transport != "stdio":
        return [(_url_field(card) or views.NAME_BLOCK, new.url or "")]
    return [(f.key, values[f.key]) for f in card.fields if f.endpoint and values.get(f.key)]


async def _with_timeout(coro: Any) -> Any:
    try:
        return await asyncio.wait_for(coro, URL_CHECK_TIMEOUT_S)
    except TimeoutError:
        raise errors.PolicyError(
            "Checking that URL took too long. Check the host name and try again."
        ) from None
