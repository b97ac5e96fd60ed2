"""The audit log admins read (migration 0012): policy changes, and tool calls approved or
denied — who, when, which tool on which connection. A call's arguments are kept only when
the workspace's policy says so (``Policy.audit_arguments``), redacted and cut short.

Writing an approval's entry is best effort: a database failure is logged and the turn goes
on (the person already decided; the log must not undo the decision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

from mcp_core.errors import StoreError
from mcp_core.policy import load_policy
from mcp_core.store import Store

__all__ = ["AUDIT_ACTIONS", "Auditor", "Decision"]

logger = logging.getLogger(__name__)

Decision = Literal["approved", "always", "denied", "expired"]
AUDIT_ACTIONS = ("policy_changed", "tool_approved", "tool_denied")
MAX_ARGUMENTS_CHARS = 4000


class Auditor:
    """Writes approvals and denials into the audit log."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def decision(
        self,
        team_id: str,
        user_id: str,
        *,
        connection: str,
        tool: str,
        decision: Decision,
        arguments: Mapping[str, Any] | None,
        redact: Any = str,
    ) -> None:
        """Log one answer to an Approve / Deny question (``expired``: nobody answered)."""
        detail: dict[str, Any] = {"connection": connection, "tool": tool, "decision": decision}
        action = "tool_approved" if decision in ("approved", "always") else "tool_denied"
        try:
            if arguments is not None and (await load_policy(self._store, team_id)).audit_arguments:
                text = redact(json.dumps(dict(arguments), ensure_ascii=False, default=str))
                cut = len(text) > MAX_ARGUMENTS_CHARS
                detail["arguments"] = text[:MAX_ARGUMENTS_CHARS] + ("…" if cut else "")
            await self._store.add_audit(team_id, user_id, action, detail)
        except StoreError as exc:
            logger.warning("could not write the audit entry of %s on %s: %s", tool, connection, exc)
