"""Reading who sent a Slack request, the same way for every listener."""

from __future__ import annotations

import json
from typing import Any

from mcp_core import errors

__all__ = ["channel_of", "form_values", "in_home", "metadata_of", "owner"]


def owner(body: dict[str, Any]) -> tuple[str, str]:
    """(team, user) of the verified request, for commands, actions, views and events alike.
    The team is the user's own (``user.team_id``) where the payload says it: a person from
    another organization in a shared channel is never taken for one of the host's people.

    Only non-empty strings count; any other value reads as absent.

    Raises:
        McpCoreError: when the request names no team or no user.
    """
    user, team, enterprise = body.get("user"), body.get("team"), body.get("enterprise")
    user_id = _text(body.get("user_id")) or _field(user, "id") or _text(user)
    team_id = (  # the user's own team first: in a shared channel the payload's team is the host's
        _field(user, "team_id")
        or _text(body.get("team_id"))
        or _field(team, "id")
        or _field(enterprise, "id")
    )
    if not team_id or not user_id:
        raise errors.McpCoreError("This request does not say who sent it.")
    return team_id, user_id


def first_action(body: dict[str, Any]) -> dict[str, Any]:
    """The clicked element of a block_actions payload ({} when the payload has none)."""
    actions = body.get("actions")
    return actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _field(value: Any, key: str) -> str:
    return _text(value.get(key)) if isinstance(value, dict) else ""


# The readers below are total: a value of an unexpected type or shape reads as absent, and
# the listener then answers as it does for a missing value (a field error, "not yours").


def channel_of(body: dict[str, Any]) -> str:
    """The channel a command or a button click came from ("" on the Home tab)."""
    channel = body.get("channel")
    found = body.get("channel_id") or (channel.get("id") if isinstance(channel, dict) else None)
    return found if isinstance(found, str) else ""


def in_home(body: dict[str, Any]) -> bool:
    """Whether a click came from the Home tab."""
    view = body.get("view")
    return isinstance(view, dict) and view.get("type") == "home"


def form_values(view: dict[str, Any]) -> dict[str, str]:
    """``{block_id: value}`` of a submitted form's plain-text inputs ("" for any other value)."""
    state = view.get("state")
    blocks = state.get("values") if isinstance(state, dict) else None
    values: dict[str, str] = {}
    for block, actions in blocks.items() if isinstance(blocks, dict) else ():
        element = next(iter(actions.values()), None) if isinstance(actions, dict) else None
        value = element.get("value") if isinstance(element, dict) else None
        values[block] = value if isinstance(value, str) else ""
    return values


def metadata_of(view: dict[str, Any]) -> dict[str, str]:
    """The string entries of a modal's private_metadata (a JSON object we wrote)."""
    raw = view.get("private_metadata")
    try:
        metadata = json.loads(raw) if isinstance(raw, str) and raw else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(v, str)}
