"""A question is open on every process: real `slack-mcp-bot run --http` processes, the fake
Slack, the scripted OpenAI server and the toy MCP server over HTTP (which counts its runs).

The click reaches another process than the one that asked — or the asking process was killed
while it waited — and the turn goes on where the click landed: the tool runs once, the model
reads its result, and the same progress message becomes the answer. Nothing says "I was
restarted", nothing runs twice, and a click by someone else changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from bot import texts
from mcp_core.store import create_engine
from mcp_core.store._tables import turns
from tests.slack.agent_harness import approval_value
from tests.support.fake_slack import FORM, TEAM_ID, FakeSlack, block_actions_body, post_signed

from .test_process import _stop
from .test_turn_takeover import SECRET, SLOW, USER, WAIT_S, Bot, World, fake, kill, world

__all__ = ["fake"]

pytestmark = pytest.mark.anyio

ANSWER = "The slow thing is done."


async def question(w: World, before: int = 0) -> dict[str, Any]:
    """The next Approve/Deny question posted in any thread."""
    with anyio.fail_after(WAIT_S):
        while True:
            asked = [body for body, _ in w.posts.made if "may I run" in str(body.get("text"))]
            if len(asked) > before:
                return asked[before]
            await anyio.sleep(0.05)


async def click(
    w: World, bot: Bot, value: str, *, action: str = "mcp_agent_approve", user: str = USER
) -> str:
    """Click ``action`` on ``bot``; the response_url's name, to read what the clicker was told."""
    name = f"{action}-{user}-{bot.url.rsplit(':', 1)[-1].split('/')[0]}"
    body = block_actions_body(
        action,
        value,
        user_id=user,
        team_id=TEAM_ID,
        channel_id="C_TEST",
        response_url=w.fake.response_url(name),
    )
    status, _, _ = await post_signed(bot.url, body, FORM, SECRET)
    assert status == 200
    return name


async def answered(w: World, thread_ts: str) -> dict[str, Any]:
    """The progress message's edit that carries the answer."""
    ts = w.progress_ts(thread_ts)
    with anyio.fail_after(WAIT_S):
        while True:
            edits = [c["body"] for c in w.fake.calls("chat.update") if c["body"].get("ts") == ts]
            done = [e for e in edits if ANSWER in json.dumps(e)]
            if done:
                return done[-1]
            await anyio.sleep(0.05)


def told(w: World, name: str) -> list[str]:
    return [str(c["body"].get("text")) for c in w.fake.calls(f"/respond/{name}")]


async def wait_told(w: World, name: str) -> list[str]:
    await anyio.to_thread.run_sync(lambda: w.fake.wait_for(f"/respond/{name}"))
    return told(w, name)


def _url(w: World) -> str:
    return w.database_url or f"sqlite+aiosqlite:///{(w.tmp_path / 'data' / 'slack-mcp-bot.db').resolve()}"


async def question_row(w: World, question_id: str, *, owner_is: str | None = None) -> None:
    """Wait until the turn's row holds the question (and, with ``owner_is``, that owner: ''
    once a sweeper parked a dead process's turn until its question expires)."""
    engine = create_engine(_url(w))
    try:
        with anyio.fail_after(WAIT_S):
            while True:
                async with engine.connect() as conn:
                    owners = (
                        (await conn.execute(sa.select(turns.c.owner).where(turns.c.question == question_id)))
                        .scalars()
                        .all()
                    )
                if owners and (owner_is is None or owners[0] == owner_is):
                    return
                await anyio.sleep(0.1)
    finally:
        await engine.dispose()


async def asked_and_kept(w: World, bot: Bot) -> tuple[dict[str, Any], dict[str, Any]]:
    """A mention on ``bot`` whose `slow` call is asked about, once its question is in the
    database: the mention event and the question's post."""
    w.llm.call_tools((SLOW, {"seconds": 0.1}))
    w.llm.reply(ANSWER)
    event = await w.mention(bot, "run the slow thing")
    asked = await question(w)
    await question_row(w, approval_value(asked).partition(".")[0])
    return event, asked


def question_edits(w: World, asked_ts: str) -> list[str]:
    return [
        str(c["body"].get("text")) for c in w.fake.calls("chat.update") if c["body"].get("ts") == asked_ts
    ]


def asked_ts(w: World, asked: dict[str, Any]) -> str:
    [ts] = [ts for body, ts in w.posts.made if body is asked]
    return ts


def tool_results_read(w: World) -> list[str]:
    """What the model read back of tool calls, over every request it got."""
    return [
        str(m.get("content"))
        for request in w.llm.requests
        for m in request["messages"]
        if m.get("role") == "tool"
    ]


@pytest.mark.postgres
async def test_an_approve_click_on_the_other_process_continues_the_turn_there_and_the_tool_runs_once(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        a, b = w.start(), w.start()
        try:
            w.llm.call_tools((SLOW, {"seconds": 0.1}))
            w.llm.reply(ANSWER)
            event = await w.mention(a, "run the slow thing")
            asked = await question(w)
            value = approval_value(asked)
            stranger = await click(w, b, value, user="U0MALLORY")
            refused = await wait_told(w, stranger)
            await click(w, b, value, action="mcp_agent_arguments")  # read from the sealed checkpoint
            shown = await anyio.to_thread.run_sync(lambda: w.fake.wait_for("views.open"))
            await click(w, b, value)
            final = await answered(w, event["ts"])
            again = await click(w, a, value)  # a second click, on the asking process
            late = await wait_told(w, again)
            runs = await w.slow_calls()
            await anyio.sleep(1.0)  # the asking process has let the turn go: it writes nothing more
        finally:
            out_a, _ = _stop(a.process)
            out_b, _ = _stop(b.process)

    assert refused == [texts.APPROVAL_NOT_YOURS]
    assert f"Arguments of `{SLOW}`" in json.dumps(shown)
    assert '\\"seconds\\": 0.1' in json.dumps(shown)
    assert late == [texts.APPROVAL_GONE]
    assert runs == 1
    assert len(w.llm.requests) == 2
    assert len(tool_results_read(w)) == 1  # the resumed turn gave the model the call's result
    assert "Thinking" not in json.dumps(final)
    assert question_edits(w, asked_ts(w, asked)) == [texts.approval_outcome(SLOW, USER, "approved", "toy")]
    assert not [t for t in w.thread_posts(event["ts"]) if t.startswith("⚠️ I was restarted")]
    assert "Traceback" not in out_a + out_b


@pytest.mark.postgres
async def test_a_process_killed_while_asking_keeps_the_question_open_and_a_click_elsewhere_goes_on(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        a, b = w.start(), w.start()
        try:
            w.llm.call_tools((SLOW, {"seconds": 0.1}))
            w.llm.reply(ANSWER)
            event = await w.mention(a, "run the slow thing")
            asked = await question(w)
            value = approval_value(asked)
            await question_row(w, value.partition(".")[0])
            kill(a)
            await question_row(w, value.partition(".")[0], owner_is="")  # b's sweeper kept it waiting
            await click(w, b, value)
            final = await answered(w, event["ts"])
            runs = await w.slow_calls()
        finally:
            if a.process.poll() is None:
                kill(a)
            out_b, _ = _stop(b.process)

    assert runs == 1
    assert "Thinking" not in json.dumps(final)
    assert not [t for t in w.thread_posts(event["ts"]) if t.startswith("⚠️ I was restarted")]
    assert question_edits(w, asked_ts(w, asked)) == [texts.approval_outcome(SLOW, USER, "approved", "toy")]
    assert "Traceback" not in out_b


async def test_a_deny_after_a_sqlite_restart_goes_on_and_the_model_is_told_nothing_ran(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=False) as w:
        first = w.start()
        try:
            event, asked = await asked_and_kept(w, first)
        finally:
            kill(first)
        second = w.start()
        try:
            await click(w, second, approval_value(asked), action="mcp_agent_deny")
            final = await answered(w, event["ts"])
            runs = await w.slow_calls()
        finally:
            out, _ = _stop(second.process)

    assert runs == 0
    assert any("denied" in result for result in tool_results_read(w))
    assert "Thinking" not in json.dumps(final)
    assert question_edits(w, asked_ts(w, asked)) == [texts.approval_outcome(SLOW, USER, "denied", "toy")]
    assert not [t for t in w.thread_posts(event["ts"]) if t.startswith("⚠️ I was restarted")]
    assert "Traceback" not in out


async def streamed_answer(w: World) -> None:
    """Until a stream that carries ANSWER was stopped (the answer is whole)."""

    def done() -> bool:
        return any(s.state == "stopped" and ANSWER in s.text for s in w.fake.ai.streams.values())

    with anyio.fail_after(WAIT_S):
        while not done():  # noqa: ASYNC110  # another process's calls: nothing to wait on
            await anyio.sleep(0.05)


@pytest.mark.postgres
async def test_a_streamed_turn_approved_on_the_other_process_streams_its_answer_and_card_from_there(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        a, b = w.start(SLACK_STREAMING="true"), w.start(SLACK_STREAMING="true")
        try:
            w.llm.call_tools((SLOW, {"seconds": 0.1}), content="Let me check that. ")
            w.llm.reply(ANSWER)
            event = await w.mention(a, "run the slow thing")
            asked = await question(w)
            await click(w, b, approval_value(asked))
            await streamed_answer(w)
            runs = await w.slow_calls()
        finally:
            out_a, _ = _stop(a.process)
            out_b, _ = _stop(b.process)

    first, second = sorted(w.fake.ai.streams.values(), key=lambda s: float(s.ts))
    assert first.text == "Let me check that. "  # A's stream, stopped before it asked
    assert first.state == "stopped"
    assert second.text == ANSWER  # B's, below the question
    assert second.thread_ts == event["ts"]
    assert [card["status"] for card in second.tasks().values()] == ["complete"]
    assert runs == 1
    assert w.fake.ai.sessions[(event["channel"], event["ts"])].history[-1] == "closed"
    assert "Traceback" not in out_a + out_b


async def test_a_sigterm_while_asking_keeps_the_question_and_the_next_start_goes_on_with_it(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=False) as w:
        first = w.start(TURN_DRAIN_S="1")
        try:
            event, asked = await asked_and_kept(w, first)
        finally:
            out_first, _ = _stop(first.process)  # SIGTERM: the drain lets the waiting turn go
        assert first.process.returncode == 0, out_first
        second = w.start()
        try:
            await click(w, second, approval_value(asked))
            final = await answered(w, event["ts"])
            runs = await w.slow_calls()
        finally:
            out_second, _ = _stop(second.process)

    assert runs == 1
    assert "Thinking" not in json.dumps(final)
    assert question_edits(w, asked_ts(w, asked)) == [texts.approval_outcome(SLOW, USER, "approved", "toy")]
    assert not [t for t in w.thread_posts(event["ts"]) if t.startswith("⚠️ I was restarted")]
    assert "Traceback" not in out_first + out_second
