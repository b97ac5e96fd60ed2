"""``/mcp admin`` and the workspace policy modal as Block Kit, from ``mcp_core.team_stats``
and ``mcp_core.policy``.

Pure functions: numbers, names and the policy in, blocks out. Server and tool names are the
servers' words and connection names people's, shown inert. No URL path, argument or secret
is ever part of what these show (servers are cards, hosts or command names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    ConversationMultiSelectElement,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticMultiSelectElement,
)
from slack_sdk.models.views import View

from bot.question_views import entities as _escape
from bot.views import SECTION_TEXT_LIMIT, clip
from mcp_core.models import AuditEntry
from mcp_core.policy import Policy
from mcp_core.team_stats import TeamStats

__all__ = [
    "ADMIN_AUDIT_ACTION",
    "ADMIN_CONNECTIONS_ACTION",
    "ADMIN_CSV_ACTION",
    "ADMIN_POLICY_ACTION",
    "POLICY_CALLBACK",
    "PolicyBlocks",
    "admin_blocks",
    "admin_summary",
    "policy_from_state",
    "policy_modal",
    "server_label",
]

ADMIN_POLICY_ACTION = "mcp_admin_policy"
ADMIN_CSV_ACTION = "mcp_admin_csv"
"""Its value is the window, ``7d`` or ``30d``."""
ADMIN_AUDIT_ACTION = "mcp_admin_audit"
ADMIN_CONNECTIONS_ACTION = "mcp_admin_connections"
POLICY_CALLBACK = "mcp_admin_policy_submit"
MAX_CARD_OPTIONS = 100  # a multi-select holds at most 100 options


class PolicyBlocks:
    """The policy modal's block and action ids (the submission reads them back)."""

    CARDS = "policy_cards"
    CUSTOM = "policy_custom"
    WHO = "policy_who"
    GROUP = "policy_group"
    NO_TOOLS = "policy_no_tools"
    READ_ONLY = "policy_read_only"
    ARGUMENTS = "policy_arguments"


WHO_LABELS = {"everyone": "Everyone", "usergroup": "Members of a user group", "admins": "Admins only"}


def server_label(server: str, card_names: Mapping[str, str]) -> str:
    """A server key (``mcp_core.store._rollups.server_key``) in words, escaped."""
    kind, _, name = server.partition(":")
    if kind == "card":
        return _escape(card_names.get(name, name))
    if kind == "url":
        return f"`{_escape(name).replace('`', '')}`"
    if kind == "stdio":
        return f"{_escape(name)} (local command)"
    return "removed connections"


def admin_summary(stats: TeamStats) -> str:
    if not stats.calls:
        return f"No tool calls in this workspace in the last {stats.days} days."
    ok = 1 - stats.errors / stats.calls
    return f"{stats.calls:,} tool calls in this workspace in the last {stats.days} days · {ok:.0%} succeeded"


def admin_blocks(
    stats: TeamStats,
    policy: Policy,
    audit: Sequence[AuditEntry],
    card_names: Mapping[str, str],
    *,
    priced: bool,
) -> list[Block]:
    """The ephemeral reply: totals, the actions, cards, error rates, busiest tools, sign-in
    waits, tokens, the policy in words and the newest audit entries."""
    window = f"{stats.days}d"
    blocks: list[Block] = [
        HeaderBlock(text=f"Workspace MCP usage, last {stats.days} days"),
        SectionBlock(
            text=MarkdownTextObject(
                text=f"{admin_summary(stats)}\n{stats.people_with_connections:,} people have "
                f"{stats.connections:,} connections · {stats.people_asking:,} asked the agent"
            )
        ),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Edit policy", action_id=ADMIN_POLICY_ACTION, value=window, style="primary"
                ),
                ButtonElement(text="Export usage CSV", action_id=ADMIN_CSV_ACTION, value=window),
                ButtonElement(text="Export audit log", action_id=ADMIN_AUDIT_ACTION, value=window),
                ButtonElement(text="Export connections", action_id=ADMIN_CONNECTIONS_ACTION, value=window),
            ]
        ),
    ]
    if stats.cards:
        lines = [
            f"• {_escape(card_names.get(c.card_id, c.card_id)) if c.card_id else 'Custom servers'}: "
            f"{c.connections:,} connections, {c.people:,} people"
            for c in stats.cards[:20]
        ]
        blocks += [DividerBlock(), _section("*Connections per card*", lines)]
    if stats.servers:
        lines = [
            f"• {server_label(s.server, card_names)}: {s.error_rate:.0%} failed "
            f"({s.errors:,} of {s.calls:,}) · avg {s.avg_ms:,.0f} ms"
            for s in stats.servers
        ]
        blocks.append(_section("*Highest error rates*", lines))
    if stats.busiest:
        lines = [
            f"• {server_label(t.server, card_names)} › {_escape(t.tool)}: {t.calls:,} calls, "
            f"{1 - t.errors / t.calls if t.calls else 1:.0%} succeeded"
            for t in stats.busiest
        ]
        blocks.append(_section("*Busiest tools*", lines))
    if stats.sign_in:
        lines = [
            f"• <@{w.user_id}>: {_escape(w.connection_name)} ({server_label(w.server, card_names)})"
            for w in stats.sign_in[:20]
        ]
        if len(stats.sign_in) > 20:
            lines.append(f"…and {len(stats.sign_in) - 20} more")
        blocks.append(_section("*Waiting for their person to sign in*", lines))
    if stats.models:
        lines = [
            f"• {_escape(m.model)}: {m.turns:,} answers, {m.prompt_tokens + m.completion_tokens:,} tokens"
            + (f" · ~${m.cost_usd:,.2f}" if m.cost_usd is not None else "")
            for m in stats.models[:10]
        ]
        blocks += [DividerBlock(), _section("*Answers and tokens*", lines)]
        if not priced:
            blocks.append(_context("Set `MODEL_PRICES` to see estimated costs."))
    blocks += [DividerBlock(), _section("*Policy*", policy_lines(policy, card_names))]
    if audit:
        blocks.append(_section("*Latest in the audit log*", [audit_line(e) for e in audit]))
    return blocks


def policy_lines(policy: Policy, card_names: Mapping[str, str]) -> list[str]:
    cards = (
        "every run card"
        if policy.allowed_cards is None
        else ", ".join(_escape(card_names.get(c, c)) for c in policy.allowed_cards) or "no run cards"
    )
    who = WHO_LABELS[policy.who_may_add].lower()
    if policy.who_may_add == "usergroup" and policy.usergroup_id:
        who = f"members of <!subteam^{policy.usergroup_id}>"
    lines = [
        f"• Allowed: {cards}; custom server URLs {'allowed' if policy.custom_urls else 'not allowed'}",
        f"• Who may add connections: {who}",
    ]
    if policy.no_tool_channels:
        lines.append("• No tools in " + ", ".join(f"<#{c}>" for c in policy.no_tool_channels))
    if policy.read_only_channels:
        lines.append("• Read-only tools only in " + ", ".join(f"<#{c}>" for c in policy.read_only_channels))
    lines.append(
        f"• Approved calls' arguments {'kept' if policy.audit_arguments else 'not kept'} in the audit log"
    )
    return lines


def audit_line(entry: AuditEntry) -> str:
    when = entry.created_at.strftime("%Y-%m-%d %H:%M UTC")
    detail = entry.detail
    if entry.action == "policy_changed":
        changed = ", ".join(str(f) for f in detail.get("changed", []))
        return f"• {when} <@{entry.actor_id}> changed the policy: {_escape(changed)}"
    decision = _escape(str(detail.get("decision", "")))
    tool, connection = _escape(str(detail.get("tool", ""))), _escape(str(detail.get("connection", "")))
    return f"• {when} <@{entry.actor_id}> {decision} {tool} on {connection}"


def policy_modal(policy: Policy, cards: Sequence[tuple[str, str]], metadata: str) -> View:
    """The admin's policy form. ``cards``: (id, name) of every card the bot offers."""
    card_options = [Option(value=cid, text=clip(name, 75)) for cid, name in cards[:MAX_CARD_OPTIONS]]
    chosen = [o for o in card_options if policy.allowed_cards is not None and o.value in policy.allowed_cards]
    yes_custom = Option(value="yes", text="Allow custom server URLs")
    keep_args = Option(
        value="yes", text="Keep approved and denied calls' arguments (redacted) in the audit log"
    )
    who_options = [Option(value=k, text=v) for k, v in WHO_LABELS.items()]
    blocks: list[Block] = [
        InputBlock(
            block_id=PolicyBlocks.CARDS,
            label="Allowed run cards",
            hint="Leave empty to allow every card.",
            optional=True,
            element=StaticMultiSelectElement(
                action_id=PolicyBlocks.CARDS, options=card_options, initial_options=chosen or None
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.CUSTOM,
            label="Custom servers",
            optional=True,
            element=CheckboxesElement(
                action_id=PolicyBlocks.CUSTOM,
                options=[yes_custom],
                initial_options=[yes_custom] if policy.custom_urls else None,
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.WHO,
            label="Who may add connections",
            element=RadioButtonsElement(
                action_id=PolicyBlocks.WHO,
                options=who_options,
                initial_option=next(o for o in who_options if o.value == policy.who_may_add),
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.GROUP,
            label="User group ID",
            hint="With “Members of a user group”: the group's ID, like S0123ABCD.",
            optional=True,
            element=PlainTextInputElement(
                action_id=PolicyBlocks.GROUP, initial_value=policy.usergroup_id or None, max_length=32
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.NO_TOOLS,
            label="Channels where the agent runs no tools",
            optional=True,
            element=ConversationMultiSelectElement(
                action_id=PolicyBlocks.NO_TOOLS, initial_conversations=list(policy.no_tool_channels) or None
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.READ_ONLY,
            label="Channels where it runs only read-only tools",
            optional=True,
            element=ConversationMultiSelectElement(
                action_id=PolicyBlocks.READ_ONLY,
                initial_conversations=list(policy.read_only_channels) or None,
            ),
        ),
        InputBlock(
            block_id=PolicyBlocks.ARGUMENTS,
            label="Audit log",
            optional=True,
            element=CheckboxesElement(
                action_id=PolicyBlocks.ARGUMENTS,
                options=[keep_args],
                initial_options=[keep_args] if policy.audit_arguments else None,
            ),
        ),
    ]
    return View(
        type="modal",
        callback_id=POLICY_CALLBACK,
        title=PlainTextObject(text="Workspace policy"),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=metadata,
        blocks=blocks,
    )


def policy_from_state(values: Mapping[str, Any]) -> dict[str, Any]:
    """The modal's submitted state (``view.state.values``) as ``Policy`` fields; anything of
    an unexpected shape reads as absent (then validated by ``Policy``)."""

    def element(block: str) -> dict[str, Any]:
        found = values.get(block)
        inner = found.get(block) if isinstance(found, dict) else None
        return inner if isinstance(inner, dict) else {}

    def selected(block: str) -> list[str]:
        options = element(block).get("selected_options")
        if not isinstance(options, list):
            return []
        return [str(o["value"]) for o in options if isinstance(o, dict) and isinstance(o.get("value"), str)]

    def conversations(block: str) -> list[str]:
        found = element(block).get("selected_conversations")
        return [c for c in found if isinstance(c, str)] if isinstance(found, list) else []

    who = element(PolicyBlocks.WHO).get("selected_option")
    group = element(PolicyBlocks.GROUP).get("value")
    cards = selected(PolicyBlocks.CARDS)
    return {
        "allowed_cards": cards or None,
        "custom_urls": "yes" in selected(PolicyBlocks.CUSTOM),
        "who_may_add": who.get("value") if isinstance(who, dict) else "everyone",
        "usergroup_id": group.strip() if isinstance(group, str) and group.strip() else None,
        "no_tool_channels": conversations(PolicyBlocks.NO_TOOLS),
        "read_only_channels": conversations(PolicyBlocks.READ_ONLY),
        "audit_arguments": "yes" in selected(PolicyBlocks.ARGUMENTS),
    }


def _section(title: str, lines: Sequence[str]) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip("\n".join([title, *lines]), SECTION_TEXT_LIMIT)))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])
