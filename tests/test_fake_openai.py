"""The scripted OpenAI-compatible server answers like the services it stands for.

Driven by the real ``openai`` client, as the agent drives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.support.fake_openai import (
    VLLM_NO_AUTO_TOOL_CHOICE,
    FakeOpenAI,
    fake_openai,
    text_answer,
    tool_answer,
)

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


async def test_a_streamed_answer_comes_as_chunks_that_add_up_to_the_text_and_the_usage(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llm.reply("Two meetings: standup at 9 and a review at 3.")

    stream = await ask(client, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Two meetings: standup at 9 and a review at 3."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # really in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == llm.served_usage[0]["total_tokens"]
    assert llm.streamed == [True]


async def test_a_streamed_tool_call_comes_as_its_name_then_its_arguments_in_pieces(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llm.call_tools(("cal__today", {"calendar": "work", "day": "2026-12-04"}), ("cal__next", {}))

    stream = await ask(client, tools=[TOOL], stream=True)
    pieces = [
        tc
        for c in [chunk async for chunk in stream]
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
    ]

    first = [p for p in pieces if p.index == 0]
    assert first[0].id
    assert first[0].function.name == "cal__today"
    assert first[0].function.arguments == ""
    assert "".join(p.function.arguments or "" for p in first) == '{"calendar": "work", "day": "2026-12-04"}'
    assert len(first) > 3
    assert [p.function.name for p in pieces if p.index == 1 and p.function.name] == ["cal__next"]


async def test_a_stream_without_include_usage_has_no_usage_chunk(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llm.reply("Nothing today.")

    chunks = [chunk async for chunk in await ask(client, stream=True)]

    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


async def test_stream_options_without_stream_is_refused_as_the_real_api_does(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="only allowed when 'stream' is enabled"):
        await ask(client, stream_options={"include_usage": True})


async def test_a_cut_stream_breaks_off_without_its_end(llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    llm.cut("A long answer that never gets to its end, because the connection drops.")

    stream = await ask(client, stream=True)
    seen: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):  # what the agent meets
        await read()
    assert (
        0
        < len("".join(seen))
        < len("A long answer that never gets to its end, because the connection drops.")
    )


async def test_refusing_stream_and_stream_options_names_them() -> None:
    async with fake_openai(refuses={"stream_options"}) as llm:
        client = AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0)
        with pytest.raises(openai.BadRequestError, match="stream_options"):
            await ask(client, stream=True, stream_options={"include_usage": True})
        llm.reply("ok")
        assert [c async for c in await ask(client, stream=True)]
        await client.close()


async def test_a_responder_answers_each_request_from_its_own_messages_after_the_queue(
    llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    def per_request(body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return text_answer(f"Answered after {last['content']}.")
        return tool_answer(("cal__today", {"who": last["content"]}))

    llm.reply("From the queue.")
    llm.answer_with(per_request)

    queued = await ask(client)
    called = await ask(client)
    [call] = called.choices[0].message.tool_calls or []
    tool_result = {"role": "tool", "tool_call_id": call.id, "content": "two meetings"}
    assistant = {"role": "assistant", "tool_calls": [call.model_dump()]}
    messages = [*QUESTION, assistant, tool_result]
    answered = await client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    llm.answer_with(None)

    assert queued.choices[0].message.content == "From the queue."
    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "cal__today"
    assert call.function.arguments == '{"who": "What is in my calendar today?"}'
    assert answered.choices[0].message.content == "Answered after two meetings."
    with pytest.raises(openai.InternalServerError, match="no answer scripted"):
        await ask(client)
