"""Every user-facing text of the Slack surface, in one place."""

from __future__ import annotations

from collections.abc import Sequence

from mcp_core.models import Connection
from mcp_core.registry import HealthReport

USAGE = """\
*/mcp* — connect your own MCP servers and use their tools.
• `/mcp connect [card]` — connect a server (`custom`: any remote MCP URL)
• `/mcp list` — your connections, their status and usage
• `/mcp tools [name]` — browse tools of one or all connections
• `/mcp test [name]` — health check of one or all connections
• `/mcp disconnect <name>` — remove a connection and its stored credentials
• `/mcp help` — this message"""

NO_CONNECTIONS = "You have no MCP connections yet. Try `/mcp connect`."
INTERNAL_ERROR = "⚠️ Something went wrong on our side. It has been logged; please try again in a moment."
CARDS = ("custom",)


def list_summary(connections: Sequence[Connection]) -> str:
    if not connections:
        return NO_CONNECTIONS
    return f"You have {len(connections)} MCP connection{'s' if len(connections) != 1 else ''}."


def unknown_connection(name: str, names: Sequence[str]) -> str:
    if not names:
        return f"You have no connection named “{name}”. {NO_CONNECTIONS}"
    return f"You have no connection named “{name}”. Yours: {', '.join(f'`{n}`' for n in names)}."


def unknown_card(card: str) -> str:
    return f"There is no run card “{card}”. Available: {', '.join(f'`{c}`' for c in CARDS)}."


def health(report: HealthReport) -> str:
    if report.ok:
        return f"🟢 *{report.connection}*: {report.tool_count} tools, answered in {report.latency_ms:.0f} ms"
    return f"🔴 *{report.connection}*: {report.error} ({report.latency_ms:.0f} ms)"
