"""Reading who sent a Slack request, the same way for every listener."""

from __future__ import annotations

from typing import Any

from mcp_core import errors

__all__ = ["owner"]


def owner(body: dict[str, Any]) -> tuple[str, str]:
    """(team, user) of the verified request, for commands, actions, views and events alike.

    Only non-empty strings count; any other value reads as absent.

    Raises:
        McpCoreError: when the request names no team or no user.
    """
    user, team, enterprise = body.get("user"), body.get("team"), body.get("enterprise")
    user_id = _text(body.get("user_id")) or _field(user, "id") or _text(user)
    team_id = (
        _text(body.get("team_id"))
        or _field(team, "id")
        or _field(user, "team_id")
        or _field(enterprise, "id")
    )
    if not team_id or not user_id:
        raise errors.McpCoreError("This request does not say who sent it.")
    return team_id, user_id


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _field(value: Any, key: str) -> str:
    return _text(value.get(key)) if isinstance(value, dict) else ""
