"""A tool its server runs as an MCP task (2025-11-25), in an agent turn over Slack's wire.

USER connects the real npm server-everything over stdio; its `simulate-research-query` is
task-only (a plain call is refused). The model calls it; the bot runs it as a task, shows the
task's status on the call's line, and the model gets the task's result. The task's id is kept
with the turn, so a takeover after a crash can say the call may still be running there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot import texts
from bot.takeover import closing_text
from mcp_core.models import NewConnection
from mcp_core.store._turns import TurnCall
from mcp_core.turn_journal import TurnRow
from tests.slack.agent_harness import agent_bot, mention, tool_messages, turn_done, updates
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack
from tests.support.servers import TASK_EXTENSION, npm_stdio_params

pytestmark = [pytest.mark.anyio, pytest.mark.npm]

RESEARCH = "everything__simulate-research-query"


async def test_a_task_only_tool_runs_as_a_task_with_its_status_on_the_calls_line(
    tmp_path: Path, fake: FakeSlack
) -> None:
    params = npm_stdio_params("server-everything", "stdio")
    async with agent_bot(tmp_path, fake) as bot:
        new = NewConnection(
            name="everything", transport="stdio", command=params.command, args=list(params.args)
        )
        outcome = await bot.services.registry.add_connection(TEAM, USER, new)
        assert outcome.error is None, outcome.error
        connection = await bot.services.store.find_connection(TEAM, USER, "everything")
        assert connection is not None
        await bot.services.registry.set_always_allowed(
            TEAM, USER, connection.id, "simulate-research-query", True
        )
        bot.llm.call_tools((RESEARCH, {"topic": "tide pools"}))
        bot.llm.reply("Researched.")
        await bot.slack.event(mention("research tide pools"))
        await turn_done(bot)
        followable = await bot.services.registry.task_followable(TEAM, USER, RESEARCH)

    [said] = tool_messages(bot.llm.requests[1])
    assert "requires task augmentation" not in said
    assert "tide pools" in said.lower()
    lines = [u["text"] for u in updates(fake, bot.posts.ts_of("🤔"))]
    assert any("task working" in line for line in lines), lines
    assert not followable  # a local server's task ends with the process that ran it


def test_a_taken_over_turn_says_a_call_running_as_a_task_may_still_finish_on_the_server() -> None:
    turn = TurnRow(
        "t1", TEAM, USER, "C_TEST", "1.2", calls=[TurnCall("ran", True, True), TurnCall("long", True)]
    )
    turn.calls[1].task = "task-42"
    stored = [TurnCall.from_json(c.as_json()) for c in turn.calls]
    assert [c.task for c in stored] == [None, "task-42"]

    text = closing_text(turn)
    assert "`long` may have run" in text
    assert "`long` was running as a task on the server and may still finish there" in text
    assert "nothing was run again" in text


def test_several_tasks_that_cannot_be_followed_are_named_in_the_plural() -> None:
    turn = TurnRow("t1", TEAM, USER, "C_TEST", "1.2", calls=[TurnCall("a", True), TurnCall("b", True)])
    for call in turn.calls:
        call.task = f"task-{call.name}"

    text = closing_text(turn)

    assert "`a` and `b` were running as tasks on the server and may still finish there" in text
    assert "their results will not be posted here" in text


def test_a_task_this_process_follows_is_announced_with_its_result_to_come() -> None:
    turn = TurnRow(
        "t1", TEAM, USER, "C_TEST", "1.2", calls=[TurnCall("local", True), TurnCall("remote", True)]
    )
    turn.calls[0].task, turn.calls[1].task = "task-1", "task-2"

    text = closing_text(turn, following={1})

    assert "`local` was running as a task on the server and may still finish there" in text
    assert (
        "`remote` is still running as a task on the server: I will post its result here when it ends" in text
    )


def test_a_followed_tasks_result_is_shown_inert_and_cut() -> None:
    hostile = "<!channel> see <https://evil.example|here> ```break``` " + "x" * 5000

    text = texts.task_ended("keeper__research", hostile, is_error=False)
    failed = texts.task_ended("keeper__<@U1>research", "", is_error=True)
    lost = texts.task_lost("keeper__research", "keeper: the server answered error -32602: <!here>")

    assert text.startswith("✅ `keeper__research` finished on its server after my restart:\n```")
    assert "<!channel>" not in text
    assert "<https://" not in text
    assert text.count("```") == 2  # the server's own fences cannot end the block
    assert len(text) < texts.TASK_RESULT_CHARS + 200
    assert (
        failed
        == "⚠️ `keeper__U1research` ended with an error on its server after my restart (it returned nothing)."
    )
    assert "<!here>" not in lost
    assert "&lt;!here&gt;" in lost


async def test_a_call_its_server_answers_with_an_extension_task_runs_as_one_in_the_turn(
    tmp_path: Path, fake: FakeSlack
) -> None:
    """The 2026-07-28 Tasks extension: the server decides to make a task (the tool says
    nothing about it); the turn shows its status and the model gets its result."""
    async with agent_bot(tmp_path, fake) as bot:
        new = NewConnection(name="ext", transport="stdio", command=sys.executable, args=[str(TASK_EXTENSION)])
        outcome = await bot.services.registry.add_connection(TEAM, USER, new)
        assert outcome.error is None, outcome.error
        bot.llm.call_tools(("ext__research", {"topic": "kelp", "seconds": 1}))
        bot.llm.reply("Researched.")
        await bot.slack.event(mention("research kelp"))
        await turn_done(bot)

    [said] = tool_messages(bot.llm.requests[1])
    assert said == "Report on kelp"
    lines = [u["text"] for u in updates(fake, bot.posts.ts_of("🤔"))]
    assert any("task working: Researching..." in line for line in lines), lines
