"""A person's usage over the last days, read from the daily rollups (migration 0011).

``person_stats`` answers ``/mcp stats`` and the App Home's section: calls per connection and
tool with their success rate and estimated p50 / p95 latency, errors by class, turns and
tokens per model with an estimated cost (``MODEL_PRICES``), 👍 / 👎 on the person's answers,
and calls and errors per day. Every query is scoped by the verified team and user and reads
the rollups, never the raw rows, so it costs the same at a thousand calls or ten million.

Latency quantiles come from counts per bucket (``LATENCY_EDGES_MS``): linear within the
bucket that holds the quantile, so an estimate is off by at most that bucket's width (the
edges are ~1.5–2.5× apart); anything past the last edge reads as that edge.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from mcp_core.models import Connection, UsageChart
from mcp_core.settings import Settings, parse_prices
from mcp_core.store import Store
from mcp_core.store._rollups import LATENCY_EDGES_MS, NO_CONNECTION
from mcp_core.store._stats import RollupRows

__all__ = [
    "ModelStats",
    "PersonStats",
    "StatsReport",
    "Suggestion",
    "ToolStats",
    "estimate_quantile",
    "home_stats",
    "model_stats",
    "parse_prices",
    "person_stats",
    "stats_report",
    "suggestions",
    "window",
]

WINDOWS = {"7d": 7, "30d": 30}
"""The windows ``/mcp stats`` takes."""


@dataclass(frozen=True)
class ToolStats:
    connection_id: uuid.UUID | None
    """None: the call's connection was already gone when it was recorded."""
    connection_name: str | None
    """None once the connection was removed (its usage is kept)."""
    tool: str
    calls: int
    errors: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    buckets: Mapping[int, int]
    """Calls per latency bucket (to merge tools into their server's latency)."""

    @property
    def success_rate(self) -> float:
        return (self.calls - self.errors) / self.calls if self.calls else 1.0


@dataclass(frozen=True)
class ModelStats:
    model: str
    turns: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """None when ``MODEL_PRICES`` has no price for the model."""


@dataclass(frozen=True)
class PersonStats:
    days: int
    since: date
    tools: list[ToolStats]
    errors_by_class: list[tuple[str, int]]
    models: list[ModelStats]
    feedback_up: int
    feedback_down: int
    per_day: list[tuple[date, int, int]]
    """(day, calls, errors) for every day of the window, oldest first (zeros included)."""

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.tools)

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.tools)


def estimate_quantile(buckets: Mapping[int, int], q: float) -> float:
    """The ``q`` quantile (0..1) of latencies counted per bucket, in ms."""
    total = sum(buckets.values())
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        if count and seen + count >= rank:
            lower = LATENCY_EDGES_MS[bucket - 1] if bucket > 0 else 0.0
            if bucket >= len(LATENCY_EDGES_MS):
                return float(LATENCY_EDGES_MS[-1])
            upper = LATENCY_EDGES_MS[bucket]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return float(LATENCY_EDGES_MS[-1])


async def person_stats(
    store: Store,
    team_id: str,
    user_id: str,
    days: int,
    prices: Mapping[str, tuple[float, float]],
    *,
    today: date | None = None,
) -> PersonStats:
    """The person's usage over the last ``days`` UTC days (today included).

    Raises:
        StoreError: the database failed.
    """
    since = _since(days, today)
    return _person_stats(await store.usage_rollups(team_id, user_id, since), days, since, prices)


async def home_stats(
    store: Store, team_id: str, user_id: str, days: int, *, today: date | None = None
) -> tuple[PersonStats, UsageChart | None]:
    """The App Home's section in one read: the person's usage over the last ``days`` UTC days
    (without prices) and the newest chart sent to them.

    Raises:
        StoreError: the database failed.
    """
    since = _since(days, today)
    raw, chart = await store.home_usage(team_id, user_id, since)
    return _person_stats(raw, days, since, {}), chart


def _since(days: int, today: date | None) -> date:
    return (today or datetime.now(UTC).date()) - timedelta(days=days - 1)


def _person_stats(
    raw: RollupRows, days: int, since: date, prices: Mapping[str, tuple[float, float]]
) -> PersonStats:
    tools = [
        ToolStats(
            connection_id=None if row.connection_id == NO_CONNECTION else row.connection_id,
            connection_name=row.connection_name,
            tool=row.tool_name,
            calls=row.calls,
            errors=row.errors,
            avg_ms=row.latency_ms_sum / row.calls if row.calls else 0.0,
            p50_ms=estimate_quantile(row.buckets, 0.5),
            p95_ms=estimate_quantile(row.buckets, 0.95),
            buckets=dict(row.buckets),
        )
        for row in raw.tools
    ]
    tools.sort(key=lambda t: (-t.calls, t.connection_name or "~", t.tool))
    models = model_stats(raw.models, prices)
    by_day = {day: (calls, errors) for day, calls, errors in raw.per_day}
    per_day = [(day, *by_day.get(day, (0, 0))) for day in (since + timedelta(days=n) for n in range(days))]
    return PersonStats(
        days=days,
        since=since,
        tools=tools,
        errors_by_class=raw.errors_by_class,
        models=models,
        feedback_up=raw.feedback.get("up", 0),
        feedback_down=raw.feedback.get("down", 0),
        per_day=per_day,
    )


def model_stats(
    rows: Sequence[tuple[str, int, int, int]], prices: Mapping[str, tuple[float, float]]
) -> list[ModelStats]:
    """(model, turns, prompt tokens, completion tokens) rows with their estimated cost."""
    return [
        ModelStats(model, turns, prompt, completion, _cost(prices.get(model), prompt, completion))
        for model, turns, prompt, completion in rows
    ]


def _cost(price: tuple[float, float] | None, prompt: int, completion: int) -> float | None:
    if price is None:
        return None
    return (prompt * price[0] + completion * price[1]) / 1_000_000


def window(arg: str) -> int | None:
    """Days of ``/mcp stats [7d|30d]``'s argument (7 when empty); None when it is neither."""
    return WINDOWS.get(arg.strip().lower() or "7d")


UNUSED_DAYS = 30
FAILING_SHARE = 0.2
FAILING_MIN_CALLS = 5
SLOW_P95_MS = 5000.0
TEAMMATES_MIN = 2


@dataclass(frozen=True)
class Suggestion:
    """One thing the person might do, from their own usage (and counts of their teammates')."""

    kind: Literal["unused", "failing", "slow", "teammates_use"]
    subject: str
    """The connection, tool or card it is about."""
    detail: str = ""
    """``failing``: the tool's connection; ``slow``: its p95 as text; ``teammates_use``: how many."""


def suggestions(
    stats: PersonStats,
    connections: Sequence[Connection],
    cards_in_team: Mapping[str, int],
    *,
    now: datetime | None = None,
) -> list[Suggestion]:
    """What the origin documents sketch: a connection unused for 30 days, a tool failing more
    than 20% of the time (5 calls at least), a server whose p95 is over 5 s, a run card at least
    two teammates use that the person has not connected (``cards_in_team``: people per card)."""
    now = now or datetime.now(UTC)
    found: list[Suggestion] = []
    for connection in connections:
        last = connection.last_used_at or connection.created_at
        if last is not None and now - last > timedelta(days=UNUSED_DAYS):
            found.append(Suggestion("unused", connection.name))
    for tool in stats.tools:
        if tool.calls >= FAILING_MIN_CALLS and tool.errors / tool.calls > FAILING_SHARE:
            found.append(Suggestion("failing", tool.tool, tool.connection_name or ""))
    merged: dict[str, dict[int, int]] = {}
    for tool in stats.tools:
        if tool.connection_name is not None:
            into = merged.setdefault(tool.connection_name, {})
            for bucket, count in tool.buckets.items():
                into[bucket] = into.get(bucket, 0) + count
    for name, buckets in sorted(merged.items()):
        p95 = estimate_quantile(buckets, 0.95)
        if p95 > SLOW_P95_MS:
            found.append(Suggestion("slow", name, f"{p95 / 1000:.1f} s"))
    mine = {c.card_id for c in connections if c.card_id}
    for card, people in sorted(cards_in_team.items(), key=lambda item: (-item[1], item[0])):
        if card not in mine and people >= TEAMMATES_MIN:
            found.append(Suggestion("teammates_use", card, str(people)))
    return found


@dataclass(frozen=True)
class StatsReport:
    stats: PersonStats
    suggestions: list[Suggestion]
    priced: bool
    """MODEL_PRICES is set: costs are estimated."""


async def stats_report(
    store: Store, settings: Settings, team_id: str, user_id: str, days: int
) -> StatsReport:
    """``/mcp stats``: the person's usage over ``days`` with what they might do about it.

    Raises:
        StoreError: the database failed.
    """
    prices = parse_prices(settings.model_prices)
    stats = await person_stats(store, team_id, user_id, days, prices)
    connections = await store.list_connections(team_id, user_id)
    hints = suggestions(stats, connections, await store.card_use(team_id))
    return StatsReport(stats, hints, bool(prices))
