"""A warm agent turn reads nothing from the database.

The turn is served like production (signed HTTP, fake Slack, scripted model, the toy server
in-process); its second mention finds the catalog cached and the session open. The only
statements it may run are writes: the event's dedupe claim and, in the background, usage rows.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import event

from mcp_core.store._changes import SQLITE_POLL_INTERVAL_S
from tests.slack.agent_harness import agent_bot, mention, turn_done
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio


async def test_a_warm_mention_answered_with_a_tool_call_makes_no_database_read(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "first"}))
        bot.llm.reply("said first")
        await bot.slack.event(mention("echo first"))
        await turn_done(bot)
        # Our own writes (adding the connections) come back through the change watch as if
        # another process made them, a poll later, and drop the cached catalog: let that
        # happen now, then warm the cache again, so what follows is the warm path.
        await anyio.sleep(SQLITE_POLL_INTERVAL_S * 4)
        await bot.services.registry.catalog(TEAM, USER)

        statements: list[str] = []

        def before(_conn, _cursor, statement: str, *_rest) -> None:
            statements.append(statement.lstrip().split(None, 1)[0].upper())

        engine = bot.services.store.engine.sync_engine
        bot.llm.call_tools(("toy__echo", {"text": "second"}))
        bot.llm.reply("said second")
        event.listen(engine, "before_cursor_execute", before)
        try:
            await bot.slack.event(mention("echo second"))
            await turn_done(bot)
            await bot.services.usage.flush()
        finally:
            event.remove(engine, "before_cursor_execute", before)

    answers = [c["body"]["text"] for c in fake.calls("chat.update")]
    assert answers[-1] == "said second"
    assert "SELECT" not in statements, statements
    assert "INSERT" in statements  # the event claim and the usage row: writes are counted too
