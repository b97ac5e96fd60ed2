"""Several tools at once: read-only calls of one model answer overlap, writes keep their place.

Tools run in tests/servers/overlap.py, a real stdio MCP server reached through the real
registry. Its ``meet`` tool answers only once the given number of calls are in flight
together, so "these calls ran at the same time" is shown by their answers, not by a clock;
``alone`` (may write) says how many other calls were in flight around it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_core.agent import ToolCall, ToolProgress
from mcp_core.models import CatalogEntry, NewConnection
from mcp_core.services import Services
from tests.support.agents import AgentFactory, as_user
from tests.support.fake_openai import FakeOpenAI
from tests.support.registry import TEAM, USER, add, make_settings, open_services

pytestmark = pytest.mark.anyio

OVERLAP = Path(__file__).resolve().parent / "servers" / "overlap.py"
QUESTION = [{"role": "user", "content": "Look several things up at once."}]
TURN_S = 20.0
"""Bound on one whole turn, so a regression to one-by-one calls fails instead of hanging."""
GIVE_UP_S = 2.0
"""How long a ``meet`` that must not succeed waits for its partners: it fails either way, but
the calls that do overlap must all reach the server within it (a busy machine is slow)."""
TOOL_FAILED = "Error: Error executing tool meet: "


@pytest.fixture
async def catalog(services: Services) -> list[CatalogEntry]:
    return await overlap_catalog(services)


async def overlap_catalog(services: Services) -> list[CatalogEntry]:
    new = NewConnection(name="ov", transport="stdio", command=sys.executable, args=[str(OVERLAP)])
    assert (await add(services, new)).error is None
    return await services.registry.catalog(TEAM, USER)


def meet(group: str, parties: int, wait_s: float = 5.0) -> tuple[str, dict[str, Any]]:
    return ("ov__meet", {"group": group, "parties": parties, "wait_s": wait_s})


def tool_messages(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["tool_call_id"], m["content"]) for m in request["messages"] if m["role"] == "tool"]


def call_ids(request: dict[str, Any]) -> list[str]:
    [asked] = [m for m in request["messages"] if m.get("tool_calls")]
    return [c["id"] for c in asked["tool_calls"]]


class Journal:
    """What the agent told the callbacks, in the order it told them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def progress(self, progress: ToolProgress) -> None:
        self.events.append((progress.state, _label(progress.call)))

    async def approve(self, call: ToolCall) -> bool:
        self.events.append(("asked", _label(call)))
        return True

    def index(self, state: str, label: str) -> int:
        return self.events.index((state, label))


def _label(call: ToolCall) -> str:
    return str(call.arguments.get("label") or f"{call.arguments.get('group')}#{call.id}")


async def test_five_read_only_calls_of_one_answer_are_in_flight_together_by_default(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(*[meet("five", 5)] * 5)
    llm.reply("All five answered.")
    journal = Journal()

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm).run(  # the default lets all five run together
            QUESTION, catalog, as_user(services), on_progress=journal.progress
        )

    assert reply.text == "All five answered."
    assert [content for _, content in tool_messages(llm.requests[1])] == ["met 5"] * 5
    assert [p.state for p in reply.calls] == ["done"] * 5
    assert sorted(state for state, _ in journal.events) == ["done"] * 5 + ["pending"] * 5 + ["running"] * 5


async def test_no_more_than_parallel_calls_run_at_once(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(*[meet("three", 3, GIVE_UP_S)] * 3)
    llm.reply("They never met.")

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm, parallel_calls=2).run(QUESTION, catalog, as_user(services))

    answers = [content for _, content in tool_messages(llm.requests[1])]
    assert [p.state for p in reply.calls] == ["failed"] * 3
    assert answers == [f"{TOOL_FAILED}at most 2 of 3 calls of three were in flight together"] * 3


async def test_agent_parallel_calls_1_runs_every_call_one_by_one(tmp_path: Path, llm: FakeOpenAI) -> None:
    settings = make_settings(
        tmp_path, openai_api_key=llm.api_key, openai_base_url=llm.base_url, agent_parallel_calls=1
    )
    llm.call_tools(meet("one", 2, GIVE_UP_S), meet("one", 2, GIVE_UP_S))
    llm.reply("One by one.")
    async with open_services(settings) as services:
        assert services.agent is not None
        with anyio.fail_after(TURN_S):
            await services.agent.run(QUESTION, await overlap_catalog(services), as_user(services))

    answers = [content for _, content in tool_messages(llm.requests[1])]
    assert answers == [f"{TOOL_FAILED}at most 1 of 2 calls of one were in flight together"] * 2


async def test_a_call_that_may_write_waits_for_the_reads_before_it_and_runs_before_the_reads_after_it(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(
        meet("before", 2),
        meet("before", 2),
        ("ov__alone", {"label": "write"}),
        meet("after", 2),
        meet("after", 2),
    )
    llm.reply("Done in order.")
    journal = Journal()

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm).run(
            QUESTION, catalog, as_user(services), on_progress=journal.progress, ask_approval=journal.approve
        )

    answers = [content for _, content in tool_messages(llm.requests[1])]
    assert answers == ["met 2", "met 2", "write: 0 then 0", "met 2", "met 2"]  # nothing overlapped the write
    asked = journal.index("asked", "write")
    assert all(journal.index("done", _label(p.call)) < asked for p in reply.calls[:2])
    assert journal.index("done", "write") < min(
        journal.index("running", _label(p.call)) for p in reply.calls[3:]
    )


async def test_read_only_calls_that_need_approval_run_one_by_one(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(meet("asked", 2, GIVE_UP_S), meet("asked", 2, GIVE_UP_S))
    llm.reply("Each ran alone.")
    journal = Journal()

    with anyio.fail_after(TURN_S):
        await agent_for(llm).run(
            QUESTION, catalog, as_user(services), ask_approval=journal.approve, approval=lambda entry: True
        )

    answers = [content for _, content in tool_messages(llm.requests[1])]
    assert answers == [f"{TOOL_FAILED}at most 1 of 2 calls of asked were in flight together"] * 2


async def test_results_go_back_in_the_models_order_though_a_later_call_finished_first(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(meet("pair", 2), ("ov__snooze", {"seconds": 0}), meet("pair", 2))
    llm.reply("Ordered.")
    finished: list[str] = []

    async def on_progress(progress: ToolProgress) -> None:
        if progress.state == "done":
            finished.append(progress.call.name)

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm).run(QUESTION, catalog, as_user(services), on_progress=on_progress)

    second = llm.requests[1]
    assert [call_id for call_id, _ in tool_messages(second)] == call_ids(second)
    assert [content for _, content in tool_messages(second)] == ["met 2", "rested", "met 2"]
    # With two at a time the pair can only meet once the snooze made room: it ended first on
    # the server; the order the progress callbacks ran in is not asserted (it races the room).
    assert sorted(finished) == ["ov__meet", "ov__meet", "ov__snooze"]
    assert [p.call.name for p in reply.calls] == ["ov__meet", "ov__snooze", "ov__meet"]


async def test_a_failing_call_among_concurrent_ones_leaves_the_others_running(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(meet("pair", 2), ("ov__meet", {"group": "pair", "parties": "two"}), meet("pair", 2))
    llm.reply("One failed.")

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm).run(QUESTION, catalog, as_user(services))

    answers = [content for _, content in tool_messages(llm.requests[1])]
    assert [p.state for p in reply.calls] == ["done", "failed", "done"]
    assert answers[0] == answers[2] == "met 2"
    assert answers[1].startswith("Error: Arguments for ov__meet do not match its schema")


async def test_a_raising_progress_callback_lets_the_concurrent_calls_finish_then_the_turn_fails(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(meet("pair", 2), ("ov__snooze", {"seconds": 0}), meet("pair", 2))
    ended: list[str] = []

    async def on_progress(progress: ToolProgress) -> None:
        if progress.state in ("pending", "running"):
            return
        if progress.call.name == "ov__snooze":
            raise RuntimeError("the progress display broke")
        ended.append(progress.result.text if progress.result else "")

    with anyio.fail_after(TURN_S), pytest.raises(RuntimeError, match="progress display broke"):
        await agent_for(llm).run(QUESTION, catalog, as_user(services), on_progress=on_progress)

    assert ended == ["met 2", "met 2"]
