"""Agent turns in Slack: a mention or DM → the thread gets progress, Approve/Deny and the answer.

The bot is served like production (signed HTTP into ``http_app``), its Web API client points
at the fake Slack and its OpenAI client at the scripted ``fake_openai`` server; tools run in
the real toy stdio server through the real registry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mcp_core.services import build_services
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, serve, slack_settings
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.fake_slack import BOT_USER_ID, FakeSlack, app_mention_event, message_im_event
from tests.support.in_process import InProcessServers
from tests.support.registry import toy

pytestmark = pytest.mark.anyio

SECRET = "toy-secret-5b7c9d1e"


@asynccontextmanager
async def agent_bot(
    tmp_path: Path, fake: FakeSlack, **overrides: Any
) -> AsyncIterator[tuple[SlackDriver, FakeOpenAI]]:
    """The bot with an LLM, USER owning the toy server (a secret in its env), USER_B another."""
    async with fake_openai() as llm:
        settings = slack_settings(
            tmp_path, fake, openai_api_key=llm.api_key, openai_base_url=llm.base_url, **overrides
        )
        services = await build_services(settings, open_transport=InProcessServers())
        try:
            assert services.credentials is not None
            ref = await services.credentials.put(TEAM, USER, {"env:TOY_SECRET": SECRET})
            await services.registry.add_connection(
                TEAM, USER, toy("toy").model_copy(update={"credential_ref": ref})
            )
            await services.registry.add_connection(TEAM, USER_B, toy("bobs"))
            async with serve(services) as url:
                yield SlackDriver(url, fake, services), llm
        finally:
            await services.aclose()


async def turn_done(llm: FakeOpenAI) -> None:
    """Wait until the model has been asked everything scripted and the listener has finished."""
    await llm.drained()
    await listeners_done()


def approval_value(post: dict[str, Any]) -> str:
    blocks = post["body"]["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return blocks[1]["elements"][0]["value"]


async def test_a_mention_is_answered_in_its_thread_with_the_askers_tools_only(
    tmp_path: Path, fake: FakeSlack
) -> None:
    mention = app_mention_event(f"<@{BOT_USER_ID}> echo hi please", user_id=USER)
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.call_tools(("toy__echo", {"text": "hi"}))
        llm.reply("The toy server said *hi*.")
        await slack.event(mention)
        await turn_done(llm)

    [progress] = fake.calls("chat.postMessage")
    assert progress["body"]["thread_ts"] == mention["ts"]
    answer = fake.calls("chat.update")[-1]["body"]  # the progress message, turned into the answer
    assert answer["text"] == "The toy server said *hi*."
    assert "Tools: ✅ `toy__echo`" in json.dumps(answer["blocks"], ensure_ascii=False)
    first = llm.requests[0]
    assert first["messages"][-1] == {"role": "user", "content": "echo hi please"}
    names = {tool["function"]["name"] for tool in first["tools"]}
    assert "toy__echo" in names
    assert not any(name.startswith("bobs__") for name in names)  # another user's connection
    assert llm.requests[1]["messages"][-1]["content"] == "hi"


async def test_the_thread_is_the_conversation_and_the_progress_message_is_left_out(
    tmp_path: Path, fake: FakeSlack
) -> None:
    root = "1700000000.000100"
    fake.messages["C_TEST"] = [
        {"type": "message", "user": USER, "ts": root, "text": f"<@{BOT_USER_ID}> what is 2+3?"},
        {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": "B_BOT",
            "ts": "1700000000.000200",
            "thread_ts": root,
            "text": "5.",
        },
        {"type": "message", "user": USER_B, "ts": "1700000000.000300", "thread_ts": root, "text": "nice"},
    ]
    mention = app_mention_event(
        f"<@{BOT_USER_ID}> and times 4?", user_id=USER, ts="1700000000.000400", thread_ts=root
    )
    fake.messages["C_TEST"].append(mention)
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.reply("20.")
        await slack.event(mention)
        await turn_done(llm)

    assert llm.requests[0]["messages"][1:] == [
        {"role": "user", "content": "what is 2+3?"},
        {"role": "assistant", "content": "5."},
        {"role": "user", "content": f"(<@{USER_B}> wrote) nice"},
        {"role": "user", "content": "and times 4?"},
    ]


async def test_a_dm_is_answered_and_edits_or_bot_messages_are_not(tmp_path: Path, fake: FakeSlack) -> None:
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.reply("Hello!")
        dm = message_im_event("hello", user_id=USER)
        await slack.event(dm)
        await turn_done(llm)
        await slack.event(message_im_event("edited", user_id=USER) | {"subtype": "message_changed"})
        await slack.event(message_im_event("from a bot", user_id=USER) | {"bot_id": "B_OTHER"})
        await listeners_done()

    [post] = fake.calls("chat.postMessage")
    assert post["body"]["thread_ts"] == dm["ts"]
    assert len(llm.requests) == 1


@pytest.mark.parametrize("approve", [True, False])
async def test_a_call_that_may_write_runs_only_after_the_asker_approves(
    tmp_path: Path, fake: FakeSlack, approve: bool
) -> None:
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.call_tools(("toy__pid", {}))
        llm.reply("Finished.")
        await slack.event(app_mention_event(f"<@{BOT_USER_ID}> pid?", user_id=USER))
        posts = await fake.await_for("chat.postMessage", 2)
        question = posts[1]
        assert "may I run `toy__pid`" in question["body"]["text"]

        stranger = await slack.click("mcp_agent_approve", approval_value(question), user=USER_B)
        [refusal] = await slack.replies(stranger)
        assert refusal["text"] == "Only the person who asked can approve or deny this call."
        assert len(llm.requests) == 1  # still waiting for the asker

        await slack.click("mcp_agent_approve" if approve else "mcp_agent_deny", approval_value(question))
        await turn_done(llm)

    result = llm.requests[1]["messages"][-1]["content"]
    if approve:
        assert result.isdigit()  # the pid: the tool ran
    else:
        assert result == "Error: The person denied this call; it was not run."
    updates = [c["body"]["text"] for c in fake.calls("chat.update")]
    decided = (
        f"✅ <@{USER}> approved `toy__pid`."
        if approve
        else f"🚫 <@{USER}> denied `toy__pid`; it was not run."
    )
    assert decided in updates


async def test_an_unanswered_approval_expires_as_a_deny(tmp_path: Path, fake: FakeSlack) -> None:
    async with agent_bot(tmp_path, fake, agent_approval_timeout_s=0.3) as (slack, llm):
        llm.call_tools(("toy__pid", {}))
        llm.reply("Not run.")
        await slack.event(app_mention_event(f"<@{BOT_USER_ID}> pid?", user_id=USER))
        await turn_done(llm)

    assert llm.requests[1]["messages"][-1]["content"].startswith("Error: The person denied")
    assert any("No answer in time" in c["body"]["text"] for c in fake.calls("chat.update"))


async def test_a_failing_model_leaves_a_clear_message_in_the_thread_without_the_key(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.fail(500, f"boom for {llm.api_key}")
        await slack.event(app_mention_event(f"<@{BOT_USER_ID}> hi", user_id=USER))
        await turn_done(llm)
        key = llm.api_key

    [update] = fake.calls("chat.update")
    assert (
        update["body"]["text"]
        == "❌ The language model answered with an error (HTTP 500). Try again in a moment."
    )
    assert key not in fake.all_traffic_text()


async def test_a_connection_secret_never_reaches_slack_or_the_model(
    tmp_path: Path, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.call_tools(("toy__env", {"name": "TOY_SECRET"}))
        llm.reply("It is set <!channel>.")
        await slack.event(app_mention_event(f"<@{BOT_USER_ID}> show TOY_SECRET", user_id=USER))
        posts = await fake.await_for("chat.postMessage", 2)  # toy__env is not read-only: approve it
        await slack.click("mcp_agent_approve", approval_value(posts[1]))
        await turn_done(llm)

    assert llm.requests[1]["messages"][-1]["content"] == "[redacted]"
    assert SECRET not in json.dumps(llm.requests)
    assert SECRET not in fake.all_traffic_text()
    assert SECRET not in caplog.text
    assert "It is set &lt;!channel>." in fake.all_traffic_text()  # no @channel from the model


async def test_a_rate_limited_answer_is_retried_after_retry_after(tmp_path: Path, fake: FakeSlack) -> None:
    limited: list[dict[str, Any]] = []

    def once_rate_limited(body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not limited:
            limited.append(body)
            return 429, {"Retry-After": "0"}, {"ok": False, "error": "ratelimited"}
        payload, headers = fake._canned("chat.update", body)
        return 200, headers, payload

    fake.overrides["chat.update"] = once_rate_limited
    async with agent_bot(tmp_path, fake) as (slack, llm):
        llm.reply("Delivered anyway.")
        await slack.event(app_mention_event(f"<@{BOT_USER_ID}> hi", user_id=USER))
        await turn_done(llm)

    assert [c["body"]["text"] for c in fake.calls("chat.update")] == ["Delivered anyway."] * 2
