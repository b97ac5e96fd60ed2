"""Stopping a turn: the progress message's Stop button and Slack's native Stop (agent sessions).

Served like production (signed HTTP), tools in the real toy server: a stopped turn cancels the
call in flight, answers with how far it got, and only the asker can stop it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.slack.agent_harness import (
    TURN_S,
    Bot,
    agent_bot,
    approval_question,
    approval_value,
    mention,
    updates,
)
from tests.slack.conftest import USER, USER_B, listeners_done
from tests.support.fake_slack import FakeSlack, agent_session_stopped_event

pytestmark = pytest.mark.anyio


def stop_value(post: dict[str, Any]) -> str:
    [stop] = [b for b in post["blocks"] if b.get("block_id") == "stop"]
    [button] = stop["elements"]
    assert button["action_id"] == "mcp_agent_stop"
    return str(button["value"])


async def answer_of(bot: Bot, fake: FakeSlack, progress_ts: str, starts: str) -> dict[str, Any]:
    """The progress message's edit that starts with ``starts`` (waited for)."""
    with anyio.fail_after(TURN_S):
        while not (found := [u for u in updates(fake, progress_ts) if u["text"].startswith(starts)]):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    await listeners_done(TURN_S)
    return found[-1]


async def slow_call_running(bot: Bot, fake: FakeSlack) -> tuple[dict[str, Any], str]:
    """USER asks; the model calls toy__slow (may write: asked first), USER approves, it runs.
    Returns the progress message's post and its ts."""
    bot.llm.call_tools(("toy__slow", {"seconds": 60}))
    await bot.slack.event(mention("take your time"))
    question = await approval_question(bot, fake)
    await bot.slack.click("mcp_agent_approve", approval_value(question))
    progress_ts = bot.posts.ts_of("🤔")
    with anyio.fail_after(TURN_S):
        while not any("`toy__slow` …" in u["text"] for u in updates(fake, progress_ts)):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    [post] = [body for body, ts in bot.posts.made if ts == progress_ts]
    return post, progress_ts


async def test_the_askers_stop_button_cancels_the_running_call_and_says_how_far_it_got(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        post, progress_ts = await slow_call_running(bot, fake)
        [running] = [u for u in updates(fake, progress_ts) if "`toy__slow` …" in u["text"]]
        assert stop_value(running) == stop_value(post)  # the button stays while it works

        stranger = await bot.slack.click("mcp_agent_stop", stop_value(post), user=USER_B)
        [refusal] = await bot.slack.replies(stranger)
        assert refusal["text"] == "Only the person who asked can stop this."

        await bot.slack.click("mcp_agent_stop", stop_value(post))
        answer = await answer_of(bot, fake, progress_ts, "Stopped")

        late = await bot.slack.click("mcp_agent_stop", stop_value(post))
        [gone] = await bot.slack.replies(late)

    assert answer["text"] == "Stopped — ran 0 of 1 tool."
    assert "mcp_agent_stop" not in str(answer["blocks"])  # the answer has no Stop button
    assert "`toy__slow` stopped" in str(answer["blocks"])
    assert len(bot.llm.requests) == 1  # the model was not asked again
    assert gone["text"].startswith("This answer has already finished")


async def test_stop_while_a_question_waits_closes_the_question_and_keeps_what_ran(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "first"}), ("toy__slow", {"seconds": 60}))
        event = mention("echo, then take your time")
        await bot.slack.event(event)
        question = await approval_question(bot, fake)
        progress_ts = bot.posts.ts_of("🤔")
        question_ts = bot.posts.ts_of(question["text"][:10])

        await bot.slack.event(agent_session_stopped_event(USER, thread_ts=event["ts"]))
        answer = await answer_of(bot, fake, progress_ts, "Stopped")

    assert answer["text"] == "Stopped — ran 1 of 2 tools."
    assert [u["text"] for u in updates(fake, question_ts)] == ["⏹️ Stopped: `toy__slow` was not run."]


async def test_slacks_stop_from_someone_else_stops_nothing_and_tells_only_them(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        post, progress_ts = await slow_call_running(bot, fake)
        thread = str(post["thread_ts"])

        await bot.slack.event(agent_session_stopped_event(USER_B, thread_ts=thread))
        [told] = await fake.await_for("chat.postEphemeral", 1, timeout_s=TURN_S)
        assert not any(u["text"].startswith("Stopped") for u in updates(fake, progress_ts))

        await bot.slack.event(agent_session_stopped_event(USER, thread_ts=thread))
        answer = await answer_of(bot, fake, progress_ts, "Stopped")

    assert told["body"]["user"] == USER_B
    assert told["body"]["text"] == f"Only <@{USER}>, who asked, can stop this answer."
    assert answer["text"] == "Stopped — ran 0 of 1 tool."
