"""Votes on answers in the store: one per person per turn, the latest click wins, scoped by team;
on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

OTHER_USER, OTHER_TEAM = "U_SOMEONE", "T_ELSEWHERE"


async def votes(store, team: str, turn: str) -> list[tuple[str, str]]:
    return [(v.user_id, v.vote) for v in await store.turn_feedback(team, turn)]


async def test_a_second_vote_of_the_same_person_replaces_their_first(store) -> None:
    await store.record_feedback(TEAM, USER, "turn-1", "up")
    [first] = await store.turn_feedback(TEAM, "turn-1")
    await store.record_feedback(TEAM, USER, "turn-1", "down")

    [second] = await store.turn_feedback(TEAM, "turn-1")
    assert (second.user_id, second.vote) == (USER, "down")
    assert second.updated_at >= first.updated_at


async def test_votes_are_kept_per_person_per_turn_and_per_team(store) -> None:
    await store.record_feedback(TEAM, USER, "turn-1", "up")
    await store.record_feedback(TEAM, OTHER_USER, "turn-1", "down")
    await store.record_feedback(TEAM, USER, "turn-2", "down")
    await store.record_feedback(OTHER_TEAM, USER, "turn-1", "down")

    assert await votes(store, TEAM, "turn-1") == sorted([(USER, "up"), (OTHER_USER, "down")])
    assert await votes(store, TEAM, "turn-2") == [(USER, "down")]
    assert await votes(store, OTHER_TEAM, "turn-1") == [(USER, "down")]
    assert await votes(store, TEAM, "turn-3") == []
