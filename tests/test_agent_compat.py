"""The agent against OpenAI-compatible servers that lack part of the API (vLLM, Ollama setups).

``fake_openai(refuses=…)`` answers HTTP 400 as such a server does; tools run in the toy server
(served in-process) through the real registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcp_core import errors
from mcp_core.agent import TOOLS_REFUSED
from mcp_core.models import CatalogEntry
from mcp_core.services import Services
from tests.support.agents import AgentFactory, as_user
from tests.support.fake_openai import VLLM_NO_AUTO_TOOL_CHOICE, FakeOpenAI, fake_openai

pytestmark = pytest.mark.anyio

QUESTION = [{"role": "user", "content": "Echo hi, please."}]


@pytest.fixture
async def vllm() -> AsyncIterator[FakeOpenAI]:
    """A server refusing ``tool_choice``, as vLLM without ``--enable-auto-tool-choice`` does."""
    async with fake_openai(refuses={"tool_choice"}) as fake:
        yield fake


def sent(llm: FakeOpenAI, parameter: str) -> list[bool]:
    return [parameter in request for request in llm.requests]


async def test_a_server_refusing_tool_choice_is_asked_again_without_it_and_never_sent_it_again(
    in_process_services: Services, toy_catalog: list[CatalogEntry], vllm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    agent = agent_for(vllm)
    vllm.call_tools(("toy__echo", {"text": "hi"}))
    vllm.reply("It said hi.")
    vllm.reply("Hello again.")

    first = await agent.run(QUESTION, toy_catalog, as_user(in_process_services))
    second = await agent.run(QUESTION, toy_catalog, as_user(in_process_services))

    assert (first.text, second.text) == ("It said hi.", "Hello again.")
    assert [p.state for p in first.calls] == ["done"]
    assert sent(vllm, "tool_choice") == [True, False, False, False]  # refused once, then left out
    assert all(request.get("tools") for request in vllm.requests)


async def test_without_tool_choice_the_last_round_offers_no_tools_and_its_calls_are_ignored(
    in_process_services: Services, toy_catalog: list[CatalogEntry], vllm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    vllm.call_tools(("toy__echo", {"text": "a"}))
    vllm.call_tools(("toy__echo", {"text": "b"}), content="What I found: a.")  # the last round

    reply = await agent_for(vllm, max_steps=1).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert reply.text == "What I found: a."
    assert [p.call.arguments for p in reply.calls] == [{"text": "a"}]
    refused, asked, last = vllm.requests
    assert "tool_choice" in refused
    assert asked["tools"]
    assert "tool_choice" not in asked
    assert "tools" not in last
    assert "tool_choice" not in last


async def test_parallel_tool_calls_is_never_sent_so_servers_without_it_answer_several_calls(
    in_process_services: Services, toy_catalog: list[CatalogEntry], agent_for: AgentFactory
) -> None:
    async with fake_openai(refuses={"parallel_tool_calls"}) as llm:
        llm.call_tools(("toy__echo", {"text": "one"}), ("toy__echo", {"text": "two"}))
        llm.reply("Both echoed.")

        reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert reply.text == "Both echoed."
    assert [p.state for p in reply.calls] == ["done", "done"]
    assert sent(llm, "parallel_tool_calls") == [False, False]  # no request was refused


async def test_a_server_refusing_tools_altogether_says_so_without_echoing_it(
    in_process_services: Services, toy_catalog: list[CatalogEntry], agent_for: AgentFactory
) -> None:
    async with fake_openai(refuses={"tools"}) as llm:
        with pytest.raises(errors.LlmError) as caught:
            await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert str(caught.value) == TOOLS_REFUSED
    assert VLLM_NO_AUTO_TOOL_CHOICE not in str(caught.value)
    assert sent(llm, "tool_choice") == [True, False]  # left out once, then given up


async def test_another_bad_request_is_not_retried_and_its_text_is_not_shown(
    llm: FakeOpenAI, toy_catalog: list[CatalogEntry], in_process_services: Services, agent_for: AgentFactory
) -> None:
    llm.fail(400, f"This model's maximum context length is 8192 tokens (key {llm.api_key})")

    with pytest.raises(errors.LlmError) as caught:
        await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert str(caught.value) == "The language model answered with an error (HTTP 400). Try again in a moment."
    assert len(llm.requests) == 1
