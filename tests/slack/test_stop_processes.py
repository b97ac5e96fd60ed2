"""A Stop lands on another process than the one running the turn: real `slack-mcp-bot run
--http` processes on one PostgreSQL, the fake Slack, the scripted OpenAI server and the toy
MCP server over HTTP.

Behind a load balancer a click (or Slack's own Stop) reaches whichever process Slack's request
went to. The turn still stops where it runs, as if clicked there: the call in flight is
cancelled and the progress message says how far it got; someone else's Stop changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from bot import texts
from mcp_core.store._turns import LIVE_STATES
from tests.support.fake_slack import (
    JSON,
    TEAM_ID,
    FakeSlack,
    agent_session_stopped_event,
    event_body,
    post_signed,
)

from .test_process import _stop
from .test_turn_resume import click, told, wait_told
from .test_turn_takeover import SECRET, SLOW, USER, WAIT_S, World, fake, turn_rows_until, world

__all__ = ["fake"]

pytestmark = pytest.mark.anyio

STRANGER = "U0MALLORY"


def stop_value(post: dict[str, Any]) -> str:
    [stop] = [b for b in post.get("blocks", []) if b.get("block_id") == "stop"]
    return str(stop["elements"][0]["value"])


async def stopped_answer(w: World, progress_ts: str) -> dict[str, Any]:
    with anyio.fail_after(WAIT_S):
        while True:
            edits = [c["body"] for c in w.fake.calls("chat.update") if c["body"].get("ts") == progress_ts]
            done = [e for e in edits if str(e.get("text")).startswith("Stopped")]
            if done:
                return done[-1]
            await anyio.sleep(0.05)


async def turns_ended(w: World) -> None:
    """Wait until no turn is live in the database (the stopped one wrote its end)."""
    await turn_rows_until(w, lambda rows: not [r for r in rows if r["state"] in LIVE_STATES])


async def slow_turn(w: World, bot: Any, text: str, questions_before: int) -> tuple[dict[str, Any], str]:
    """A turn on ``bot`` inside its slow call; the mention event and the progress message's ts."""
    w.llm.call_tools((SLOW, {"seconds": 60}))
    event = await w.mention(bot, text)
    await w.approve_next_question(bot, questions_before)
    await w.slow_calls(at_least=questions_before + 1)
    return event, w.progress_ts(event["ts"])


@pytest.mark.postgres
async def test_a_stop_that_lands_on_the_other_process_stops_the_turn_where_it_runs(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        a, b = w.start(), w.start()
        try:
            _, progress_ts = await slow_turn(w, a, "run the slow thing", 0)
            [post] = [body for body, ts in w.posts.made if ts == progress_ts]
            value = stop_value(post)

            stranger = await wait_told(w, await click(w, b, value, action="mcp_agent_stop", user=STRANGER))
            mine = await click(w, b, value, action="mcp_agent_stop")
            answer = await stopped_answer(w, progress_ts)
            told_asker = told(w, mine)
            await turns_ended(w)
            late = await wait_told(w, await click(w, b, value, action="mcp_agent_stop"))

            # Slack's own Stop (agent_session_stopped) on the other process, for a second turn
            second, second_ts = await slow_turn(w, a, "run it again", 1)
            foreign = agent_session_stopped_event(STRANGER, thread_ts=second["ts"])
            status, _, _ = await post_signed(b.url, event_body(foreign, team_id=TEAM_ID), JSON, SECRET)
            assert status == 200
            native = agent_session_stopped_event(USER, thread_ts=second["ts"])
            status, _, _ = await post_signed(b.url, event_body(native, team_id=TEAM_ID), JSON, SECRET)
            assert status == 200
            second_answer = await stopped_answer(w, second_ts)
            runs = await w.slow_calls()
        finally:
            output_a, _ = _stop(a.process)
            output_b, _ = _stop(b.process)

    assert stranger == [texts.STOP_NOT_YOURS]
    assert answer["text"] == "Stopped — ran 0 of 1 tool."
    assert "`toy__slow` stopped" in json.dumps(answer["blocks"])
    assert told_asker == []  # nothing to say to the asker: the answer says it
    assert late[-1] == texts.STOP_GONE
    assert second_answer["text"] == "Stopped — ran 0 of 1 tool."
    refusals = [c["body"] for c in w.fake.calls("chat.postEphemeral") if c["body"].get("user") == STRANGER]
    assert [r["text"] for r in refusals] == [texts.stop_not_yours(USER)]
    assert runs == 2  # each call ran once; nothing was run again
    assert len(w.llm.requests) == 2  # one model round per turn: stopped turns ask nothing more
    assert "Traceback" not in output_a + output_b
