"""The scripted OpenAI-compatible server answers like the services it stands for.

Driven by the real ``openai`` client, as the agent drives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.support.fake_openai import VLLM_NO_AUTO_TOOL_CHOICE, FakeOpenAI, fake_openai

pytestmark = pytest.mark.anyio

QUESTION = [{"role": "user", "content": "What is in my calendar today?"}]
TOOL = {"type": "function", "function": {"name": "cal__today", "parameters": {"type": "object"}}}


@pytest.fixture
async def client(llm: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as opened:
        yield opened


async def ask(client: AsyncOpenAI, **extra: Any) -> Any:
    return await client.chat.completions.create(model="m", messages=QUESTION, **extra)  # type: ignore[arg-type]


async def test_every_answer_reports_usage_that_grows_with_the_request(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llm.reply("Two meetings.")
    llm.reply("Two meetings.")

    small = (await ask(client)).usage
    large = (await ask(client, tools=[TOOL] * 20)).usage

    assert small is not None
    assert large is not None
    assert large.prompt_tokens > small.prompt_tokens > 0
    assert small.completion_tokens == large.completion_tokens > 0
    assert small.total_tokens == small.prompt_tokens + small.completion_tokens
    assert [u["prompt_tokens"] for u in llm.served_usage] == [small.prompt_tokens, large.prompt_tokens]


async def test_a_server_that_reports_no_usage_leaves_it_out(llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    llm.reports_usage = False
    llm.reply("Two meetings.")

    assert (await ask(client)).usage is None
    assert llm.served_usage == []


async def test_refusing_tool_choice_answers_auto_like_vllm_and_other_values_by_name() -> None:
    async with (
        fake_openai(refuses={"tool_choice"}) as llm,
        AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as client,
    ):
        llm.reply("Two meetings.")
        with pytest.raises(openai.BadRequestError) as auto:
            await ask(client, tools=[TOOL], tool_choice="auto")
        with pytest.raises(openai.BadRequestError) as none:
            await ask(client, tools=[TOOL], tool_choice="none")
        answered = await ask(client, tools=[TOOL])

    assert auto.value.status_code == 400
    assert VLLM_NO_AUTO_TOOL_CHOICE in auto.value.message
    assert none.value.param == "tool_choice"
    assert answered.choices[0].message.content == "Two meetings."
    assert len(llm.requests) == 3  # refused requests are recorded too
    assert llm.pending == 0


async def test_refusing_parallel_tool_calls_names_the_argument() -> None:
    async with (
        fake_openai(refuses={"parallel_tool_calls"}) as llm,
        AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as client,
    ):
        llm.reply("Two meetings.")
        with pytest.raises(openai.BadRequestError) as refused:
            await ask(client, tools=[TOOL], parallel_tool_calls=True)
        answered = await ask(client, tools=[TOOL], tool_choice="auto")

    assert "Unrecognized request argument supplied: parallel_tool_calls" in refused.value.message
    assert answered.choices[0].message.content == "Two meetings."


async def test_refusing_tools_refuses_any_request_that_has_them() -> None:
    async with (
        fake_openai(refuses={"tools"}) as llm,
        AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as client,
    ):
        llm.reply("Two meetings.")
        with pytest.raises(openai.BadRequestError):
            await ask(client, tools=[TOOL])
        answered = await ask(client)

    assert answered.choices[0].message.content == "Two meetings."


def test_only_known_parameters_can_be_refused() -> None:
    with pytest.raises(ValueError, match="can refuse only"):
        FakeOpenAI(refuses={"temperature"})
