"""The turn displays driven directly, against the fake Slack over HTTP: what the agent's callbacks
make of late, repeated or concurrent events (the turn-level paths are in test_agent_streamed.py)."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.replies import Thread
from bot.turn_display import EditedDisplay, SlackSurfaces, StreamedDisplay
from mcp_core.agent import ToolCall, ToolProgress
from mcp_core.models import ToolResult
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio

THREAD_TS = "1700000000.000100"


def thread(fake: FakeSlack) -> Thread:
    return Thread(AsyncWebClient(token="xoxb-test", base_url=fake.base_url), "C_TEST", THREAD_TS)


def streamed(fake: FakeSlack) -> StreamedDisplay:
    return StreamedDisplay(thread(fake), TEAM, USER, SlackSurfaces(), None, str)


CALL = ToolCall(id="c1", name="toy__index", arguments={}, entry=None)
DONE = ToolProgress(CALL, "done", result=ToolResult(text="indexed", latency_ms=12))
LATE = ToolProgress(CALL, "running", note="2 of 2")


async def test_a_progress_note_arriving_after_its_call_ended_leaves_the_card_complete(
    fake: FakeSlack,
) -> None:
    display = streamed(fake)
    await display.begin()
    await display.progress(ToolProgress(CALL, "running"))
    await display.progress(DONE)
    await display.progress(LATE)
    await display.finish("Indexed.", streamed=False)

    [stream] = fake.ai.streams.values()
    [card] = stream.tasks().values()
    assert card["status"] == "complete"
    assert card["output"] == "indexed (12 ms)"


async def test_a_late_note_does_not_turn_the_edited_line_back_to_running(fake: FakeSlack) -> None:
    display = EditedDisplay(thread(fake), None)
    await display.begin()
    await display.progress(DONE)
    await display.progress(LATE)
    await display.finish("Indexed.", streamed=False)

    edits = [c["body"]["text"] for c in fake.calls("chat.update")]
    assert not any("2 of 2" in text for text in edits)


async def test_concurrent_cards_and_words_start_one_stream_not_two(fake: FakeSlack) -> None:
    display = streamed(fake)
    await display.begin()
    calls = [ToolCall(id=f"c{n}", name=f"toy__t{n}", arguments={}, entry=None) for n in range(5)]
    await asyncio.gather(
        *(display.progress(ToolProgress(call, "running")) for call in calls), display.text("Working on it. ")
    )
    await display.finish("Done.", streamed=False)

    [stream] = fake.ai.streams.values()
    assert len(stream.tasks()) == 5
    assert stream.text == "Working on it. Done."
