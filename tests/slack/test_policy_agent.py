"""The workspace policy in agent turns, over the wire: channels where the agent runs no tools
or only read-only ones (the model is offered only those, the asker is told privately), and
the audit log of approvals and denials (arguments only when the policy keeps them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import texts
from mcp_core.policy import Policy, change_policy
from tests.slack.agent_harness import agent_bot, approval_question, approval_value, mention, turn_done
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio


def offered(request: dict) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools") or []}


async def test_in_a_no_tools_channel_the_model_is_offered_no_tools_and_the_asker_is_told(
    tmp_path: Path, fake: FakeSlack
) -> None:
    event = mention("what is your pid?")
    async with agent_bot(tmp_path, fake) as bot:
        await change_policy(bot.services.store, TEAM, "UADMIN", Policy(no_tool_channels=("C_TEST",)))
        bot.llm.reply("I cannot run tools here.")
        await bot.slack.event(event)
        await turn_done(bot)
        all_tools = len(await bot.services.registry.catalog(TEAM, USER))

    [request] = bot.llm.requests
    assert offered(request) == set()
    [note] = [c["body"] for c in fake.calls("chat.postEphemeral")]
    assert (note["user"], note["thread_ts"]) == (USER, event["ts"])
    assert note["text"] == texts.channel_tools_note("none", all_tools)


async def test_in_a_read_only_channel_only_tools_marked_read_only_are_offered(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        await change_policy(bot.services.store, TEAM, "UADMIN", Policy(read_only_channels=("C_TEST",)))
        read_only = {e.name for e in await bot.services.registry.catalog(TEAM, USER) if e.tool.read_only}
        bot.llm.reply("Only reading.")
        await bot.slack.event(mention("echo hi"))
        await turn_done(bot)

    [request] = bot.llm.requests
    assert offered(request) == read_only
    assert "toy__echo" in read_only
    assert "toy__pid" not in offered(request)


@pytest.mark.parametrize("keep_arguments", [False, True], ids=["no-arguments", "arguments"])
async def test_approvals_and_denials_are_in_the_audit_log(
    tmp_path: Path, fake: FakeSlack, keep_arguments: bool
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        await change_policy(bot.services.store, TEAM, "UADMIN", Policy(audit_arguments=keep_arguments))
        bot.llm.call_tools(("toy__pid", {"why": "curious"}))
        bot.llm.reply("Done.")
        await bot.slack.event(mention("what is your pid?"))
        question = await approval_question(bot, fake)
        await bot.slack.click("mcp_agent_deny", approval_value(question))
        await turn_done(bot)
        entries = await bot.services.store.list_audit(TEAM)

    denied = entries[0]
    assert (denied.actor_id, denied.action) == (USER, "tool_denied")
    assert {k: denied.detail[k] for k in ("connection", "tool", "decision")} == {
        "connection": "toy",
        "tool": "pid",
        "decision": "denied",
    }
    assert ("arguments" in denied.detail) is keep_arguments
    if keep_arguments:
        assert "curious" in denied.detail["arguments"]
