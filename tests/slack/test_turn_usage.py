"""What each Slack turn cost reaches the store: tokens per turn, person and model.

The bot is served like production (``tests.slack.agent_harness``); the scripted model server
reports OpenAI's ``usage`` on every answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.slack.agent_harness import agent_bot, mention, turn_done
from tests.slack.conftest import TEAM, USER, USER_B
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio


async def test_an_answered_mention_records_its_tokens_for_the_asker_and_the_model(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "hi"}))
        bot.llm.reply("The toy server said *hi*.")
        await bot.slack.event(mention("please echo hi"))
        await turn_done(bot)
        await bot.services.usage.flush()
        [turn] = await bot.services.store.list_turns(TEAM, USER)
        others = await bot.services.store.list_turns(TEAM, USER_B)
        served = bot.llm.served_usage

    assert (turn.model, turn.rounds, turn.tool_calls, turn.answered) == (
        bot.services.settings.openai_model,
        2,
        1,
        True,
    )
    assert turn.prompt_tokens == sum(u["prompt_tokens"] for u in served)
    assert turn.completion_tokens == sum(u["completion_tokens"] for u in served)
    assert others == []


async def test_a_mention_whose_model_fails_after_a_round_records_the_spent_tokens_as_unanswered(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__echo", {"text": "hi"}))
        bot.llm.fail(500)
        await bot.slack.event(mention("please echo hi"))
        await turn_done(bot)
        await bot.services.usage.flush()
        [turn] = await bot.services.store.list_turns(TEAM, USER)
        [served] = bot.llm.served_usage

    assert (turn.rounds, turn.answered, turn.prompt_tokens) == (1, False, served["prompt_tokens"])
