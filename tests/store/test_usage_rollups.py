"""Daily rollups of usage (migration 0011) and the stats read from them, on SQLite and
PostgreSQL: batches add up, days and people stay apart, quantiles land in the right bucket,
tokens are priced, and 👍 / 👎 count the person's own answers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from mcp_core.models import TurnRecord, UsageRecord
from mcp_core.stats import estimate_quantile, parse_prices, person_stats, window
from mcp_core.store._rollups import LATENCY_EDGES_MS, NO_CONNECTION, latency_bucket
from mcp_core.store._tables import tool_usage, usage_daily
from mcp_core.usage import UsagePruner

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

TODAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def call(
    connection_id: uuid.UUID | None,
    tool: str = "echo",
    *,
    latency_ms: float = 10.0,
    ok: bool = True,
    error_class: str | None = None,
    at: datetime = NOON,
    user: str = USER,
) -> UsageRecord:
    return UsageRecord(
        team_id=TEAM,
        user_id=user,
        connection_id=connection_id,
        tool_name=tool,
        latency_ms=latency_ms,
        success=ok,
        error_class=error_class if not ok else None,
        error_message="boom" if not ok else None,
        created_at=at,
    )


def turn(model: str, prompt: int, completion: int, *, turn_id: str, user: str = USER) -> TurnRecord:
    return TurnRecord(
        team_id=TEAM,
        user_id=user,
        model=model,
        rounds=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        tool_calls=0,
        answered=True,
        created_at=NOON,
        turn_id=turn_id,
    )


async def test_calls_roll_up_per_tool_and_day_and_batches_add_up(store, connect) -> None:
    gh = await connect("github")
    await store.record_usage([call(gh.id, "search", latency_ms=40) for _ in range(3)])
    await store.record_usage(
        [
            call(gh.id, "search", latency_ms=90, ok=False, error_class="ServerTimeoutError"),
            call(gh.id, "search", latency_ms=40, at=NOON - timedelta(days=2)),
            call(gh.id, "create_issue", latency_ms=400),
        ]
    )

    stats = await person_stats(store, TEAM, USER, 7, {}, today=TODAY)

    by_tool = {t.tool: t for t in stats.tools}
    search = by_tool["search"]
    assert (search.calls, search.errors, search.connection_name) == (5, 1, "github")
    assert search.success_rate == pytest.approx(0.8)
    assert search.avg_ms == pytest.approx((3 * 40 + 90 + 40) / 5)
    assert 20 <= search.p50_ms <= 50  # 40 ms lies in the 20–50 ms bucket
    assert 50 <= search.p95_ms <= 100
    assert by_tool["create_issue"].calls == 1
    assert stats.errors_by_class == [("ServerTimeoutError", 1)]
    assert stats.per_day[-1] == (TODAY, 5, 1)
    assert stats.per_day[-3] == (TODAY - timedelta(days=2), 1, 0)
    assert len(stats.per_day) == 7
    assert (stats.calls, stats.errors) == (6, 1)


async def test_a_window_leaves_out_older_days_and_other_people(store, connect) -> None:
    mine = await connect("github")
    theirs = await connect("github", user="U_OTHER")
    await store.record_usage(
        [
            call(mine.id, at=NOON - timedelta(days=8)),
            call(mine.id),
            call(theirs.id, user="U_OTHER"),
            call(theirs.id, user="U_OTHER"),
        ]
    )

    week = await person_stats(store, TEAM, USER, 7, {}, today=TODAY)
    month = await person_stats(store, TEAM, USER, 30, {}, today=TODAY)
    other = await person_stats(store, "T_ELSEWHERE", USER, 30, {}, today=TODAY)

    assert week.calls == 1
    assert month.calls == 2
    assert other.calls == 0


async def test_a_removed_connection_keeps_its_usage_without_a_name(store, connect) -> None:
    gone = await connect("scratch")
    await store.record_usage([call(gone.id), call(None)])
    await store.delete_connection(TEAM, USER, gone.id)

    stats = await person_stats(store, TEAM, USER, 7, {}, today=TODAY)

    assert sorted((t.connection_id is None, t.connection_name) for t in stats.tools) == [
        (False, None),
        (True, None),
    ]


async def test_tokens_are_summed_per_model_and_priced(store) -> None:
    await store.record_usage(
        [turn("gpt-4o-mini", 1_000_000, 200_000, turn_id="a"), turn("gpt-4o-mini", 500_000, 0, turn_id="b")]
    )
    await store.record_usage([turn("local-llama", 10, 5, turn_id="c")])

    stats = await person_stats(store, TEAM, USER, 7, parse_prices("gpt-4o-mini=0.15/0.60"), today=TODAY)

    [mini, llama] = stats.models  # by name
    assert (mini.model, mini.turns, mini.prompt_tokens, mini.completion_tokens) == (
        "gpt-4o-mini",
        2,
        1_500_000,
        200_000,
    )
    assert mini.cost_usd == pytest.approx(1.5 * 0.15 + 0.2 * 0.60)
    assert (llama.model, llama.cost_usd) == ("local-llama", None)


async def test_feedback_counts_votes_on_the_persons_own_answers(store) -> None:
    await store.record_usage(
        [turn("m", 1, 1, turn_id="mine"), turn("m", 1, 1, turn_id="theirs", user="U_OTHER")]
    )
    await store.record_feedback(TEAM, USER, "mine", "up")
    await store.record_feedback(TEAM, "U_THIRD", "mine", "down")
    await store.record_feedback(TEAM, USER, "theirs", "up")  # on someone else's answer

    stats = await person_stats(store, TEAM, USER, 7, {}, today=datetime.now(UTC).date())

    assert (stats.feedback_up, stats.feedback_down) == (1, 1)


async def test_raw_rows_and_rollups_are_written_together(store, connect, engine) -> None:
    gh = await connect("github")
    await store.record_usage([call(gh.id), call(gh.id)])

    async with engine.connect() as conn:
        raw = (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one()
        rolled = (await conn.execute(sa.select(usage_daily.c.calls))).scalars().all()

    assert raw == 2
    assert rolled == [2]


def test_latency_buckets_and_quantiles() -> None:
    assert latency_bucket(0.5) == 0
    assert latency_bucket(1) == 1
    assert latency_bucket(4999) == LATENCY_EDGES_MS.index(5000)
    assert latency_bucket(10**7) == len(LATENCY_EDGES_MS)
    slow = {latency_bucket(6000): 10}
    assert 5000 <= estimate_quantile(slow, 0.95) <= 7500
    assert estimate_quantile({len(LATENCY_EDGES_MS): 3}, 0.5) == LATENCY_EDGES_MS[-1]
    assert estimate_quantile({}, 0.5) == 0.0
    assert uuid.UUID(int=0) == NO_CONNECTION


@pytest.mark.parametrize("text", ["gpt=1", "=1/2", "gpt=a/b", "gpt=-1/2"])
def test_bad_prices_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="MODEL_PRICES entry"):
        parse_prices(text)


def test_the_stats_window_is_7_or_30_days() -> None:
    assert (window(""), window("7d"), window("30D"), window("1y")) == (7, 7, 30, None)


async def test_pruning_deletes_old_raw_rows_and_keeps_the_rollups(store, connect, engine) -> None:
    gh = await connect("github")
    now = datetime.now(UTC)
    old = now - timedelta(days=100)
    await store.record_usage(
        [call(gh.id, at=old) for _ in range(5)]
        + [call(gh.id, at=now)]
        + [turn("m", 1, 1, turn_id="old").model_copy(update={"created_at": old})]
    )

    removed = await store.prune_usage(now - timedelta(days=90), batch=2)  # several batches
    again = await UsagePruner(store, retention_days=90).prune()
    stats = await person_stats(store, TEAM, USER, 30, {})
    async with engine.connect() as conn:
        raw = (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one()
        kept = (await conn.execute(sa.select(sa.func.sum(usage_daily.c.calls)))).scalar_one()

    assert removed == 6  # five calls and one turn
    assert again == 0
    assert raw == 1
    assert kept == 6  # the old days' sums stay
    assert stats.calls == 1
