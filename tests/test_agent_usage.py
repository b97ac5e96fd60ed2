"""What a turn cost: the API's ``usage`` summed over the rounds of a turn, answered or not.

The scripted model server reports ``usage`` as OpenAI does (``served_usage`` says what);
tools run in the toy server (served in-process) through the real registry.
"""

from __future__ import annotations

from typing import Any

import pytest

from mcp_core import errors
from mcp_core.models import CatalogEntry, TurnUsage
from mcp_core.services import Services
from tests.support.agents import AgentFactory, as_user
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.anyio

QUESTION = [{"role": "user", "content": "Echo hi, please."}]


def totals(llm: FakeOpenAI) -> tuple[int, int]:
    return (
        sum(u["prompt_tokens"] for u in llm.served_usage),
        sum(u["completion_tokens"] for u in llm.served_usage),
    )


async def test_an_answered_turn_carries_its_rounds_tokens_and_tool_calls(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "hi"}), ("toy__echo", {"text": "ho"}))
    llm.call_tools(("toy__echo", {"text": "again"}))
    llm.reply("Done.")
    reported: list[TurnUsage] = []

    reply = await agent_for(llm).run(
        QUESTION, toy_catalog, as_user(in_process_services), on_usage=reported.append
    )

    assert reply.usage == TurnUsage(
        model="fake-model",
        rounds=3,
        prompt_tokens=totals(llm)[0],
        completion_tokens=totals(llm)[1],
        tool_calls=3,
        answered=True,
    )
    assert reported == [reply.usage]
    assert len(llm.served_usage) == 3
    assert reply.usage.prompt_tokens > 3


async def test_a_server_that_reports_no_usage_gives_unknown_tokens_not_zero(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reports_usage = False
    llm.call_tools(("toy__echo", {"text": "hi"}))
    llm.reply("Done.")

    reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert (reply.usage.rounds, reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, None, None)


async def test_a_turn_that_fails_after_a_round_still_reports_the_tokens_it_spent(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "hi"}))
    llm.fail(500)
    reported: list[TurnUsage] = []

    with pytest.raises(errors.LlmError):
        await agent_for(llm).run(
            QUESTION, toy_catalog, as_user(in_process_services), on_usage=reported.append
        )

    [usage] = reported
    assert (usage.rounds, usage.tool_calls, usage.answered) == (1, 1, False)
    assert (usage.prompt_tokens, usage.completion_tokens) == totals(llm)


async def test_a_turn_the_model_never_answered_reports_nothing(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.fail(500)
    reported: list[TurnUsage] = []

    with pytest.raises(errors.LlmError):
        await agent_for(llm).run(
            QUESTION, toy_catalog, as_user(in_process_services), on_usage=reported.append
        )

    assert reported == []


@pytest.mark.parametrize(
    "usage",
    [{"prompt_tokens": -5, "completion_tokens": 1}, {"prompt_tokens": "many", "completion_tokens": 1}, []],
)
async def test_a_usage_that_is_not_two_counts_is_taken_as_unreported(
    in_process_services: Services,
    toy_catalog: list[CatalogEntry],
    llm: FakeOpenAI,
    agent_for: AgentFactory,
    usage: Any,
) -> None:
    llm.raw(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
    )

    reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert reply.text == "Hi."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (None, None)
