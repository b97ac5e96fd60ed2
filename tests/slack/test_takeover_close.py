"""Closing a dead process's turn whose row names no message: the process died between Slack's
answer to the turn's progress message and the write of its ts. The thread's bot message that
still says only "Thinking…" is found and closed; nothing else in the thread is touched."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts
from bot.takeover import interrupted_turns
from mcp_core.turn_journal import TurnCall, TurnRow
from tests.support.fake_slack import BOT_ID, TEAM_ID, FakeSlack

pytestmark = pytest.mark.anyio


async def test_a_turn_without_recorded_messages_has_its_thinking_message_found_and_closed(
    fake: FakeSlack,
) -> None:
    fake.messages["C_TEST"] = [
        {"type": "message", "user": "U0ALICE", "ts": "100.000001", "text": "<@U_BOT> run it"},
        {
            "type": "message",
            "bot_id": BOT_ID,
            "ts": "100.000002",
            "thread_ts": "100.000001",
            "text": "Done before.",
        },
        {
            "type": "message",
            "user": "U0BOB",
            "ts": "100.000003",
            "thread_ts": "100.000001",
            "text": texts.THINKING,
        },
        {
            "type": "message",
            "bot_id": BOT_ID,
            "ts": "100.000004",
            "thread_ts": "100.000001",
            "text": texts.THINKING,
        },
    ]
    close = interrupted_turns(AsyncWebClient(token="xoxb-test", base_url=fake.base_url), sessions=False)
    turn = TurnRow("t1", TEAM_ID, "U0ALICE", "C_TEST", "100.000001", calls=[TurnCall("toy__slow")])

    assert await close(turn) is None

    edits = [c["body"] for c in fake.calls("chat.update")]
    assert [(e["ts"], e["text"]) for e in edits] == [("100.000004", texts.INTERRUPTED)]
    [notice] = [c["body"] for c in fake.calls("chat.postMessage")]
    assert notice["thread_ts"] == "100.000001"
