"""Per-person limits: one person's answers and tool calls are counted apart from everyone else's."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mcp_core import errors
from mcp_core.limits import CALL_WINDOW_S, UserLimits
from mcp_core.services import Services
from mcp_core.store._tables import tool_usage
from tests.support.registry import TEAM, USER, USER_B, add, call, make_settings, open_services, toy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_person_holds_at_most_max_turns_slots_and_a_finished_turn_frees_one() -> None:
    limits = UserLimits(max_turns=2, max_calls_per_minute=10)

    with limits.turn(TEAM, USER), limits.turn(TEAM, USER):
        with pytest.raises(errors.LimitError, match="2 answers in progress"), limits.turn(TEAM, USER):
            pass
        with limits.turn(TEAM, USER_B):  # someone else is not affected
            pass
    with limits.turn(TEAM, USER):
        pass


def test_calls_past_the_per_minute_limit_are_refused_until_the_window_moves_on() -> None:
    clock = Clock()
    limits = UserLimits(max_turns=1, max_calls_per_minute=2, clock=clock)
    limits.count_call(TEAM, USER)
    clock.now += 10
    limits.count_call(TEAM, USER)

    with pytest.raises(errors.LimitError, match="try again in 50 s"):
        limits.count_call(TEAM, USER)
    limits.count_call(TEAM, USER_B)
    limits.count_call("T_OTHER", USER)
    clock.now += CALL_WINDOW_S - 10
    limits.count_call(TEAM, USER)  # the first call left the window


@pytest.mark.anyio
async def test_a_connection_past_the_limit_is_refused_and_nothing_is_stored(tmp_path) -> None:
    async with open_services(make_settings(tmp_path, mcp_max_connections_per_user=1)) as services:
        await add(services, toy("first"))

        with pytest.raises(errors.LimitError, match="MCP_MAX_CONNECTIONS_PER_USER"):
            await add(services, toy("second"))

        assert [c.name for c in await services.store.list_connections(TEAM, USER)] == ["first"]
        assert (await add(services, toy("theirs"), user=USER_B)).error is None


@pytest.mark.anyio
async def test_a_rate_limited_call_is_not_sent_and_other_people_keep_calling(tmp_path) -> None:
    async with open_services(make_settings(tmp_path, mcp_max_calls_per_minute=1)) as services:
        await add(services, toy("mine"))
        await add(services, toy("theirs"), user=USER_B)
        await call(services, "mine__echo", text="one")

        with pytest.raises(errors.LimitError):
            await call(services, "mine__echo", text="two")
        assert (await call(services, "theirs__echo", user=USER_B, text="fine")).text == "fine"
        await services.usage.flush()
        assert await _calls_recorded(services) == 2


async def _calls_recorded(services: Services) -> int:
    async with services.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one()
