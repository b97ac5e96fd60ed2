"""A tool its server runs as an MCP task (2025-11-25), in an agent turn over Slack's wire.

USER connects the real npm server-everything over stdio; its `simulate-research-query` is
task-only (a plain call is refused). The model calls it; the bot runs it as a task, shows the
task's status on the call's line, and the model gets the task's result. The task's id is kept
with the turn, so a takeover after a crash can say the call may still be running there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.takeover import closing_text
from mcp_core.models import NewConnection
from mcp_core.store._turns import TurnCall
from mcp_core.turn_journal import TurnRow
from tests.slack.agent_harness import agent_bot, mention, tool_messages, turn_done, updates
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack
from tests.support.servers import npm_stdio_params

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

    [said] = tool_messages(bot.llm.requests[1])
    assert "requires task augmentation" not in said
    assert "tide pools" in said.lower()
    lines = [u["text"] for u in updates(fake, bot.posts.ts_of("🤔"))]
    assert any("task working" in line for line in lines), lines


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
