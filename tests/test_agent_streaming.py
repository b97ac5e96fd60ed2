"""The agent reads the model streamed, hands its text on as it comes, and stops when told.

The model is the scripted ``fake_openai`` server, streaming as OpenAI does; tools run in the
toy server (in-process) and tests/servers/overlap.py (a real stdio server that counts the
calls it was told to cancel) through the real registry.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from mcp_core import errors
from mcp_core.agent import STREAM_BROKEN, ToolCall, ToolProgress
from mcp_core.models import CatalogEntry
from mcp_core.services import Services
from tests.support.agents import AgentFactory, as_user
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.registry import TEAM, USER
from tests.test_agent_parallel import overlap_catalog

pytestmark = pytest.mark.anyio

QUESTION = [{"role": "user", "content": "What does the toy server say?"}]
TURN_S = 20.0
SECRET = "tok-8f3a9c1e77b2"


class Pieces:
    """What ``on_text`` was handed, in order."""

    def __init__(self) -> None:
        self.got: list[str] = []

    async def __call__(self, text: str) -> None:
        self.got.append(text)

    @property
    def text(self) -> str:
        return "".join(self.got)


async def test_the_answer_streams_in_pieces_that_end_at_whitespace_and_add_up_to_it(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reply("The toy server says hello to everyone in this channel.")
    pieces = Pieces()

    reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services), on_text=pieces)

    assert pieces.text == reply.text == "The toy server says hello to everyone in this channel."
    assert len(pieces.got) > 1
    assert all(piece[-1].isspace() for piece in pieces.got[:-1])
    assert reply.streamed
    assert llm.requests[0]["stream"] is True
    assert llm.requests[0]["stream_options"] == {"include_usage": True}
    assert reply.usage.prompt_tokens == llm.served_usage[0]["prompt_tokens"]  # from the stream's last chunk


async def test_streamed_tool_calls_are_put_back_together_and_run(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(
        ("toy__echo", {"text": "a fairly long text, sent in many pieces"}), content="Let me check. "
    )
    llm.reply("It echoed.")
    pieces = Pieces()

    reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services), on_text=pieces)

    assert [p.state for p in reply.calls] == ["done"]
    assert reply.calls[0].result is not None
    assert reply.calls[0].result.text == "a fairly long text, sent in many pieces"
    assert pieces.text == "Let me check. It echoed."  # the words before the call too
    assert reply.text == "It echoed."


async def test_a_secret_split_across_stream_chunks_is_redacted_in_every_piece(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.stream_chunk_chars = 3  # the secret arrives in five chunks
    llm.reply(f"Your token is {SECRET} — keep it safe.")
    pieces = Pieces()

    reply = await agent_for(llm).run(
        QUESTION,
        toy_catalog,
        as_user(in_process_services),
        on_text=pieces,
        redact=lambda text: text.replace(SECRET, "[redacted]"),
    )

    assert not any(SECRET[:6] in piece and SECRET not in piece for piece in pieces.got)
    assert SECRET not in pieces.text
    assert "[redacted]" in pieces.text
    assert SECRET not in reply.text


@pytest.mark.parametrize("refused", ["stream", "stream_options"])
async def test_an_endpoint_that_refuses_streaming_is_read_whole_and_the_text_still_goes_out(
    in_process_services: Services, toy_catalog: list[CatalogEntry], agent_for: AgentFactory, refused: str
) -> None:
    async with fake_openai(refuses={refused}) as llm:
        llm.reply("First answer.")
        llm.reply("Second answer.")
        agent = agent_for(llm)
        pieces = Pieces()

        await agent.run(QUESTION, toy_catalog, as_user(in_process_services), on_text=pieces)
        second = await agent.run(QUESTION, toy_catalog, as_user(in_process_services), on_text=pieces)

    assert pieces.text == "First answer.Second answer."
    assert second.streamed
    assert len(llm.requests) == 3  # the refusal is met once, then never again
    assert refused not in llm.requests[-1]
    assert llm.streamed == ([False, False] if refused == "stream" else [True, True])


async def test_a_stream_that_breaks_off_is_an_llm_error_saying_so(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.cut("This answer will not get to its end because the connection drops half-way.")

    with pytest.raises(errors.LlmError) as failed:
        await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services), on_text=Pieces())

    assert str(failed.value) == STREAM_BROKEN


async def test_without_on_text_the_model_is_not_streamed(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reply("Whole.")

    reply = await agent_for(llm).run(QUESTION, toy_catalog, as_user(in_process_services))

    assert reply.text == "Whole."
    assert not reply.streamed
    assert "stream" not in llm.requests[0]


async def test_stop_cancels_the_call_in_flight_tells_its_server_and_says_how_far_the_turn_got(
    services: Services, llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    catalog = await overlap_catalog(services)
    llm.call_tools(("ov__snooze", {"seconds": 0}), ("ov__hold", {"seconds": 60}))
    stop = asyncio.Event()
    seen: list[tuple[str, str]] = []

    async def on_progress(progress: ToolProgress) -> None:
        seen.append((progress.call.name, progress.state))

    async def stop_once_the_server_holds() -> None:
        """ "running" is said before the request is sent: stop once the server has it, so there
        is a request in flight to cancel (each look is a call: 0.4 s apart, under the limit)."""

        async def holding() -> bool:
            return (await services.registry.call(TEAM, USER, "ov__holds", {})).text == "1"

        while ("ov__snooze", "done") not in seen or not await holding():  # noqa: ASYNC110
            await anyio.sleep(0.4)
        stop.set()

    with anyio.fail_after(TURN_S):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stop_once_the_server_holds)
            reply = await agent_for(llm).run(
                QUESTION, catalog, as_user(services), on_progress=on_progress, on_text=Pieces(), stop=stop
            )

    assert reply.stopped
    assert reply.text == "Stopped — ran 1 of 2 tools."
    assert [(p.call.name, p.state) for p in reply.calls] == [("ov__snooze", "done"), ("ov__hold", "stopped")]
    assert seen[-1] == ("ov__hold", "stopped")
    assert len(llm.requests) == 1  # the model is not asked again
    with anyio.fail_after(TURN_S):  # the server was told: its hold call ended as cancelled
        # Each look is a tool call; 0.4 s apart keeps them under the 60-a-minute limit.
        while (await services.registry.call(TEAM, USER, "ov__cancellations", {})).text != "1":  # noqa: ASYNC110
            await anyio.sleep(0.4)


async def test_stop_while_waiting_for_approval_ends_the_wait_and_runs_nothing(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "hi"}))
    stop = asyncio.Event()
    asked = asyncio.Event()
    ran: list[str] = []

    async def ask(call: ToolCall) -> bool:
        asked.set()
        await asyncio.Event().wait()  # nobody clicks
        return True

    async def never(call: ToolCall) -> None:
        ran.append(call.name)
        raise AssertionError("a stopped turn must not run anything")

    async def stop_once_asked() -> None:
        await asked.wait()
        stop.set()

    with anyio.fail_after(TURN_S):
        async with anyio.create_task_group() as group:
            group.start_soon(stop_once_asked)
            reply = await agent_for(llm).run(
                QUESTION, toy_catalog, never, ask_approval=ask, approval=lambda _: True, stop=stop
            )

    assert reply.text == "Stopped — ran 0 of 1 tool."
    assert [p.state for p in reply.calls] == ["stopped"]
    assert ran == []


async def test_stop_while_the_model_is_still_thinking_ends_the_turn(
    in_process_services: Services, toy_catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.stall()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    used: list[object] = []

    with anyio.fail_after(TURN_S):
        reply = await agent_for(llm, timeout_s=60).run(
            QUESTION,
            toy_catalog,
            as_user(in_process_services),
            on_text=Pieces(),
            stop=stop,
            on_usage=used.append,
        )

    assert reply.stopped
    assert reply.text == "Stopped."
    assert reply.calls == []
