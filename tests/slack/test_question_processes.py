"""A server's question mid-call answered on another process than the one running the call:
real `slack-mcp-bot run --http` processes on one PostgreSQL, the fake Slack, the scripted
OpenAI server and tests/servers/asking.py over stdio (spawned by the process that calls it).

The click on *Answer* and the modal's Submit reach process B; the call runs on A. B opens the
form the asking process kept (sealed) in the database, checks the answer as A would, and hands
it over; A sends it to the server, whose result reaches the model. Someone else's click is
refused on B too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from bot import texts
from mcp_core.models import NewConnection
from tests.support.fake_slack import FORM, TEAM_ID, FakeSlack, post_signed, view_submission_body
from tests.support.in_process import ASKING
from tests.support.registry import make_settings, open_services

from .test_agent_questions import CALLBACK, TRIP_STATE, buttons
from .test_process import _stop
from .test_turn_resume import click, wait_told
from .test_turn_takeover import KEYS, SECRET, USER, WAIT_S, World, fake, world

__all__ = ["fake"]

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def add_asking(w: World) -> None:
    settings = make_settings(w.tmp_path / "data", database_url=w.database_url, credential_keys=KEYS)
    async with open_services(settings) as services:
        new = NewConnection(name="asking", transport="stdio", command=sys.executable, args=[str(ASKING)])
        outcome = await services.registry.add_connection(TEAM_ID, USER, new)
        assert outcome.error is None, outcome.error


async def posted(w: World, start: str) -> dict[str, Any]:
    with anyio.fail_after(WAIT_S):
        while not (found := [b for b, _ in w.posts.made if str(b.get("text", "")).startswith(start)]):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return found[0]


async def edited_to(w: World, ts: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(WAIT_S):
        while True:
            edits = [c["body"] for c in w.fake.calls("chat.update") if c["body"].get("ts") == ts]
            if done := [e for e in edits if e.get("text") == text]:
                return done[-1]
            await anyio.sleep(0.05)


async def test_a_servers_question_answered_on_the_other_process_reaches_the_server(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        await add_asking(w)
        a, b = w.start(), w.start()
        try:
            w.llm.call_tools(("asking__ask", {"form": "trip"}))
            w.llm.reply("Booked.")
            event = await w.mention(a, "plan my trip")
            question = await posted(w, "🙋")
            question_id = buttons(question)["mcp_question_open"]

            stranger = await wait_told(
                w, await click(w, b, question_id, action="mcp_question_open", user="U0MALLORY")
            )
            await click(w, b, question_id, action="mcp_question_open")
            [opened] = await anyio.to_thread.run_sync(lambda: w.fake.wait_for("views.open"))
            body = view_submission_body(
                CALLBACK, TRIP_STATE, user_id=USER, team_id=TEAM_ID, private_metadata=question_id
            )
            status, _, _ = await post_signed(b.url, body, FORM, SECRET)
            assert status == 200
            answer = await edited_to(w, w.progress_ts(event["ts"]), "Booked.")
        finally:
            output_a, _ = _stop(a.process)
            output_b, _ = _stop(b.process)

    assert stranger == [texts.question_not_yours(USER)]
    labels = [blk["label"]["text"] for blk in opened["body"]["view"]["blocks"] if blk["type"] == "input"]
    assert labels[:3] == ["Destination", "Travellers", "Budget (EUR)"]  # the form, opened on B
    [result] = [m["content"] for m in w.llm.requests[-1]["messages"] if m.get("role") == "tool"]
    assert result.startswith("accept")
    assert "Porto" in result
    assert "Thinking" not in json.dumps(answer)
    assert "Traceback" not in output_a + output_b
