"""A shared channel: a person from another organization who mentions the bot is their own
team's person (``user_team``), never the host's — even with a user id that exists here, they
get none of the host team's connections, and their clicks are read the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot._payload import owner
from tests.slack.agent_harness import agent_bot, mention, turn_done
from tests.slack.conftest import TEAM, USER
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio


async def test_a_guest_from_another_org_gets_none_of_the_host_teams_tools(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        host_tools = await bot.services.registry.catalog(TEAM, USER)
        bot.llm.reply("Hello, guest.")
        await bot.slack.event(mention("what tools do I have?") | {"user_team": "T_GUEST_ORG"})
        await turn_done(bot)

    [request] = bot.llm.requests
    assert host_tools
    assert not request.get("tools")


def test_a_click_is_the_clickers_own_team() -> None:
    body = {"team": {"id": "T_HOST"}, "user": {"id": "U1", "team_id": "T_GUEST_ORG"}}
    assert owner(body) == ("T_GUEST_ORG", "U1")
    assert owner({"team_id": "T_HOST", "user_id": "U1"}) == ("T_HOST", "U1")
