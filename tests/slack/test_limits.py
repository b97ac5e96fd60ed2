"""Per-person limits at the Slack surface: refused in the form, with words, others unaffected."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_core.limits import too_many_connections
from mcp_core.services import build_services
from tests.slack.conftest import USER, USER_B, SlackDriver, listeners_done, serve, slack_settings
from tests.support.fake_slack import FakeSlack
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio


async def test_a_connection_past_the_per_person_limit_is_refused_in_the_form_and_others_may_connect(
    tmp_path: Path, fake: FakeSlack, toy_server: RunningServer
) -> None:
    services = await build_services(slack_settings(tmp_path, fake, mcp_max_connections_per_user=2))
    try:
        async with serve(services) as url:
            slack = SlackDriver(url, fake, services)
            await slack.connect("one", toy_server.url)
            await slack.connect("two", toy_server.url)

            refused = await slack.submit_connect(name="three", url=toy_server.url)
            await listeners_done()
            theirs = await slack.connect("theirs", toy_server.url, user=USER_B)

            assert refused.json() == {
                "response_action": "errors",
                "errors": {"name": too_many_connections(2)},
            }
            assert [c.name for c in await slack.connections(USER)] == ["one", "two"]
            assert theirs.name == "theirs"
    finally:
        await services.aclose()
