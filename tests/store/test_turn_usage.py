"""Agent turns in the store: tokens per turn, person and model, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mcp_core.errors import StoreError
from mcp_core.models import TurnRecord, TurnUsage, UsageRecord
from mcp_core.usage import UsageRecorder

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def turn(
    *,
    team: str = TEAM,
    user: str = USER,
    at: datetime = T0,
    prompt: int | None = 1200,
    completion: int | None = 80,
    answered: bool = True,
) -> TurnRecord:
    usage = TurnUsage(
        model="gpt-4o-mini",
        rounds=2,
        prompt_tokens=prompt,
        completion_tokens=completion,
        tool_calls=3,
        answered=answered,
    )
    return TurnRecord(**usage.model_dump(), team_id=team, user_id=user, created_at=at)


def tool_call(at: datetime = T0) -> UsageRecord:
    return UsageRecord(
        team_id=TEAM,
        user_id=USER,
        connection_id=uuid.uuid4(),
        tool_name="echo",
        latency_ms=1.0,
        success=True,
        created_at=at,
    )


async def test_a_recorded_turn_reads_back_as_it_was_written(store) -> None:
    written = turn()

    await store.record_usage([written])

    assert await store.list_turns(TEAM, USER) == [written]


async def test_turns_and_tool_calls_share_one_batch(store) -> None:
    await store.record_usage([tool_call(), turn(), tool_call()])

    [summary] = await store.usage_summary(TEAM, USER)
    assert summary.calls == 2
    assert len(await store.list_turns(TEAM, USER)) == 1


async def test_unreported_tokens_stay_unknown_rather_than_zero(store) -> None:
    await store.record_usage([turn(prompt=None, completion=None, answered=False)])

    [read] = await store.list_turns(TEAM, USER)
    assert (read.prompt_tokens, read.completion_tokens, read.answered) == (None, None, False)


async def test_turns_are_read_per_person_oldest_first_and_from_a_date(store) -> None:
    later = T0 + timedelta(minutes=5)
    await store.record_usage(
        [
            turn(at=later, prompt=2),
            turn(at=T0, prompt=1),
            turn(user="U0002", prompt=3),
            turn(team="T0002", prompt=4),
        ]
    )

    assert [t.prompt_tokens for t in await store.list_turns(TEAM, USER)] == [1, 2]
    assert [t.prompt_tokens for t in await store.list_turns(TEAM, USER, since=later)] == [2]
    assert [t.prompt_tokens for t in await store.list_turns(TEAM, "U0002")] == [3]
    assert [t.prompt_tokens for t in await store.list_turns("T0002", USER)] == [4]


async def test_a_negative_count_is_refused_by_the_database_and_nothing_of_the_batch_is_written(store) -> None:
    bad = turn().model_copy(update={"prompt_tokens": -1})  # model_copy skips validation

    with pytest.raises(StoreError):
        await store.record_usage([turn(), bad])

    assert await store.list_turns(TEAM, USER) == []


async def test_the_usage_recorder_writes_a_turn_in_the_background(store) -> None:
    recorder = UsageRecorder(store)
    usage = TurnUsage(model="m", rounds=1, prompt_tokens=10, completion_tokens=2, answered=True)

    recorder.record_turn(TEAM, USER, usage, turn_id="t-1")
    await recorder.aclose()

    [read] = await store.list_turns(TEAM, USER)
    assert read.model_dump(exclude={"team_id", "user_id", "created_at", "turn_id"}) == usage.model_dump()
    assert read.turn_id == "t-1"
    assert (read.team_id, read.user_id) == (TEAM, USER)
