"""Block Kit surfaces as pure functions: data in, ``slack_sdk.models`` objects out.

Built with the SDK's models so Slack's limits are checked when they are serialized; the
limits the SDK does not enforce (50 blocks per message, field lengths) are kept here by
construction: texts are clipped and long lists are cut with a note.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextActionsBlock,
    ContextBlock,
    DividerBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import texts
from mcp_core import errors
from mcp_core.agent import ToolCall, ToolProgress
from mcp_core.models import Connection, ConnectionStatus, ToolInfo, ToolPrefs
from mcp_core.oauth.flows import MAX_CLIENT_ID_CHARS
from run_cards import RunCard, operator_var

__all__ = [
    "CARD_PICK_ACTION",
    "CONNECT_CALLBACK",
    "MESSAGE_BLOCK_LIMIT",
    "VIEW_BLOCK_LIMIT",
    "Reader",
    "agent_answer",
    "all_tools_blocks",
    "approval_question",
    "arguments_modal",
    "card_form",
    "card_picker",
    "client_form",
    "clip",
    "connect_reply",
    "connection_blocks",
    "defused",
    "home_view",
    "result_blocks",
    "sign_in_blocks",
    "sign_in_button",
    "sign_in_for_clicker",
    "sign_in_links",
    "task_update",
    "tool_page_blocks",
]

MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
ACTIONS_LIMIT = 25
SECTION_TEXT_LIMIT = 3000
TOOLS_PER_PAGE = 15
DESCRIPTION_CHARS = 200
CONNECT_CALLBACK = "mcp_connect_submit"
CARD_PICK_ACTION = "mcp_pick_card"
NAME_BLOCK = "name"
MESSAGE_TEXT_LIMIT = 39_000
"""chat.postMessage/update take 40,000 characters of text; the rest is cut."""
APPROVE_ACTION = "mcp_agent_approve"
ALWAYS_ACTION = "mcp_agent_always"
DENY_ACTION = "mcp_agent_deny"
TOOL_SWITCH_ACTION = "mcp_tool_switch"
"""*Turn off* / *Turn on* beside a tool on a page of ``/mcp tools``."""
TOOL_ON_ACTION = "mcp_tool_on"
ASK_AGAIN_ACTION = "mcp_tool_ask_again"
"""*Turn on: <tool>* and *Ask again: <tool>* under a connection in ``/mcp list`` and the Home tab
(several in one block get ``_<n>`` suffixes, like the sign-in buttons)."""
TOOL_VALUE_NAME_CHARS = 1500
"""Longest tool name a button value carries (Slack takes 2,000 characters per value); a longer
one is shown without its buttons."""
ARGUMENTS_ACTION = "mcp_agent_arguments"
CLIENT_FORM_ACTION = "mcp_oauth_client_open"
CLIENT_FORM_CALLBACK = "mcp_oauth_client_submit"
CLIENT_ID_BLOCK = "client_id"
CLIENT_SECRET_BLOCK = "client_secret"
SIGN_IN_AGAIN_ACTION = "mcp_sign_in_again"
SIGN_IN_LINK_ACTION = "mcp_sign_in_link"
FEEDBACK_ACTION = "mcp_answer_feedback"
"""action_id of an answer's 👍 / 👎; each button's value is ``up:<turn id>`` or ``down:<turn id>``."""
"""Link buttons open the sign-in page; Slack still sends their click, which is acked and
nothing more (``bot.buttons``). Several in one block get ``_<n>`` suffixes (ids are unique per block)."""
URL_LIMIT = 3000
CODE_CHUNK_CHARS = SECTION_TEXT_LIMIT - 8
"""Escaped characters per code section (the fences and a newline take the rest)."""

STATUS_BADGE = {
    ConnectionStatus.HEALTHY: "🟢 healthy",
    ConnectionStatus.ERROR: "🔴 error",
    ConnectionStatus.NEEDS_AUTH: "🟠 needs auth",
    ConnectionStatus.NEW: "⚪ new",
}
NEEDS_SIGN_IN_BADGE = "🟠 needs sign-in"


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never used"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"used {int(seconds // size)} {unit} ago"
    return "used just now"


def connection_blocks(
    connections: Sequence[Connection],
    *,
    limit: int = MESSAGE_BLOCK_LIMIT,
    sign_in_links: Mapping[uuid.UUID, str] | None = None,
) -> list[Block]:
    """One section + one row of buttons per connection (and a row of *Ask again* / *Turn on*
    buttons when the person chose to always allow or switch off some of its tools), cut to
    fit ``limit`` blocks.

    A connection that needs an OAuth sign-in gets a *Sign in again* button, or, when
    ``sign_in_links`` has a fresh link for it, the link itself.
    """
    if not connections:
        return [SectionBlock(text=MarkdownTextObject(text=texts.NO_CONNECTIONS))]
    links = sign_in_links or {}
    blocks: list[Block] = []
    for shown, connection in enumerate(connections):
        entry = _connection_entry(connection, links.get(connection.id))
        if len(blocks) + len(entry) > limit - 1:
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text=f"…and {len(connections) - shown} more.")])
            )
            break
        blocks += entry
    return blocks


def _connection_entry(connection: Connection, link: str | None) -> list[Block]:
    """A connection in ``connection_blocks``: its line, its buttons, and its tool choices."""
    value = str(connection.id)
    badge = NEEDS_SIGN_IN_BADGE if connection.needs_sign_in else STATUS_BADGE[connection.status]
    line = (
        f"*{_escape(connection.name)}* · {badge}"
        f" · {len(connection.tools)} tools"
        f" · {_ago(connection.last_used_at)} · {connection.usage_count} calls"
    )
    if connection.status_detail and connection.status != ConnectionStatus.HEALTHY:
        line += f"\n> {_escape(clip(connection.status_detail, 500))}"
    prefs = connection.tool_prefs
    for label, names in ((texts.ALWAYS_ALLOWED_LINE, prefs.always), (texts.SWITCHED_OFF_LINE, prefs.off)):
        if names:
            line += f"\n{label} " + ", ".join(f"`{_escape(clip(n, 100))}`" for n in sorted(names))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=clip(line, SECTION_TEXT_LIMIT)))]
    buttons: list[ButtonElement] = []
    if link is not None:
        buttons.append(sign_in_button(connection.name, link))
    elif connection.needs_sign_in:
        buttons.append(
            ButtonElement(
                text=texts.SIGN_IN_AGAIN, action_id=SIGN_IN_AGAIN_ACTION, value=value, style="primary"
            )
        )
    buttons += [
        ButtonElement(text="Test", action_id="mcp_test", value=value),
        ButtonElement(text="Tools", action_id="mcp_tools", value=_tools_value(connection, 0)),
        ButtonElement(
            text="Disconnect",
            action_id="mcp_disconnect",
            value=value,
            style="danger",
            confirm=ConfirmObject(
                title="Disconnect?",
                text=clip(f"Remove {connection.name}, its stored credentials and its session?", 300),
                confirm="Disconnect",
                deny="Keep it",
            ),
        ),
    ]
    blocks.append(ActionsBlock(block_id=f"conn:{value}", elements=buttons))
    choices = _choice_buttons(connection, prefs)
    if choices:
        blocks.append(ActionsBlock(block_id=f"prefs:{value}", elements=choices))
    return blocks


def _choice_buttons(connection: Connection, prefs: ToolPrefs) -> list[ButtonElement]:
    """*Ask again: <tool>* for each always-allowed tool, then *Turn on: <tool>* for each one
    switched off (as many as a block takes; ``/mcp tools`` has every switch)."""
    wanted = [(ASK_AGAIN_ACTION, texts.ASK_AGAIN, n) for n in sorted(prefs.always)]
    wanted += [(TOOL_ON_ACTION, texts.TURN_ON, n) for n in sorted(prefs.off)]
    wanted = [w for w in wanted if len(w[2]) <= TOOL_VALUE_NAME_CHARS]
    return [
        ButtonElement(
            text=clip(f"{label}: {name}", 75),
            action_id=f"{action}_{index}",
            value=json.dumps({"c": str(connection.id), "t": name}),
        )
        for index, (action, label, name) in enumerate(wanted[:ACTIONS_LIMIT])
    ]


def sign_in_button(name: str, url: str, *, index: int | None = None) -> ButtonElement:
    """A link button to an authorization server's sign-in page (the URL carries only the
    single-use state). ``index`` tells apart several buttons in one block."""
    action_id = SIGN_IN_LINK_ACTION if index is None else f"{SIGN_IN_LINK_ACTION}_{index}"
    return ButtonElement(text=texts.sign_in_label(name), action_id=action_id, url=url, style="primary")


def sign_in_for_clicker(name: str, connection_id: uuid.UUID, *, index: int | None = None) -> ButtonElement:
    """*Sign in to <name>* as a plain button, for a message others can see: a link there would
    let anyone sign in — with their own account — for the person it was made for. The click
    makes a new link for the clicker's own connection, shown to the clicker alone."""
    action_id = SIGN_IN_AGAIN_ACTION if index is None else f"{SIGN_IN_AGAIN_ACTION}_{index}"
    return ButtonElement(
        text=texts.sign_in_label(name), action_id=action_id, value=str(connection_id), style="primary"
    )


def sign_in_blocks(text: str, name: str, url: str) -> list[Block]:
    """A line saying why, and the *Sign in to <name>* link button."""
    return [
        SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT))),
        ActionsBlock(block_id="sign_in", elements=[sign_in_button(name, url)]),
    ]


def _badges(tool: ToolInfo, prefs: ToolPrefs) -> str:
    badges = []
    if tool.name in prefs.off:
        badges.append(texts.OFF_BADGE)
    elif prefs.allows(tool):
        badges.append(texts.ALWAYS_BADGE)
    if tool.read_only:
        badges.append("read-only")
    if tool.destructive and not tool.read_only:
        badges.append("⚠️ destructive")
    return f" _({', '.join(badges)})_" if badges else ""


def _tools_value(connection: Connection, page: int) -> str:
    return json.dumps({"c": str(connection.id), "p": page})


def all_tools_blocks(connections: Sequence[Connection], *, limit: int = MESSAGE_BLOCK_LIMIT) -> list[Block]:
    """Every connection's tools grouped in one message: a section per connection listing its
    tool names (clipped to fit) with a Browse button that opens the paged descriptions."""
    blocks: list[Block] = []
    room = limit - 1
    for connection in connections[:room]:
        names = " · ".join(
            f"`{_escape(clip(t.name, 100))}`{_badges(t, connection.tool_prefs)}" for t in connection.tools
        )
        text = f"*{_escape(connection.name)}* — {len(connection.tools)} tools\n{names or '_no tools_'}"
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT)),
                accessory=ButtonElement(
                    text="Browse", action_id="mcp_tools", value=_tools_value(connection, 0)
                ),
            )
        )
    if len(connections) > room:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"…and {len(connections) - room} more.")])
        )
    return blocks


def _switch_button(connection: Connection, tool: ToolInfo, page: int) -> ButtonElement | None:
    """*Turn off* (or *Turn on*) for one tool; its value says which tool, on which page, and the
    state wanted (a second click of an old button changes nothing)."""
    if len(tool.name) > TOOL_VALUE_NAME_CHARS:
        return None
    on = tool.name in connection.tool_prefs.off
    value = json.dumps({"c": str(connection.id), "p": page, "t": tool.name, "on": on})
    return ButtonElement(
        text=texts.TURN_ON if on else texts.TURN_OFF, action_id=TOOL_SWITCH_ACTION, value=value
    )


def tool_page_blocks(connection: Connection, page: int) -> list[Block]:
    """One page of a connection's tools, each with its on/off switch, and Previous/Next buttons."""
    tools = connection.tools
    pages = max(1, -(-len(tools) // TOOLS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    shown = tools[page * TOOLS_PER_PAGE : (page + 1) * TOOLS_PER_PAGE]
    header = f"*{_escape(connection.name)}* — {len(tools)} tools (page {page + 1} of {pages})"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=header))]
    for tool in shown:
        description = (
            _escape(clip(" ".join(tool.description.split()), DESCRIPTION_CHARS)) or "_no description_"
        )
        text = f"`{_escape(clip(tool.name, 100))}`{_badges(tool, connection.tool_prefs)}\n{description}"
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT)),
                accessory=_switch_button(connection, tool, page),
            )
        )
    buttons = []
    for label, target in (("← Previous", page - 1), ("Next →", page + 1)):
        if 0 <= target < pages:
            buttons.append(
                ButtonElement(
                    text=label, action_id=f"mcp_tools_page_{target}", value=_tools_value(connection, target)
                )
            )
    if buttons:
        blocks.append(ActionsBlock(block_id="tool_pages", elements=buttons))
    return blocks


def result_blocks(text: str, *, connection_id: uuid.UUID | None = None, failed: bool = False) -> list[Block]:
    """A status line, with Retry/Edit buttons when a connect failed."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT)))]
    if failed and connection_id is not None:
        value = str(connection_id)
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(text="Retry", action_id="mcp_retry", value=value, style="primary"),
                    ButtonElement(text="Edit", action_id="mcp_edit", value=value),
                ]
            )
        )
    return blocks


@dataclass(frozen=True)
class Reader:
    """Who reads a connect result, as far as its words depend on it."""

    admin: bool = False
    """May register an OAuth client for the workspace (``bot.admin_clients``)."""
    redirect_url: str = ""
    """The bot's OAuth callback, which an admin registers the client with."""


def connect_reply(
    connection: Connection,
    error: Exception | None,
    *,
    label: str | None = None,
    again: bool = False,
    reader: Reader = Reader(),
) -> tuple[str, list[Block] | None]:
    """What to tell the person about a connection just (re)opened, as text and blocks:
    connected with its tool count; a *Sign in to <label>* link when the server wants an OAuth
    sign-in (``again``: the connection had one before); what an admin must do when the server
    lets no client register (an admin gets the *Register a client* button); otherwise the
    failure with Retry/Edit. ``label`` defaults to the connection's name (the connect flow
    passes the card's)."""
    name = connection.name
    if error is None:
        return texts.connected(name, len(connection.tools)), None
    if isinstance(error, errors.SignInRequiredError) and len(error.authorize_url) <= URL_LIMIT:
        shown = label or name
        text = texts.sign_in_again_needed(shown) if again else texts.sign_in_needed(shown)
        return text, sign_in_blocks(text, shown, error.authorize_url)
    if isinstance(error, errors.OAuthClientMissingError):
        text = texts.oauth_client_missing(
            name, connection.card_id, error.issuer, admin=reader.admin, redirect_url=reader.redirect_url
        )
        blocks = result_blocks(text, connection_id=connection.id, failed=True)
        if reader.admin:
            register = ButtonElement(
                text=texts.REGISTER_CLIENT, action_id=CLIENT_FORM_ACTION, value=str(connection.id)
            )
            blocks.append(ActionsBlock(block_id="oauth_client", elements=[register]))
        return text, blocks
    text = texts.connect_failed(name, error)
    return text, result_blocks(text, connection_id=connection.id, failed=True)


def client_form(connection: Connection, redirect_url: str, *, metadata: dict[str, str]) -> View:
    """An admin's form for the OAuth client they registered with the connection's server."""
    intro = texts.client_form_intro(_escape(connection.name), _escape(connection.url or ""), redirect_url)
    return View(
        type="modal",
        callback_id=CLIENT_FORM_CALLBACK,
        title=PlainTextObject(text=texts.CLIENT_FORM_TITLE),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=clip(intro, SECTION_TEXT_LIMIT))),
            InputBlock(
                block_id=CLIENT_ID_BLOCK,
                label="Client ID",
                element=PlainTextInputElement(action_id="value", max_length=MAX_CLIENT_ID_CHARS),
            ),
            InputBlock(
                block_id=CLIENT_SECRET_BLOCK,
                label="Client secret",
                optional=True,
                hint="Leave empty for a public client. Encrypted at rest and never shown again.",
                element=PlainTextInputElement(action_id="value", max_length=3000),
            ),
        ],
    )


def sign_in_links(connection: Connection, error: Exception | None) -> dict[uuid.UUID, str]:
    """The connection's fresh sign-in link, for its Home tab entry (none unless ``error`` asks
    for a sign-in)."""
    if isinstance(error, errors.SignInRequiredError) and len(error.authorize_url) <= URL_LIMIT:
        return {connection.id: error.authorize_url}
    return {}


def home_view(
    connections: Sequence[Connection],
    *,
    sign_in_links: Mapping[uuid.UUID, str] | None = None,
    usage: Sequence[Block] = (),
) -> View:
    """The Home tab: a Connect button, then each connection (``sign_in_links``: see
    ``connection_blocks``), then ``usage`` (``bot.stats_views.home_stats_blocks``)."""
    room = VIEW_BLOCK_LIMIT - 3 - (len(usage) + 1 if usage else 0)
    blocks: list[Block] = [
        HeaderBlock(text="Your MCP servers"),
        ActionsBlock(
            elements=[ButtonElement(text="Connect a server", action_id="mcp_connect_open", style="primary")]
        ),
        DividerBlock(),
        *connection_blocks(connections, limit=room, sign_in_links=sign_in_links),
    ]
    if usage:
        blocks += [DividerBlock(), *usage]
    return View(type="home", blocks=blocks)


def _card_title(card: RunCard) -> str:
    return f"{card.emoji} {card.name}" if card.emoji else card.name


def card_picker(cards: Sequence[RunCard], *, metadata: dict[str, str]) -> View:
    """The catalog: one section per card (emoji, name, one-line description) with a Set up button."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text="Pick what to connect. Each form says what it needs."))
    ]
    for card in cards[: VIEW_BLOCK_LIMIT - 1]:
        text = f"*{_escape(_card_title(card))}*\n{_escape(card.description)}"
        blocks.append(
            SectionBlock(
                block_id=f"card:{card.id}",
                text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT)),
                accessory=ButtonElement(text="Set up", action_id=CARD_PICK_ACTION, value=card.id),
            )
        )
    return View(
        type="modal",
        callback_id="mcp_card_picker",
        title=PlainTextObject(text="Connect an MCP server"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def card_form(
    card: RunCard,
    *,
    metadata: dict[str, str],
    name: str = "",
    values: dict[str, str] | None = None,
    editing: bool = False,
    from_operator: Collection[str] = (),
) -> View:
    """A card's form: the connection name, then one input per field (block id = field key).

    Secret inputs are never pre-filled: a stored secret is never shown back. When ``editing``,
    an empty secret keeps the stored one. Fields in ``from_operator`` are optional and say that
    an empty one takes the operator's ``.env`` value, which is never shown.
    """
    values = values or {}
    intro = f"*{_escape(_card_title(card))}* — {_escape(card.description)}"
    if card.docs_url:
        intro += f"\n<{card.docs_url}|Documentation>"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=clip(intro, SECTION_TEXT_LIMIT))),
        InputBlock(
            block_id=NAME_BLOCK,
            label="Name",
            hint="Short, used as the tools' prefix: letters, digits, - and _.",
            element=PlainTextInputElement(action_id="value", initial_value=name or card.id, max_length=32),
        ),
    ]
    for item in card.fields:
        hint = item.hint or ""
        if item.secret:
            kept = "Leave empty to keep the stored value. " if editing else ""
            hint = f"{kept}{hint} Encrypted at rest and never shown again."
        if item.key in from_operator and not (editing and item.secret):
            hint = f"Leave empty to use {operator_var(card.id, item.key)} from the bot's .env. {hint}"
        hint = clip(hint.strip(), 2000)
        initial = None if item.secret else (values.get(item.key) or item.default or None)
        blocks.append(
            InputBlock(
                block_id=item.key,
                label=item.label,
                hint=hint or None,
                optional=not item.required or (editing and item.secret) or item.key in from_operator,
                element=PlainTextInputElement(
                    action_id="value",
                    initial_value=initial,
                    placeholder=item.placeholder or None,
                    max_length=3000,
                ),
            )
        )
    if card.advice:
        advice = f":bulb: *Least privilege:* {_escape(card.advice)}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(advice, SECTION_TEXT_LIMIT))]))
    title = f"Edit {card.name}" if editing else f"Connect {card.name}"
    return View(
        type="modal",
        callback_id=CONNECT_CALLBACK,
        title=PlainTextObject(text=clip(title, 24)),
        submit=PlainTextObject(text="Save" if editing else "Connect"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def agent_working(text: str, stop_value: str | None) -> tuple[str, list[Block]]:
    """The progress message while a turn works: its lines, and a Stop button for the asker
    (``bot.stops``) when the turn can be stopped."""
    text = clip(text, SECTION_TEXT_LIMIT)
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    if stop_value:
        stop = ButtonElement(text="Stop", action_id="mcp_agent_stop", value=stop_value, style="danger")
        blocks.append(ActionsBlock(block_id="stop", elements=[stop]))
    return text, blocks


def agent_answer(
    answer: str, used: list[str], sign_ins: Sequence[ButtonElement] = (), *, feedback: str | None = None
) -> tuple[str, list[Block]]:
    """The agent's answer as message text and blocks: the answer in sections (Slack's 3,000
    characters each, at most ~47), then a context line with the tools used, then the sign-in
    buttons of connections that asked the asker to sign in during the turn (``bot.chat``
    makes them), then 👍 / 👎 for the turn ``feedback`` names (``feedback_block``). Special
    mentions (``<!channel>``, ``<!here>``) are defused: the model's text may echo a tool's
    output."""
    text = clip(answer.replace("<!", "&lt;!"), MESSAGE_TEXT_LIMIT)  # no @channel/@here from the model
    chunks = [text[i : i + SECTION_TEXT_LIMIT] for i in range(0, len(text), SECTION_TEXT_LIMIT)]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=chunk)) for chunk in chunks[: MESSAGE_BLOCK_LIMIT - 3]
    ]
    if used:
        summary = clip("Tools: " + " · ".join(used), SECTION_TEXT_LIMIT)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=summary)]))
    if sign_ins:
        blocks.append(ActionsBlock(block_id="sign_in", elements=list(sign_ins[:ACTIONS_LIMIT])))
    if feedback is not None:
        blocks.append(feedback_block(feedback))
    return text, blocks


TASK_TITLE_CHARS = 120
TASK_TEXT_CHARS = 300
"""A task card's details and output: a glance, not the result (the model reads that)."""
_TASK_STATUS = {"pending": "pending", "running": "in_progress", "done": "complete"}


def defused(markdown: str) -> str:
    """Streamed words without Slack's special mentions (``<!channel>``, ``<!here>``): the
    model's text may echo a tool's output. A zero-width space keeps the text as it reads."""
    return markdown.replace("<!", "<\u200b!")


def task_update(task_id: str, progress: ToolProgress, redact: Callable[[str], str]) -> dict[str, Any]:
    """A tool call as a streamed ``task_update`` card: pending → in_progress (with what the
    server last said of its progress) → complete with a short output, or error with why.
    Every text a server wrote is redacted, single-lined and cut (it is hostile)."""

    def short(text: str) -> str:  # no mention of anyone or any channel from a server either
        return clip(" ".join(re.sub(r"<([@!#])", "<\u200b\\1", redact(text)).split()), TASK_TEXT_CHARS)

    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": task_id,
        "title": clip(texts.shown_tool_name(progress.call.name), TASK_TITLE_CHARS),
        "status": _TASK_STATUS.get(progress.state, "error"),
    }
    if progress.state == "running" and progress.note:
        chunk["details"] = short(progress.note)
    elif progress.state == "done" and progress.result is not None:
        took = f"{progress.result.latency_ms:.0f} ms" if progress.result.latency_ms else ""
        output = short(progress.result.text)
        if output or took:
            chunk["output"] = f"{output} ({took})" if output and took else output or took
    elif progress.state == "failed":
        reason = progress.error if progress.error is not None else progress.result
        text = str(reason) if progress.error is not None else getattr(reason, "text", "")
        chunk["output"] = short(text) or "Failed"
    elif progress.state == "denied":
        chunk["output"] = "Not run: denied"
    elif progress.state == "stopped":
        chunk["output"] = "Stopped"
    return chunk


def feedback_block(turn_id: str) -> ContextActionsBlock:
    """Slack's own 👍 / 👎 (a ``feedback_buttons`` element in a ``context_actions`` block) for
    one answer; ``bot.feedback`` records the clicks with the turn."""
    buttons = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=FeedbackButtonObject(
            text=texts.FEEDBACK_GOOD, accessibility_label=texts.FEEDBACK_GOOD_LABEL, value=f"up:{turn_id}"
        ),
        negative_button=FeedbackButtonObject(
            text=texts.FEEDBACK_BAD, accessibility_label=texts.FEEDBACK_BAD_LABEL, value=f"down:{turn_id}"
        ),
    )
    return ContextActionsBlock(block_id="feedback", elements=[buttons])


def _arguments_json(call: ToolCall, redact: Callable[[str], str]) -> str:
    """The call's arguments as the exact JSON document that will be sent, fit for a code block:
    a backtick is written ``\\u0060`` (the same JSON value), so no string can close the block."""
    return redact(json.dumps(call.arguments, indent=2, ensure_ascii=False)).replace("`", "\\u0060")


def _code_chunks(text: str, limit: int = CODE_CHUNK_CHARS) -> list[str]:
    """``text`` escaped for mrkdwn, in pieces of at most ``limit`` characters, never splitting
    an entity; pieces break at line ends where they can."""
    chunks: list[str] = []
    current = ""
    for char in text:
        escaped = _escape(char)
        if len(current) + len(escaped) > limit:
            cut = current.rfind("\n") + 1
            if cut == 0 or len(current) - cut + len(escaped) > limit:
                cut = len(current)
            chunks.append(current[:cut])
            current = current[cut:]
        current += escaped
    return [*chunks, current] if current or not chunks else chunks


def approval_question(
    value: str,
    user_id: str,
    call: ToolCall,
    *,
    others_wrote: bool = False,
    redact: Callable[[str], str] = str,
    always: bool = False,
) -> tuple[str, list[Block]] | None:
    """Approve/Deny for one tool call, showing the tool, its description and the complete
    arguments; arguments too long for the message get a *Show all arguments* button (a modal),
    and arguments too long even for that give None: the person cannot review them, so nobody
    may approve them. ``value`` binds the buttons to this question and these arguments.
    ``always``: offer *Always allow* between Approve and Deny (``bot.approvals`` decides)."""
    tool = call.entry.tool if call.entry is not None else None
    text = texts.approval_question(
        call.name,
        user_id,
        others_wrote=others_wrote,
        read_only=tool.read_only if tool else None,
        destructive=tool.destructive if tool else None,
    )
    arguments = _arguments_json(call, redact)
    chunks = _code_chunks(arguments)
    if len(chunks) > VIEW_BLOCK_LIMIT - 1:
        return None
    description = tool.description if tool is not None else ""
    head = f"{text}\n{_escape(clip(redact(description), DESCRIPTION_CHARS))}"
    if tool is not None and call.entry is not None:
        hints = {k: getattr(tool, k) for k in ("read_only", "destructive", "idempotent", "open_world")}
        name = _escape(tool.name[:64]).replace("`", "'")
        where = f"`{name}` on *{_escape(call.entry.connection_name)}*"
        head += "\n" + " ".join(part for part in (where, texts.server_hints(hints)) if part)
    buttons = [ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=value, style="primary")]
    if always:
        buttons.append(ButtonElement(text=texts.ALWAYS_ALLOW, action_id=ALWAYS_ACTION, value=value))
    buttons.append(ButtonElement(text="Deny", action_id=DENY_ACTION, value=value, style="danger"))
    if len(chunks) == 1 and len(head) + len(chunks[0]) + 8 <= SECTION_TEXT_LIMIT:
        detail = f"{head}\n```{chunks[0]}```"
    else:
        detail = f"{head}\n{texts.arguments_too_long_to_show(len(arguments))}"
        buttons.insert(0, ButtonElement(text="Show all arguments", action_id=ARGUMENTS_ACTION, value=value))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=detail)), ActionsBlock(elements=buttons)]
    return text, blocks


def arguments_modal(call: ToolCall, redact: Callable[[str], str] = str) -> View:
    """A read-only modal with a call's complete arguments, in as many code sections as needed
    (``approval_question`` only offers it when they fit in one view)."""
    chunks = _code_chunks(_arguments_json(call, redact))[: VIEW_BLOCK_LIMIT - 1]
    blocks: list[Block] = [ContextBlock(elements=[MarkdownTextObject(text=f"Arguments of `{call.name}`")])]
    blocks += [SectionBlock(text=MarkdownTextObject(text=f"```{chunk}```")) for chunk in chunks]
    return View(type="modal", title="Arguments", close="Close", blocks=blocks)
