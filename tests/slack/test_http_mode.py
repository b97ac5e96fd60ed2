"""HTTP mode as Slack meets it: signatures, event retries (also across processes), /healthz."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mcp_core.errors import StoreError
from mcp_core.services import build_services
from mcp_core.settings import Settings
from tests.slack.conftest import (
    SECRET,
    TEAM,
    USER,
    USER_B,
    SlackDriver,
    listeners_done,
    serve,
    slack_settings,
)
from tests.support.fake_slack import (
    FORM,
    JSON,
    FakeSlack,
    app_home_opened_event,
    app_mention_event,
    event_body,
    message_im_event,
    post_signed,
    sign,
    slash_command_body,
)
from tests.support.postgres import reachable_pg_server


@pytest.mark.anyio
async def test_a_retried_event_is_handled_once(slack: SlackDriver, fake: FakeSlack) -> None:
    first = await slack.event(app_home_opened_event(USER), event_id="EvONCE")
    retry = await slack.event(app_home_opened_event(USER), event_id="EvONCE", retry_num=1)

    assert (first.status, retry.status) == (200, 200)
    await listeners_done()
    assert len(fake.calls("views.publish")) == 1


@pytest.mark.anyio
async def test_distinct_events_are_each_handled(slack: SlackDriver, fake: FakeSlack) -> None:
    await slack.event(app_home_opened_event(USER), event_id="EvONE")
    await slack.event(app_home_opened_event(USER), event_id="EvTWO")

    await listeners_done()
    assert len(fake.calls("views.publish")) == 2


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def shared_settings(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeSlack
) -> AsyncIterator[Settings]:
    """Settings two bot processes share: one SQLite file, or one fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield slack_settings(tmp_path, fake)
        return
    server = await reachable_pg_server()
    database = await server.create_database()
    try:
        yield slack_settings(tmp_path, fake, database_url=server.url_for(database))
    finally:
        await server.drop_database(database)


@pytest.mark.anyio
async def test_a_retried_event_is_handled_once_across_two_bot_processes_on_one_database(
    shared_settings: Settings, fake: FakeSlack
) -> None:
    first_services = await build_services(shared_settings)
    second_services = await build_services(shared_settings)
    try:
        async with serve(first_services) as first_url, serve(second_services) as second_url:
            first = SlackDriver(first_url, fake, first_services)
            second = SlackDriver(second_url, fake, second_services)

            await first.event(app_home_opened_event(USER_B), event_id="EvSHARED")
            await second.event(app_home_opened_event(USER_B), event_id="EvSHARED", retry_num=1)
            await first.event(app_home_opened_event(USER_B), event_id="EvSHARED", retry_num=2)

            await listeners_done()
            assert len(fake.calls("views.publish")) == 1
    finally:
        await first_services.aclose()
        await second_services.aclose()


@pytest.mark.anyio
async def test_a_forged_signature_gets_401_and_does_nothing(slack: SlackDriver, fake: FakeSlack) -> None:
    body = slash_command_body("connect", user_id=USER, team_id=TEAM, response_url=fake.response_url())

    status, _, text = await post_signed(slack.url, body, FORM, "not-the-signing-secret")

    assert status == 401
    assert json.loads(text) == {"error": "invalid request"}
    await listeners_done()
    assert fake.requests == []


@pytest.mark.anyio
async def test_a_body_changed_after_signing_gets_401(slack: SlackDriver, fake: FakeSlack) -> None:
    signed = event_body(app_home_opened_event(USER), team_id=TEAM)
    headers = {"content-type": JSON, **sign(SECRET, signed)}
    tampered = signed.replace(USER, USER_B)

    async with (
        aiohttp.ClientSession() as session,
        session.post(slack.url, data=tampered, headers=headers) as resp,
    ):
        assert resp.status == 401


@pytest.mark.anyio
@pytest.mark.parametrize("age_s", [301, -301, 3600])
async def test_a_stale_timestamp_gets_401(slack: SlackDriver, fake: FakeSlack, age_s: int) -> None:
    body = event_body(app_home_opened_event(USER), team_id=TEAM)

    status, _, _ = await post_signed(slack.url, body, JSON, SECRET, timestamp=int(time.time()) - age_s)

    assert status == 401
    await listeners_done()
    assert fake.calls("views.publish") == []


@pytest.mark.anyio
async def test_without_an_llm_mentions_and_dms_are_acked_and_answered_with_what_to_configure(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    events = (app_mention_event("hi", user_id=USER), message_im_event("hi", user_id=USER))
    for event in events:
        reply = await slack.event(event)

        assert (reply.status, reply.text) == (200, "")
    posts = await fake.await_for("chat.postMessage", 2)
    await listeners_done()
    assert {p["body"]["thread_ts"] for p in posts} == {e["ts"] for e in events}  # each in its thread
    assert all("OPENAI_API_KEY" in p["body"]["text"] for p in posts)


@pytest.mark.anyio
async def test_url_verification_echoes_the_challenge(slack: SlackDriver) -> None:
    body = json.dumps({"token": "x", "challenge": "ch-123", "type": "url_verification"})

    status, _, text = await post_signed(slack.url, body, JSON, SECRET)

    assert (status, json.loads(text)) == (200, {"challenge": "ch-123"})


@pytest.mark.anyio
async def test_healthz_answers_200_with_json(slack: SlackDriver) -> None:
    health_url = slack.url.replace("/slack/events", "/healthz")

    async with aiohttp.ClientSession() as session, session.get(health_url) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == {"ok": True, "live_sessions": 0}


@pytest.mark.anyio
async def test_healthz_answers_503_when_the_database_does_not_answer(
    slack: SlackDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable() -> None:
        raise StoreError("The database is not answering right now. Try again in a minute.")

    monkeypatch.setattr(slack.services.store, "healthcheck", unreachable)
    health_url = slack.url.replace("/slack/events", "/healthz")

    async with aiohttp.ClientSession() as session, session.get(health_url) as resp:
        assert resp.status == 503
        assert await resp.json() == {"ok": False, "database": "unreachable"}
