"""The connect flow in Slack: the run-card picker, a card's form, Edit, and the form's submission.

Who is asking is always the verified request's team and user; a connection being edited is
looked up only among that user's own (an id that is not theirs makes the form add a new one).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import channel_of, form_values, metadata_of, owner
from mcp_core import errors
from mcp_core.models import Connection, NewConnection, normalize_connection_name
from mcp_core.security import check_endpoint, check_remote_url
from mcp_core.services import Services
from run_cards import CardCatalog, CardFieldError, RunCard, operator_var

logger = logging.getLogger(__name__)

__all__ = ["OpenConnect", "register_connect"]

URL_CHECK_TIMEOUT_S = 2.0
"""View submissions must be acked within 3 s; the URL check (DNS) gets at most this."""
_BEARER_PREFIX = re.compile(r"^bearer\s+", re.IGNORECASE)

OpenConnect = Callable[..., Awaitable[None]]
"""``open_connect(body, respond, card_id, *, editing=None)``: the picker, or a card's form."""


def register_connect(
    app: AsyncApp,
    *,
    services: Services,
    client: AsyncWebClient,
    cards: CardCatalog,
    operator_fields: Callable[[str, RunCard], dict[str, str]],
    tell: Callable[..., Awaitable[None]],
    notify: Callable[..., Awaitable[None]],
    publish_home: Callable[[str, str], Awaitable[None]],
    owned: Callable[[dict[str, Any], AsyncRespond | None, str], Awaitable[Connection | None]],
    after_ack: Callable[[Any], Any],
) -> OpenConnect:
    """Add the connect listeners to ``app``; returns ``open_connect`` for ``/mcp connect``."""
    store, registry, credentials = services.store, services.registry, services.credentials
    settings = services.settings

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
        metadata = {"channel": channel_of(body)}
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
        channel = metadata_of(view).get("channel", "")
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
        form, metadata = form_values(view), metadata_of(view)
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

    return open_connect


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
