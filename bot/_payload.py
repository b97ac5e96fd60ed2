"""Reading who sent a Slack request, the same way for every listener."""

from __future__ import annotations

from typing import Any

from mcp_core import errors

__all__ = ["owner"]


def owner(body: dict[str, Any]) -> tuple[str, str]:
    """(team, user) of the verified request, for commands, actions, views and events alike."""
    user = body.get("user") or {}
    user_id = body.get("user_id") or (user.get("id") if isinstance(user, dict) else user)
    team = body.get("team") or {}
    team_id = (
        body.get("team_id")
        or (team.get("id") if isinstance(team, dict) else None)
        or (user.get("team_id") if isinstance(user, dict) else None)
        or (body.get("enterprise") or {}).get("id")
    )
    if not team_id or not user_id:
        raise errors.McpCoreError("This request does not say who sent it.")
    return str(team_id), str(user_id)
