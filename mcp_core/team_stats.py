"""A workspace's usage for its admins (``/mcp admin``), read from the rollups.

Workspace totals (calls, errors, turns, tokens and estimated cost per model, people with
connections and people asking), connections per run card, the servers with the highest
error rates, the busiest tools, and connections waiting for their person to sign in. A
server is a run card, a URL's host or a stdio command's name (``server_key``), so the
numbers say which server fails without showing anyone's URL path, arguments or secrets.
Tool calls come from the per-server rollup (migration 0012), so the read costs the same at a
thousand calls or ten million (``bench/stats.py``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from mcp_core.models import Connection
from mcp_core.stats import ModelStats, model_stats
from mcp_core.store import Store
from mcp_core.store._rollups import REMOVED_SERVER, server_key

__all__ = [
    "CardUse",
    "ServerStats",
    "SignInWait",
    "TeamStats",
    "ToolUse",
    "connections_csv",
    "csv_export",
    "safe_cell",
    "team_stats",
]

BUSIEST_TOOLS = 10
WORST_SERVERS = 10
MIN_CALLS_FOR_RATE = 5
"""A server needs this many calls in the window before its error rate is ranked."""


@dataclass(frozen=True)
class ServerStats:
    server: str
    """``card:<id>``, ``url:<host>``, ``stdio:<name>`` or ``removed``."""
    connections: int
    calls: int
    errors: int
    avg_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class ToolUse:
    server: str
    tool: str
    calls: int
    errors: int
    avg_ms: float


@dataclass(frozen=True)
class CardUse:
    card_id: str | None
    """None: connections made from a custom URL or command."""
    connections: int
    people: int


@dataclass(frozen=True)
class SignInWait:
    user_id: str
    connection_name: str
    server: str


@dataclass(frozen=True)
class TeamStats:
    days: int
    since: date
    calls: int
    errors: int
    people_with_connections: int
    people_asking: int
    connections: int
    models: list[ModelStats]
    cards: list[CardUse]
    servers: list[ServerStats]
    """Highest error rate first (servers with at least ``MIN_CALLS_FOR_RATE`` calls)."""
    busiest: list[ToolUse]
    errors_by_class: list[tuple[str, int]]
    per_day: list[tuple[date, int, int]]
    """(day, calls, errors) for every day of the window, oldest first."""
    sign_in: list[SignInWait]
    tools: list[ToolUse]
    """Every tool called in the window (for the CSV export), busiest first."""


async def team_stats(
    store: Store,
    team_id: str,
    days: int,
    prices: Mapping[str, tuple[float, float]],
    *,
    today: date | None = None,
) -> TeamStats:
    """The workspace's usage over the last ``days`` UTC days (today included).

    Raises:
        StoreError: the database failed.
    """
    today = today or datetime.now(UTC).date()
    since = today - timedelta(days=days - 1)
    raw = await store.team_rollups(team_id, since)
    tools = sorted(
        (
            ToolUse(server, tool, calls, errors, total / calls if calls else 0.0)
            for server, tool, calls, errors, total in raw.tools
        ),
        key=lambda t: (-t.calls, t.server, t.tool),
    )
    per_server: dict[str, list[float]] = {}
    for tool in tools:
        sums = per_server.setdefault(tool.server, [0, 0, 0.0])
        sums[0] += tool.calls
        sums[1] += tool.errors
        sums[2] += tool.avg_ms * tool.calls
    servers = [
        ServerStats(
            server, raw.servers.get(server, 0), int(calls), int(errors), total / calls if calls else 0.0
        )
        for server, (calls, errors, total) in per_server.items()
        if calls >= MIN_CALLS_FOR_RATE and server != REMOVED_SERVER
    ]
    servers.sort(key=lambda s: (-s.error_rate, -s.calls, s.server))
    by_day = {day: (calls, errors) for day, calls, errors in raw.per_day}
    cards = sorted(
        (CardUse(card, n, people) for card, n, people in raw.cards),
        key=lambda c: (-c.connections, c.card_id or "~"),
    )
    waits = [
        SignInWait(c.user_id, c.name, server_key(c.card_id, c.url, c.command))
        for c in raw.needs_auth
        if c.needs_sign_in
    ]
    return TeamStats(
        days=days,
        since=since,
        calls=sum(t.calls for t in tools),
        errors=sum(t.errors for t in tools),
        people_with_connections=sum(c.people for c in cards),
        people_asking=raw.people_asking,
        connections=sum(c.connections for c in cards),
        models=model_stats(raw.models, prices),
        cards=cards,
        servers=servers[:WORST_SERVERS],
        busiest=tools[:BUSIEST_TOOLS],
        errors_by_class=raw.errors_by_class,
        per_day=[(day, *by_day.get(day, (0, 0))) for day in (since + timedelta(days=n) for n in range(days))],
        sign_in=waits,
        tools=tools,
    )


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: server and tool names come from MCP servers,
    and a leading ``=`` would make one a formula (CSV injection)."""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def connections_csv(connections: Sequence[Connection]) -> str:
    """The workspace's connections as CSV — who, what, which server, its state; never a URL's
    path or query, a command's arguments or a secret (a removed workspace's admin keeps this)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["user", "name", "card", "server", "transport", "status", "created_at", "last_used_at", "calls"]
    )
    for c in connections:
        writer.writerow(
            [
                c.user_id,
                safe_cell(c.name),
                safe_cell(c.card_id or ""),
                safe_cell(server_key(c.card_id, c.url, c.command)),
                c.transport,
                c.status.value,
                c.created_at.isoformat(),
                c.last_used_at.isoformat() if c.last_used_at else "",
                c.usage_count,
            ]
        )
    return out.getvalue()


def csv_export(stats: TeamStats) -> str:
    """The window's tool calls per server and tool as CSV (no people, no arguments)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["since", "days", "server", "tool", "calls", "errors", "error_rate", "avg_ms"])
    for tool in stats.tools:
        rate = tool.errors / tool.calls if tool.calls else 0.0
        writer.writerow(
            [
                stats.since.isoformat(),
                stats.days,
                safe_cell(tool.server),
                safe_cell(tool.tool),
                tool.calls,
                tool.errors,
                f"{rate:.4f}",
                f"{tool.avg_ms:.1f}",
            ]
        )
    return out.getvalue()
