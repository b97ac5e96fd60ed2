"""What a server asks mid-call, read as hostile input: forms and links a surface can show.

A server's elicitation (``elicitation/create`` on 2025-11-25 sessions, an ``input_required``
result's embedded request on 2026-07-28) arrives as SDK params; ``read_request`` turns them into
one of three plain objects, none of which holds anything the surface must re-check:

* ``FormRequest``: a flat object of primitive fields (string, number, integer, boolean,
  single- or multi-select enum, titled or not), each with its title, description, default and
  limits, every text stripped of control characters and cut to a length a form can show.
* ``UrlRequest``: the full URL (http or https only), its host, and the server's reason.
* ``RefusedRequest``: why the question cannot be shown (a nested or non-primitive schema, too
  many fields or choices, a URL that is not a web link); the server gets ``decline``.

``check_answers`` validates what the person entered against the form (types, lengths, ranges,
formats, choices, required fields) and gives the content to send, or each field's problem in
words. The spec's schema subset is small on purpose (``PrimitiveSchemaDefinition``): anything
outside it is refused rather than guessed at.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "MAX_CHOICES",
    "MAX_FIELDS",
    "Choice",
    "ElicitAnswer",
    "ElicitRequest",
    "FormField",
    "FormRequest",
    "RefusedRequest",
    "UrlRequest",
    "check_answers",
    "read_request",
]

MAX_FIELDS = 40
"""Fields one form may ask for: a modal holds 100 blocks, and nobody answers more than this."""
MAX_CHOICES = 100
"""Choices of one enum: Slack's select menus hold 100 options."""
MESSAGE_CHARS = 2000
TITLE_CHARS = 150
DESCRIPTION_CHARS = 500
CHOICE_CHARS = 75
NAME_CHARS = 64
STRING_VALUE_CHARS = 3000
"""Longest text answer (Slack's plain-text input maxes at 3000)."""
URL_CHARS = 3000
"""Slack's link buttons take URLs up to 3000 characters."""
SERVER_CHARS = 80
FORMATS = frozenset({"email", "uri", "date", "date-time"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

Kind = Literal["string", "number", "integer", "boolean", "choice", "choices"]
Action = Literal["accept", "decline", "cancel"]


@dataclass(frozen=True)
class Choice:
    value: str
    """What the server gets back (the enum value or ``const``)."""
    title: str


@dataclass(frozen=True)
class FormField:
    """One field of a form, already cut to what a surface can show."""

    name: str
    kind: Kind
    title: str
    description: str = ""
    required: bool = False
    default: Any = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None
    choices: tuple[Choice, ...] = ()
    min_items: int | None = None
    max_items: int | None = None


@dataclass(frozen=True)
class FormRequest:
    server: str
    message: str
    fields: tuple[FormField, ...]


@dataclass(frozen=True)
class UrlRequest:
    server: str
    message: str
    url: str
    host: str
    """The URL's host as written (``xn--`` labels left as they are, for the surface to flag)."""

    @property
    def punycode(self) -> bool:
        return any(label.startswith("xn--") for label in self.host.split("."))


@dataclass(frozen=True)
class RefusedRequest:
    server: str
    why: str
    """Plain words for the person: what the server asked and why it is not shown."""


ElicitRequest = FormRequest | UrlRequest | RefusedRequest


@dataclass(frozen=True)
class ElicitAnswer:
    action: Action
    content: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Only from ``check_answers``: each field's problem (``action`` is then ``cancel``)."""


def clean(text: Any, limit: int) -> str:
    """``text`` as a single safe string: control and bidi characters removed, cut to ``limit``."""
    if not isinstance(text, str):
        return ""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def read_request(server: str, params: Any) -> ElicitRequest:
    """The SDK's ``ElicitRequestFormParams`` / ``ElicitRequestURLParams`` (or their wire dicts),
    as something a surface can show, or refused with a reason."""
    server = clean(server, SERVER_CHARS) or "The server"
    raw = params.model_dump(by_alias=True) if hasattr(params, "model_dump") else params
    if not isinstance(raw, Mapping):
        return RefusedRequest(server, "it sent a question that is not readable")
    message = clean(raw.get("message"), MESSAGE_CHARS)
    if raw.get("mode") == "url":
        return _url_request(server, message, raw.get("url"))
    try:
        fields = _fields(raw.get("requestedSchema"))
    except _Unusable as exc:
        return RefusedRequest(server, f"its form cannot be shown: {exc}")
    return FormRequest(server, message, fields)


class _Unusable(ValueError):
    pass


def _url_request(server: str, message: str, url: Any) -> ElicitRequest:
    if not isinstance(url, str) or not url or len(url) > URL_CHARS or _CONTROL.search(url) or " " in url:
        return RefusedRequest(server, "it sent a link that cannot be shown (empty, too long or malformed)")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return RefusedRequest(server, "it sent a link that cannot be read")
    if parts.scheme not in ("https", "http") or not host:
        return RefusedRequest(
            server, "it sent a link that is not a web address (only http and https are shown)"
        )
    return UrlRequest(server, message, url, host)


def _fields(schema: Any) -> tuple[FormField, ...]:
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise _Unusable("it is not an object of fields")
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        raise _Unusable("it has no fields")
    if len(properties) > MAX_FIELDS:
        raise _Unusable(f"it asks for {len(properties)} fields (at most {MAX_FIELDS} are shown)")
    required = schema.get("required") or []
    if not isinstance(required, list):
        raise _Unusable("its list of required fields is not a list")
    out = []
    for name, prop in properties.items():
        if not isinstance(name, str) or not name or len(name) > NAME_CHARS or _CONTROL.search(name):
            raise _Unusable("a field has an unusable name")
        out.append(_field(name, prop, name in required))
    return tuple(out)


def _field(name: str, prop: Any, required: bool) -> FormField:
    if not isinstance(prop, Mapping):
        raise _Unusable(f"field “{name}” is not described")
    kind = prop.get("type")
    title = clean(prop.get("title"), TITLE_CHARS) or clean(name, TITLE_CHARS)
    base: dict[str, Any] = {
        "name": name,
        "title": title,
        "description": clean(prop.get("description"), DESCRIPTION_CHARS),
        "required": required,
    }
    if kind == "string" and ("enum" in prop or "oneOf" in prop):
        choices = _choices(name, prop)
        default = prop.get("default")
        return FormField(**base, kind="choice", choices=choices, default=_known(default, choices))
    if kind == "string":
        fmt = prop.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise _Unusable(f"field “{name}” has an unknown format")
        low, high = _count(name, prop, "minLength"), _count(name, prop, "maxLength")
        default = prop.get("default")
        default = clean(default, STRING_VALUE_CHARS) if isinstance(default, str) else None
        return FormField(**base, kind="string", min_length=low, max_length=high, format=fmt, default=default)
    if kind in ("number", "integer"):
        low, high = _number(name, prop, "minimum"), _number(name, prop, "maximum")
        default = prop.get("default")
        ok = isinstance(default, int | float) and not isinstance(default, bool) and math.isfinite(default)
        return FormField(**base, kind=kind, minimum=low, maximum=high, default=default if ok else None)
    if kind == "boolean":
        default = prop.get("default")
        return FormField(**base, kind="boolean", default=default if isinstance(default, bool) else None)
    if kind == "array":
        items = prop.get("items")
        if not isinstance(items, Mapping) or not ("enum" in items or "anyOf" in items):
            raise _Unusable(f"field “{name}” is a list of something other than choices")
        choices = _choices(name, items, titled_key="anyOf")
        default = prop.get("default")
        picked = (
            tuple(v for v in default if isinstance(v, str) and _known(v, choices))
            if isinstance(default, list)
            else ()
        )
        return FormField(
            **base,
            kind="choices",
            choices=choices,
            default=picked or None,
            min_items=_count(name, prop, "minItems"),
            max_items=_count(name, prop, "maxItems"),
        )
    raise _Unusable(f"field “{name}” is not a text, number, yes/no or choice")


def _choices(name: str, prop: Mapping[str, Any], titled_key: str = "oneOf") -> tuple[Choice, ...]:
    """An enum's choices: ``enum`` (with the legacy ``enumNames`` titles) or ``oneOf``/``anyOf``
    of ``{const, title}``."""
    if titled_key in prop:
        options = prop[titled_key]
        if not isinstance(options, list) or not all(
            isinstance(o, Mapping) and isinstance(o.get("const"), str) for o in options
        ):
            raise _Unusable(f"field “{name}” has malformed choices")
        pairs = [(o["const"], o.get("title")) for o in options]
    else:
        values, names = prop.get("enum"), prop.get("enumNames")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _Unusable(f"field “{name}” has choices that are not texts")
        titles = names if isinstance(names, list) and len(names) == len(values) else [None] * len(values)
        pairs = list(zip(values, titles, strict=True))
    if not pairs:
        raise _Unusable(f"field “{name}” has no choices")
    if len(pairs) > MAX_CHOICES:
        raise _Unusable(f"field “{name}” has {len(pairs)} choices (at most {MAX_CHOICES})")
    if len({value for value, _ in pairs}) != len(pairs):
        raise _Unusable(f"field “{name}” repeats a choice")
    return tuple(
        Choice(value, clean(title, CHOICE_CHARS) or clean(value, CHOICE_CHARS) or "(empty)")
        for value, title in pairs
    )


def _known(value: Any, choices: tuple[Choice, ...]) -> str | None:
    return value if isinstance(value, str) and any(c.value == value for c in choices) else None


def _count(name: str, prop: Mapping[str, Any], key: str) -> int | None:
    value = prop.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Unusable(f"field “{name}” has an unusable {key}")
    return value


def _number(name: str, prop: Mapping[str, Any], key: str) -> float | None:
    value = prop.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise _Unusable(f"field “{name}” has an unusable {key}")
    return value


def check_answers(form: FormRequest, entered: Mapping[str, Any]) -> ElicitAnswer:
    """What the person entered, checked against ``form``: ``accept`` with the content to send,
    or ``cancel`` with each field's problem (``errors``, by field name) to show them.

    ``entered`` holds, per field name: a string (text, number, date, a choice's value), a
    bool (boolean), a list of strings (multi-choice), or None / "" for nothing entered.
    """
    content: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for f in form.fields:
        value = entered.get(f.name)
        empty = value is None or value == "" or value == []
        if f.kind == "boolean":
            content[f.name] = bool(value)
            continue
        if empty:
            if f.required:
                problems[f.name] = "Please fill this in."
            continue
        problem, parsed = _check(f, value)
        if problem:
            problems[f.name] = problem
        else:
            content[f.name] = parsed
    if problems:
        return ElicitAnswer("cancel", errors=problems)
    return ElicitAnswer("accept", content)


def _check(f: FormField, value: Any) -> tuple[str, Any]:
    if f.kind == "choice":
        return ("", value) if _known(value, f.choices) else ("Pick one of the choices.", None)
    if f.kind == "choices":
        if not isinstance(value, list) or not all(_known(v, f.choices) for v in value):
            return "Pick from the choices.", None
        if f.min_items is not None and len(value) < f.min_items:
            return f"Pick at least {f.min_items}.", None
        if f.max_items is not None and len(value) > f.max_items:
            return f"Pick at most {f.max_items}.", None
        return "", list(value)
    if not isinstance(value, str):
        return "This value cannot be read.", None
    if f.kind in ("number", "integer"):
        return _check_number(f, value.strip())
    if f.min_length is not None and len(value) < f.min_length:
        return f"Use at least {f.min_length} characters.", None
    if f.max_length is not None and len(value) > f.max_length:
        return f"Use at most {f.max_length} characters.", None
    return _check_format(f.format, value), value


def _check_number(f: FormField, text: str) -> tuple[str, Any]:
    try:
        number: float | int = int(text) if f.kind == "integer" else float(text)
    except ValueError:
        return ("Enter a whole number." if f.kind == "integer" else "Enter a number."), None
    if not math.isfinite(number):
        return "Enter a number.", None
    if f.kind == "number" and float(number).is_integer() and "." not in text and "e" not in text.lower():
        number = int(number)
    if f.minimum is not None and number < f.minimum:
        return f"Enter {f.minimum:g} or more.", None
    if f.maximum is not None and number > f.maximum:
        return f"Enter {f.maximum:g} or less.", None
    return "", number


def _check_format(fmt: str | None, value: str) -> str:
    if fmt == "email" and not _EMAIL.match(value):
        return "Enter an email address."
    if fmt == "uri":
        try:
            parts = urlsplit(value)
        except ValueError:
            return "Enter a web address."
        if not parts.scheme or not (parts.netloc or parts.path):
            return "Enter a web address."
    if fmt == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return "Enter a date (YYYY-MM-DD)."
    if fmt == "date-time":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "Enter a date and time (YYYY-MM-DDTHH:MM)."
    return ""
