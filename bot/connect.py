"""The connect flow in Slack: the run-card picker, a card's form, Edit, and the form's submission.

Who is asking is always the verified request's team and user; a connection being edited is
looked up only among that user's own (an id that is not theirs makes the form add a new one).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot._payload import channel_of, form_values, metadata_of, owner
from bot.admin_access import SlackRoles
from bot.failures import Failures
from bot.home import Home
from bot.middleware import CONNECTION, OwnedConnection
from bot.replies import Replies
from mcp_core import errors
from mcp_core.connection_service import ConnectForm, ConnectPlan, FormProblem, NotSaved, ProblemKind
from mcp_core.models import Connection
from mcp_core.policy import Policy, load_policy
from mcp_core.services import Services
from mcp_core.store import Store
from run_cards import CardCatalog, RunCard, operator_var

logger = logging.getLogger(__name__)

__all__ = ["OpenConnect", "register_connect"]

OpenConnect = Callable[..., Awaitable[None]]
"""``open_connect(body, respond, card_id, *, editing=None)``: the picker, or a card's form."""


def register_connect(
    app: AsyncApp,
    *,
    services: Services,
    client: AsyncWebClient,
    cards: CardCatalog,
    operator_fields: Callable[[str, RunCard], dict[str, str]],
    replies: Replies,
    home: Home,
    owned: OwnedConnection,
    failures: Failures,
    roles: SlackRoles,
) -> OpenConnect:
    """Add the connect listeners to ``app``; returns ``open_connect`` for ``/mcp connect``.

    The workspace's policy (``mcp_core.policy``) is read when a form opens and again when it
    is submitted: who may add connections, and which cards (custom URLs among them) are
    offered at all."""
    store, connections, settings = services.store, services.connections, services.settings
    tell, notify, publish_home, after_ack = replies.tell, replies.notify, home.publish, failures.after_ack

    def usable_cards(user_id: str, policy: Policy) -> list[RunCard]:
        offered = cards.for_user(user_id in settings.admin_user_ids)
        return [c for c in offered if policy.card_allowed(c.id, custom=c.url_field() is not None)]

    def usable_card(user_id: str, card_id: str, policy: Policy) -> RunCard | None:
        card = cards.get(card_id.lower())
        if card is None or (card.admin_only and user_id not in settings.admin_user_ids):
            return None
        return card if policy.card_allowed(card.id, custom=card.url_field() is not None) else None

    async def refusal(team_id: str, user_id: str, policy: Policy, *, adding: bool) -> str | None:
        """Why the person may not add a connection now (editing their own is always open)."""
        if not adding:
            return None
        who = await roles.add_refusal(policy, team_id, user_id)
        return None if who is None else texts.may_not_add(who, policy.usergroup_id)

    async def open_connect(
        body: dict[str, Any], respond: AsyncRespond | None, card_id: str, *, editing: Connection | None = None
    ) -> None:
        """Open the picker or a card's form on the request's trigger_id (valid ~3 s)."""
        team_id, user_id = owner(body)
        metadata = {"channel": channel_of(body)}
        policy = await load_policy(store, team_id)
        if (refused := await refusal(team_id, user_id, policy, adding=editing is None)) is not None:
            await tell(body, respond, refused)
            return
        if editing is not None:
            card_id = editing.card_id or "custom"
        if not card_id:
            available = usable_cards(user_id, policy)
            if not available:
                await tell(body, respond, texts.NO_CARDS_ALLOWED)
                return
            try:
                popularity = await store.card_popularity(owner(body)[0])
            except errors.McpCoreError as exc:
                logger.warning("could not count card use: %s", exc)
                popularity = {}
            available.sort(key=lambda c: (-popularity.get(c.id, 0), c.name.lower()))
            form = views.card_picker(available, metadata=metadata)
        else:
            card = usable_card(user_id, card_id, policy)
            if card is None:
                offered = [c.id for c in usable_cards(user_id, policy)]
                found = cards.get(card_id.lower())  # an admin-only card is not named to others
                known = found is not None and (not found.admin_only or user_id in settings.admin_user_ids)
                await tell(
                    body,
                    respond,
                    texts.card_not_allowed(card_id, offered)
                    if known
                    else texts.unknown_card(card_id, offered),
                )
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
            values=editing.typed_config.card_values if editing is not None else {},
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
        team_id, user_id = owner(body)
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        view_id, view_hash = view.get("id"), view.get("hash")
        card = usable_card(user_id, str(action.get("value", "")), await load_policy(store, team_id))
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

    @app.action("mcp_edit", middleware=[owned.middleware()])
    @after_ack
    async def edit_button(body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext) -> None:
        await open_connect(body, respond, "", editing=context[CONNECTION])

    @app.view(views.CONNECT_CALLBACK)
    @after_ack
    async def connect_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Check every field (problems keep the modal open), then ack and connect."""
        team_id, user_id = owner(body)
        form, metadata = form_values(view), metadata_of(view)
        policy = await load_policy(store, team_id)
        card = usable_card(user_id, metadata.get("card") or "custom", policy)
        if card is None:
            known = cards.get((metadata.get("card") or "custom").lower())
            why = (
                texts.CARD_NOT_IN_POLICY
                if known is not None and not known.admin_only
                else texts.CARD_NOT_ALLOWED
            )
            await ack(response_action="errors", errors={views.NAME_BLOCK: why})
            return
        adding = policy.who_may_add != "everyone" and await _adds(store, team_id, user_id, _edit_id(metadata))
        if (refused := await refusal(team_id, user_id, policy, adding=adding)) is not None:
            await ack(response_action="errors", errors={views.NAME_BLOCK: refused})
            return
        submitted = ConnectForm(
            team_id,
            user_id,
            card,
            name=form.get(views.NAME_BLOCK, ""),
            values=form,
            operator=operator_fields(user_id, card),
            editing_id=_edit_id(metadata),
        )
        checked = await connections.check(submitted)
        if not isinstance(checked, ConnectPlan):
            await ack(response_action="errors", errors=_field_errors(card, checked))
            return
        await ack()
        result = await connections.connect(checked)
        channel = metadata.get("channel")
        if isinstance(result, NotSaved):
            await notify(channel, user_id, texts.connect_failed(result.name, result.error))
            return
        connection = result.connection
        label = card.name if card.id != "custom" else connection.name
        reader = views.Reader(user_id in settings.admin_user_ids, services.oauth.redirect_url)
        text, blocks = views.connect_reply(connection, result.error, label=label, reader=reader)
        await notify(channel, user_id, text, blocks)
        await publish_home(team_id, user_id, sign_in_links=views.sign_in_links(connection, result.error))

    return open_connect


async def _adds(store: Store, team_id: str, user_id: str, editing_id: uuid.UUID | None) -> bool:
    """Whether a submission adds a connection: it edits none, or one that is not the person's
    own (which the form then adds as new, so it must pass the who-may-add rule)."""
    if editing_id is None:
        return True
    try:
        await store.get_connection(team_id, user_id, editing_id)
    except errors.ConnectionNotFoundError:
        return True
    return False


def _edit_id(metadata: dict[str, str]) -> uuid.UUID | None:
    """The connection an Edit form was opened for (looked up only among the person's own)."""
    try:
        return uuid.UUID(metadata["edit"])
    except (KeyError, ValueError):
        return None


def _field_errors(card: RunCard, problems: list[FormProblem]) -> dict[str, str]:
    """The form's problems as Slack's ``errors``: block id → text."""
    return {views.NAME_BLOCK if p.field is None else p.field: _problem_text(card, p) for p in problems}


def _problem_text(card: RunCard, problem: FormProblem) -> str:
    match problem.kind:
        case ProblemKind.DUPLICATE_NAME:
            return texts.duplicate_name(problem.message)
        case ProblemKind.OPERATOR_VALUE_INVALID:  # the message never holds the value
            return f"{operator_var(card.id, problem.field or '')} in the bot's .env {problem.message}"
        case ProblemKind.OPERATOR_VALUE_REFUSED:
            return texts.operator_value_refused(card.id, problem.field or "")
        case ProblemKind.NO_CREDENTIAL_STORE:
            return texts.NO_CREDENTIAL_STORE
        case ProblemKind.INVALID:
            return problem.message
