"""Socket Mode: the same app over a WebSocket to the fake, acks carried back as envelopes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands
from bot.app import create_app
from bot.runner import load_run_cards
from mcp_core.services import Services
from tests.slack.conftest import CONNECT_CALLBACK, TEAM, USER, listeners_done
from tests.support.fake_slack import (
    FakeSlack,
    app_home_opened_event,
    event_callback,
    slash_command,
    view_submission,
)


@pytest.fixture
async def socket_mode(services: Services, fake: FakeSlack) -> AsyncIterator[AsyncSocketModeHandler]:
    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
    handler = AsyncSocketModeHandler(
        create_app(services, client=client, signing_secret=None, cards=load_run_cards(services.settings)),
        "xapp-test",
    )
    await handler.connect_async()
    try:
        yield handler
        await listeners_done()
    finally:
        await handler.close_async()


@pytest.mark.anyio
@pytest.mark.usefixtures("socket_mode")
async def test_a_pushed_mcp_help_is_acked_and_the_usage_arrives(fake: FakeSlack) -> None:
    command = slash_command("help", user_id=USER, team_id=TEAM, response_url=fake.response_url("sm"))

    envelope_id = await fake.apush_envelope("slash_commands", command)

    assert await fake.await_ack(envelope_id) == {"envelope_id": envelope_id}
    [reply] = await fake.await_for("/respond/sm")
    assert reply["body"]["text"] == commands.USAGE
    [connect] = fake.calls("apps.connections.open")
    assert connect["headers"]["authorization"] == "Bearer xapp-test"


@pytest.mark.anyio
@pytest.mark.usefixtures("socket_mode")
async def test_an_invalid_view_submission_is_acked_with_the_errors(fake: FakeSlack) -> None:
    submission = view_submission(
        CONNECT_CALLBACK,
        {
            "name": {"value": "no spaces allowed"},
            "url": {"value": "http://10.0.0.7/mcp"},
            "token": {"value": ""},
        },
        user_id=USER,
        team_id=TEAM,
        private_metadata=json.dumps({"channel": "C_TEST"}),
    )

    envelope_id = await fake.apush_envelope("interactive", submission)

    ack = await fake.await_ack(envelope_id)
    assert ack["payload"]["response_action"] == "errors"
    assert set(ack["payload"]["errors"]) == {"name", "url"}


@pytest.mark.anyio
@pytest.mark.usefixtures("socket_mode")
async def test_a_redelivered_event_envelope_is_handled_once(fake: FakeSlack) -> None:
    event = event_callback(app_home_opened_event(USER), team_id=TEAM, event_id="EvSOCKET")

    first = await fake.apush_envelope("events_api", event)
    retry = await fake.apush_envelope("events_api", event, retry_attempt=1, retry_reason="timeout")

    assert await fake.await_ack(first) == {"envelope_id": first}
    assert await fake.await_ack(retry) == {"envelope_id": retry}
    await listeners_done()
    assert len(fake.calls("views.publish")) == 1
