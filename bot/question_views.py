"""Block Kit for a server's questions (elicitation): the thread message, the modal, the link.

Pure functions over ``mcp_core.elicitation`` objects, built with ``slack_sdk.models`` so Slack's
limits are checked on serialization. Everything the server wrote is its words, labelled so:
mrkdwn is escaped (no mentions, links or formatting of its own) and clipped; labels, hints
and options are plain text. Field block ids are positions (``f0``, ``f1``…) and option values
are indexes, so no server-chosen string becomes an id; ``read_modal`` maps them back.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DatePickerElement,
    EmailInputElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
    UrlInputElement,
)
from slack_sdk.models.blocks.block_elements import InputInteractiveElement
from slack_sdk.models.views import View

from bot import texts
from bot.views import SECTION_TEXT_LIMIT, VIEW_BLOCK_LIMIT, clip
from mcp_core.elicitation import FormField, FormRequest, UrlRequest

__all__ = [
    "QUESTION_CALLBACK",
    "QUESTION_DECLINE_ACTION",
    "QUESTION_OPEN_ACTION",
    "field_block",
    "link_blocks",
    "question_blocks",
    "question_modal",
    "read_modal",
]

QUESTION_OPEN_ACTION = "mcp_question_open"
QUESTION_DECLINE_ACTION = "mcp_question_decline"
QUESTION_CALLBACK = "mcp_question_submit"
VALUE_ACTION = "v"
TITLE_LIMIT = 24
LABEL_LIMIT = 2000
HINT_LIMIT = 2000
TEXT_INPUT_LIMIT = 3000
BUTTON_TEXT_LIMIT = 75
OWN_BLOCKS = 2
"""The modal's blocks before the fields: who asks, and the server's message."""


def entities(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's entities: no mentions, links or special commands."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """The server's text as inert mrkdwn: no mentions, links, special commands or formatting."""
    text = entities(text)
    for mark in ("*", "_", "~", "`"):
        text = text.replace(mark, "\u2217" if mark == "*" else f"\u200b{mark}\u200b")
    return text


def said(server: str, message: str, limit: int = SECTION_TEXT_LIMIT) -> str:
    """``message`` shown as the server's words, quoted under its name."""
    head = texts.server_says(escape(server))
    body = escape(message) if message else texts.SERVER_SAID_NOTHING
    return clip(f"{head}\n>{body.replace(chr(10), chr(10) + '>')}", limit)


def question_blocks(question_id: str, asker: str, form: FormRequest) -> tuple[str, list[Block]]:
    """The thread message: the server's question and the asker's two buttons."""
    text = texts.question_posted(escape(form.server), asker)
    answer = clip(texts.answer_button(form.server), BUTTON_TEXT_LIMIT)
    buttons = [
        ButtonElement(text=answer, action_id=QUESTION_OPEN_ACTION, value=question_id, style="primary"),
        ButtonElement(text="Decline", action_id=QUESTION_DECLINE_ACTION, value=question_id),
    ]
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(text=clip(f"{text}\n{said(form.server, form.message, 2500)}", 3000))
        ),
        ActionsBlock(block_id="question", elements=buttons),
    ]
    return text, blocks


def question_modal(question_id: str, form: FormRequest) -> View:
    """The form, for the asker only: one input per field, Submit / Cancel (closing it tells us)."""
    fields = [field_block(n, f) for n, f in enumerate(form.fields[: VIEW_BLOCK_LIMIT - OWN_BLOCKS])]
    blocks: list[Block] = [
        ContextBlock(
            elements=[MarkdownTextObject(text=clip(texts.modal_asked_by(escape(form.server)), 3000))]
        ),
        SectionBlock(text=MarkdownTextObject(text=said(form.server, form.message))),
        *fields,
    ]
    return View(
        type="modal",
        callback_id=QUESTION_CALLBACK,
        private_metadata=question_id,
        title=clip(texts.modal_title(form.server), TITLE_LIMIT),
        submit="Submit",
        close="Cancel",
        notify_on_close=True,
        blocks=blocks,
    )


def field_block(n: int, f: FormField) -> InputBlock:
    """One field as an input block (``f<n>``); booleans are a checkbox and always optional."""
    return InputBlock(
        block_id=f"f{n}",
        label=clip(f.title, LABEL_LIMIT),
        hint=clip(f.description, HINT_LIMIT) or None,
        optional=not f.required or f.kind == "boolean",
        element=_element(f),
    )


def _element(f: FormField) -> InputInteractiveElement:
    options = [Option(value=str(i), label=c.title) for i, c in enumerate(f.choices)]
    chosen = [
        options[i] for i, c in enumerate(f.choices) if c.value == f.default or c.value in (f.default or ())
    ]
    if f.kind == "boolean":
        yes = Option(value="yes", label=clip(f.title, 75))
        return CheckboxesElement(
            action_id=VALUE_ACTION, options=[yes], initial_options=[yes] if f.default else None
        )
    if f.kind == "choice":
        return StaticSelectElement(
            action_id=VALUE_ACTION, options=options, initial_option=chosen[0] if chosen else None
        )
    if f.kind == "choices":
        most = f.max_items if f.max_items and f.max_items <= len(options) else None
        return StaticMultiSelectElement(
            action_id=VALUE_ACTION, options=options, initial_options=chosen or None, max_selected_items=most
        )
    if f.kind in ("number", "integer"):
        return NumberInputElement(
            action_id=VALUE_ACTION,
            is_decimal_allowed=f.kind == "number",
            initial_value=f"{f.default:g}" if f.default is not None else None,
            min_value=f"{f.minimum:g}" if f.minimum is not None else None,
            max_value=f"{f.maximum:g}" if f.maximum is not None else None,
        )
    default = f.default if isinstance(f.default, str) else None
    if f.format == "email":
        return EmailInputElement(action_id=VALUE_ACTION, initial_value=default)
    if f.format == "uri":
        return UrlInputElement(action_id=VALUE_ACTION, initial_value=default)
    if f.format == "date":
        return DatePickerElement(action_id=VALUE_ACTION, initial_date=default if _is_date(default) else None)
    low = f.min_length if f.min_length is not None and f.min_length <= TEXT_INPUT_LIMIT else None
    high = min(f.max_length, TEXT_INPUT_LIMIT) if f.max_length else TEXT_INPUT_LIMIT
    if low is not None and low > high:
        low = None  # no answer can fit: the check after Submit says so
    return PlainTextInputElement(
        action_id=VALUE_ACTION,
        initial_value=default[:high] if default else None,
        min_length=low or None,
        max_length=high,
        multiline=high > 150,
    )


def _is_date(value: str | None) -> bool:
    try:
        return value is not None and bool(date.fromisoformat(value))
    except ValueError:
        return False


def read_modal(form: FormRequest, view: dict[str, Any]) -> dict[str, Any]:
    """What the person entered, by field name, from a submitted view's state (a hostile
    payload: anything of the wrong shape reads as nothing entered)."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    values = values if isinstance(values, dict) else {}
    entered: dict[str, Any] = {}
    for n, f in enumerate(form.fields):
        block = values.get(f"f{n}")
        element = block.get(VALUE_ACTION) if isinstance(block, dict) else None
        entered[f.name] = _value(f, element if isinstance(element, dict) else {})
    return entered


def _value(f: FormField, element: dict[str, Any]) -> Any:
    def choice(option: Any) -> str | None:
        value = option.get("value") if isinstance(option, dict) else None
        if isinstance(value, str) and value.isdigit() and int(value) < len(f.choices):
            return f.choices[int(value)].value
        return None

    if f.kind == "boolean":
        picked = element.get("selected_options")
        return isinstance(picked, list) and any(
            isinstance(o, dict) and o.get("value") == "yes" for o in picked
        )
    if f.kind == "choice":
        return choice(element.get("selected_option"))
    if f.kind == "choices":
        picked = element.get("selected_options")
        found = [choice(o) for o in picked] if isinstance(picked, list) else []
        return [v for v in found if v is not None]
    value = element.get("selected_date") if f.format == "date" else element.get("value")
    return value if isinstance(value, str) else None


def link_blocks(request: UrlRequest) -> tuple[str, list[Block]]:
    """The link for the asker only: the full URL written out, its host, the server's reason,
    and a link button (Slack opens it in the person's browser; the bot never fetches it)."""
    text = texts.link_posted(escape(request.server), escape(request.host))
    detail = "\n".join(
        [
            texts.link_intro(escape(request.server), escape(request.host)),
            said(request.server, request.message, 1200),
            texts.full_link(entities(request.url).replace("`", "%60")),
            *([texts.PUNYCODE_WARNING] if request.punycode else []),
        ]
    )
    button = ButtonElement(
        text=clip(texts.open_link_button(request.host), BUTTON_TEXT_LIMIT),
        action_id="mcp_question_link",
        url=request.url,
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=clip(detail, SECTION_TEXT_LIMIT))),
        ActionsBlock(block_id="link", elements=[button]),
    ]
    return text, blocks
