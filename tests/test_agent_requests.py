"""What the agent sends the model: compact tools, the same bytes every round, within budget.

The real ``openai`` client talks HTTP to the scripted server (``tests.support.fake_openai``);
tools run in the real toy stdio server through the real registry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from mcp_core.agent import Agent, ToolCall
from mcp_core.models import CatalogEntry, ToolResult
from mcp_core.services import Services
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.registry import TEAM, USER, add, toy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as fake:
        yield fake


@pytest.fixture
async def client(llm: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0, timeout=10)
    yield client
    await client.close()


@pytest.fixture
async def catalog(services: Services) -> list[CatalogEntry]:
    assert (await add(services, toy("toy"))).error is None
    return await services.registry.catalog(TEAM, USER)


def runner(services: Services):
    async def run(call: ToolCall) -> ToolResult:
        return await services.registry.call(TEAM, USER, call.name, call.arguments)

    return run


def tools_bytes(request: dict[str, Any]) -> str:
    return json.dumps(request["tools"], ensure_ascii=False, separators=(",", ":"))


async def test_the_tools_array_is_the_same_bytes_in_every_round_and_every_turn(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    agent = Agent(client, "fake-model")
    llm.call_tools(("toy__echo", {"text": "one"}))
    llm.call_tools(("toy__add", {"a": 1, "b": 2}))
    llm.reply("Done.")
    await agent.run([{"role": "user", "content": "Echo then add."}], catalog, runner(services))
    llm.reply("Hello again.")
    again = await services.registry.catalog(TEAM, USER)  # the next turn reads the catalog anew
    await agent.run([{"role": "user", "content": "Hi."}], again, runner(services))

    assert len(llm.requests) == 4
    assert len({tools_bytes(request) for request in llm.requests}) == 1
    sent = {tool["function"]["name"]: tool["function"] for tool in llm.requests[0]["tools"]}
    assert set(sent) == {entry.name for entry in catalog}
    assert "$schema" not in tools_bytes(llm.requests[0])
    assert "parameters" not in sent["toy__pid"]  # no arguments: none declared
    assert sent["toy__add"]["parameters"]["required"] == ["a", "b"]


async def test_a_big_result_is_cut_to_fit_and_stays_cut_in_later_rounds(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    budget = 3_000
    agent = Agent(client, "fake-model", max_input_tokens=budget)
    llm.call_tools(("toy__huge", {"size": 60_000}))
    llm.call_tools(("toy__echo", {"text": "next"}))
    llm.reply("Summarised.")

    reply = await agent.run(
        [{"role": "user", "content": "Read it all."}], catalog, runner(services), approval=lambda entry: False
    )

    assert reply.text == "Summarised."
    _, second, third = llm.requests
    assert all(usage["prompt_tokens"] <= budget for usage in llm.served_usage)  # as the server counts
    huge_then = next(m for m in second["messages"] if m["role"] == "tool")["content"]
    assert huge_then.startswith("x" * 200)
    assert "more characters cut" in huge_then
    huge_later = next(m["content"] for m in third["messages"] if m["role"] == "tool")
    assert huge_later.startswith("x" * 1000)
    assert "more characters cut" in huge_later
    assert len(huge_later) <= len(huge_then) < 60_000  # kept as sent, or cut further: never back
    assert [m["content"] for m in third["messages"] if m["role"] == "tool"][-1] == "next"


async def test_a_long_thread_sends_its_newest_messages_that_fit_and_always_the_question(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    agent = Agent(client, "fake-model", max_input_tokens=2_000)
    thread = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n}: " + "words " * 150}
        for n in range(40)
    ]
    question = {"role": "user", "content": "So what did we decide?"}
    llm.reply("You decided to ship.")

    await agent.run([*thread, question], catalog, runner(services))

    (request,) = llm.requests
    sent = request["messages"]
    assert sent[0]["role"] == "system"
    assert sent[-1] == question
    assert 1 < len(sent) - 1 < len(thread)
    assert sent[1:-1] == thread[-(len(sent) - 2) :]
    assert llm.served_usage[0]["prompt_tokens"] <= 2_000
