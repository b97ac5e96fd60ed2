"""``/mcp admin`` in Slack: the workspace's usage, its policy modal, and CSV exports.

Only admins get anything (``bot.admin_access``: ADMIN_USER_IDS or Slack's admins and owners),
checked again on every click and on the modal's submission, since each arrives on its own.
The numbers come from ``mcp_core.team_stats``, the rules from ``mcp_core.policy`` (every
change audited), the files go to the admin's DM (``bot.dm_files``). Nothing shown or
exported holds a secret, a URL's path or a call's arguments (the audit log holds redacted
arguments only when the policy says so).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import admin_views, texts
from bot._payload import channel_of, metadata_of, owner
from bot.admin_access import SlackRoles
from bot.dm_files import FileNotSent, send_to_dm
from bot.failures import Failures
from bot.replies import Replies
from mcp_core.models import AuditEntry
from mcp_core.policy import Policy, change_policy, load_policy
from mcp_core.services import Services
from mcp_core.settings import parse_prices
from mcp_core.stats import window
from mcp_core.team_stats import connections_csv, csv_export, safe_cell, team_stats
from run_cards import CardCatalog

logger = logging.getLogger(__name__)

__all__ = ["AdminPanel", "register_admin"]

AUDIT_SHOWN = 5
AUDIT_EXPORTED = 5000


class AdminPanel:
    """What ``/mcp admin`` answers, and its buttons' and modal's listeners."""

    def __init__(
        self,
        services: Services,
        client: AsyncWebClient,
        roles: SlackRoles,
        cards: CardCatalog,
        replies: Replies,
    ) -> None:
        self._services, self._client, self._roles, self._cards, self._replies = (
            services,
            client,
            roles,
            cards,
            replies,
        )

    @property
    def card_names(self) -> dict[str, str]:
        return {card.id: card.name for card in self._cards.all()}

    async def show(self, body: dict[str, Any], respond: AsyncRespond, arg: str) -> None:
        """``/mcp admin [7d|30d]``: the workspace's usage, policy and latest audit entries."""
        team_id, user_id = owner(body)
        if not await self._roles.is_admin(team_id, user_id):
            await self._replies.tell(body, respond, texts.ADMINS_ONLY)
            return
        days = window(arg)
        if days is None:
            await self._replies.tell(body, respond, texts.ADMIN_WINDOWS)
            return
        store, settings = self._services.store, self._services.settings
        prices = parse_prices(settings.model_prices)
        stats = await team_stats(store, team_id, days, prices)
        policy = await load_policy(store, team_id)
        audit = await store.list_audit(team_id, limit=AUDIT_SHOWN)
        blocks = admin_views.admin_blocks(stats, policy, audit, self.card_names, priced=bool(prices))
        await self._replies.tell(body, respond, admin_views.admin_summary(stats), blocks)

    async def open_policy(self, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        team_id, user_id = owner(body)
        if not await self._roles.is_admin(team_id, user_id):
            await self._replies.tell(body, respond, texts.ADMINS_ONLY)
            return
        policy = await load_policy(self._services.store, team_id)
        cards = [(card.id, card.name) for card in self._cards.all()]
        metadata = json.dumps({"channel": channel_of(body)})
        try:
            await self._client.views_open(
                trigger_id=body.get("trigger_id"), view=admin_views.policy_modal(policy, cards, metadata)
            )
        except SlackApiError as exc:
            logger.warning("could not open the policy modal: %s", exc.response.get("error"))
            await self._replies.tell(body, respond, texts.FORM_DID_NOT_OPEN)

    async def submit_policy(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        team_id, user_id = owner(body)
        if not await self._roles.is_admin(team_id, user_id):
            await ack(response_action="errors", errors={admin_views.PolicyBlocks.WHO: texts.ADMINS_ONLY})
            return
        state = view.get("state")
        values = state.get("values") if isinstance(state, dict) else None
        fields = admin_views.policy_from_state(values if isinstance(values, dict) else {})
        known = {card.id for card in self._cards.all()}
        if fields["allowed_cards"] is not None:
            fields["allowed_cards"] = [c for c in fields["allowed_cards"] if c in known]
        try:
            policy = Policy.model_validate(fields)
        except ValidationError as exc:
            await ack(response_action="errors", errors=_field_errors(exc))
            return
        await ack()
        change = await change_policy(self._services.store, team_id, user_id, policy)
        self._services.policies.forget(team_id)
        text = texts.POLICY_UNCHANGED if change is None else texts.policy_saved(change.changed)
        await self._replies.notify(metadata_of(view).get("channel"), user_id, text)

    async def export(self, body: dict[str, Any], respond: AsyncRespond | None, what: str, value: str) -> None:
        """``usage``: the window's calls per server and tool; ``audit``: the audit log;
        ``connections``: every connection of the workspace (no secrets)."""
        team_id, user_id = owner(body)
        if not await self._roles.is_admin(team_id, user_id):
            await self._replies.tell(body, respond, texts.ADMINS_ONLY)
            return
        days = window(value) or 7
        store = self._services.store
        if what == "usage":
            stats = await team_stats(store, team_id, days, {})
            content, rows = csv_export(stats), len(stats.tools)
            filename, title = (
                f"mcp-usage-{team_id}-{days}d.csv",
                f"MCP usage per server and tool, last {days} days",
            )
        elif what == "connections":
            found = await store.list_team_connections(team_id)
            content, rows = connections_csv(found), len(found)
            filename, title = f"mcp-connections-{team_id}.csv", "MCP connections of this workspace"
        else:
            since = datetime.now(UTC) - timedelta(days=days)
            entries = await store.list_audit(team_id, limit=AUDIT_EXPORTED, since=since)
            content, rows = audit_csv(entries), len(entries)
            filename, title = f"mcp-audit-{team_id}-{days}d.csv", f"MCP audit log, last {days} days"
        try:
            sent = await send_to_dm(
                self._client,
                user_id,
                content,
                filename=filename,
                title=title,
                comment=texts.export_comment(title, rows),
            )
        except FileNotSent as exc:
            await self._replies.tell(body, respond, texts.file_not_sent(exc.error, exc.scope))
            return
        await self._replies.tell(body, respond, texts.export_sent(title, sent.permalink))


def audit_csv(entries: list[AuditEntry]) -> str:
    """The audit log as CSV, oldest first; every cell safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["created_at", "actor", "action", "connection", "tool", "decision", "detail"])
    for entry in reversed(entries):
        detail = entry.detail
        writer.writerow(
            [
                entry.created_at.isoformat(),
                entry.actor_id,
                entry.action,
                *(safe_cell(detail.get(key, "")) for key in ("connection", "tool", "decision")),
                safe_cell(json.dumps(detail, ensure_ascii=False, sort_keys=True)),
            ]
        )
    return out.getvalue()


_EXPORTS = {
    admin_views.ADMIN_CSV_ACTION: "usage",
    admin_views.ADMIN_AUDIT_ACTION: "audit",
    admin_views.ADMIN_CONNECTIONS_ACTION: "connections",
}


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """A refused policy as the modal's field errors."""
    blocks = {
        "usergroup_id": admin_views.PolicyBlocks.GROUP,
        "no_tool_channels": admin_views.PolicyBlocks.NO_TOOLS,
        "read_only_channels": admin_views.PolicyBlocks.READ_ONLY,
        "allowed_cards": admin_views.PolicyBlocks.CARDS,
    }
    found: dict[str, str] = {}
    for error in exc.errors():
        where = error.get("loc") or ()
        block = (
            blocks.get(str(where[0]), admin_views.PolicyBlocks.GROUP)
            if where
            else admin_views.PolicyBlocks.GROUP
        )
        found.setdefault(block, str(error.get("msg", "")).removeprefix("Value error, "))
    return found


def register_admin(app: AsyncApp, panel: AdminPanel, failures: Failures) -> None:
    """Add the admin buttons' and the policy modal's listeners."""

    @app.action(admin_views.ADMIN_POLICY_ACTION)
    @failures.after_ack
    async def edit_policy(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await panel.open_policy(body, respond)

    @app.view(admin_views.POLICY_CALLBACK)
    @failures.after_ack
    async def policy_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await panel.submit_policy(ack, body, view)

    @app.action(admin_views.ADMIN_CSV_ACTION)
    @app.action(admin_views.ADMIN_AUDIT_ACTION)
    @app.action(admin_views.ADMIN_CONNECTIONS_ACTION)
    @failures.after_ack
    async def export(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        what = _EXPORTS.get(str(action.get("action_id")), "audit")
        value = action.get("value")
        await panel.export(body, respond, what, value if isinstance(value, str) else "")
