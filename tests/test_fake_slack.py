"""The fake Slack behaves like Slack towards slack_sdk and Bolt, in HTTP and Socket Mode."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.support.fake_slack import (
    BOT_SCOPES,
    FORM,
    TEAM_ID,
    FakeSlack,
    post_signed,
    slash_command,
    slash_command_body,
)

SECRET = "signing-secret-for-tests"
MODAL = {
    "type": "modal",
    "callback_id": "connect",
    "title": {"type": "plain_text", "text": "Connect"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        yield running


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web_client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


@pytest.fixture
def app(client: AsyncWebClient) -> AsyncApp:
    bolt = AsyncApp(client=client, signing_secret=SECRET)

    @bolt.command("/mcp")
    async def mcp(ack: AsyncAck) -> None:
        await ack("ok")

    return bolt


@pytest.fixture
async def app_url(app: AsyncApp) -> AsyncIterator[str]:
    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    await runner.cleanup()


@pytest.mark.anyio
async def test_web_api_calls_are_recorded_with_parsed_blocks_and_view(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}]
    posted = await client.chat_postMessage(channel="C1", text="hello", blocks=blocks, thread_ts="1.2")
    opened = await client.views_open(trigger_id="trig", view=MODAL)

    [post] = await fake.await_for("chat.postMessage")
    assert post["body"]["blocks"] == blocks
    assert post["headers"]["authorization"] == "Bearer xoxb-test"
    assert posted["channel"] == "C1"
    assert posted["ts"]
    [view_call] = fake.calls("views.open")
    assert view_call["body"] == {"trigger_id": "trig", "view": MODAL}
    assert opened["view"]["callback_id"] == "connect"
    assert opened["view"]["id"]
    assert "*hello*" in fake.all_traffic_text()


@pytest.mark.anyio
async def test_form_encoded_calls_are_decoded_and_auth_test_reports_scopes(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.api_call("chat.update", data={"channel": "C1", "ts": "1.2", "blocks": '[{"type": "x"}]'})
    auth = await client.auth_test()

    assert fake.calls("chat.update")[0]["body"] == {"channel": "C1", "ts": "1.2", "blocks": [{"type": "x"}]}
    assert auth["team_id"] == TEAM_ID
    assert auth.headers["x-oauth-scopes"] == BOT_SCOPES


@pytest.mark.anyio
async def test_a_call_without_a_token_is_not_authed(fake: FakeSlack) -> None:
    anonymous = AsyncWebClient(base_url=fake.base_url)
    with pytest.raises(SlackApiError) as raised:
        await anonymous.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response["error"] == "not_authed"


@pytest.mark.anyio
async def test_an_override_injects_an_api_error(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.overrides["views.open"] = lambda body: (200, {}, {"ok": False, "error": "expired_trigger_id"})
    with pytest.raises(SlackApiError) as raised:
        await client.views_open(trigger_id="old", view=MODAL)
    assert raised.value.response["error"] == "expired_trigger_id"


LONG = "x" * 3001


def table(rows: list[list[str]]) -> dict[str, Any]:
    """A table block of raw_text cells."""
    return {"type": "table", "rows": [[{"type": "raw_text", "text": cell} for cell in row] for row in rows]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "payload", "error"),
    [
        (
            "chat.postMessage",
            {
                "channel": "C1",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
            },
            "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            "chat.update",
            {"channel": "C1", "ts": "1.2", "blocks": [{"type": "divider"}] * 51},
            "no more than 50 items allowed [json-pointer:/blocks]",
        ),
        (
            "views.open",
            {"trigger_id": "t", "view": {"type": "modal", "blocks": [{"type": "divider"}] * 101}},
            "no more than 100 items allowed [json-pointer:/view/blocks]",
        ),
        (
            "chat.postMessage",
            {
                "channel": "C1",
                "blocks": [{"type": "actions", "elements": [{"type": "button", "value": "v" * 2001}]}],
            },
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        ("chat.postMessage", {"channel": "C1", "text": "x" * 40_001}, "msg_too_long [json-pointer:/text]"),
        (
            "chat.postMessage",
            {"channel": "C1", "blocks": [table([["a"]] * 101)]},
            "no more than 100 items allowed [json-pointer:/blocks/0/rows]",
        ),
        (
            "chat.postMessage",
            {"channel": "C1", "blocks": [table([["a"] * 21])]},
            "no more than 20 items allowed [json-pointer:/blocks/0/rows/0]",
        ),
        (
            "chat.postMessage",
            {"channel": "C1", "blocks": [table([["a", ""]])]},
            "must be more than 0 characters [json-pointer:/blocks/0/rows/0/1/text]",
        ),
        (
            "chat.postMessage",
            {"channel": "C1", "blocks": [table([["x" * 5001, "y" * 5000]])]},
            "cells must hold no more than 10000 characters [json-pointer:/blocks/0]",
        ),
        (
            "chat.postMessage",
            {"channel": "C1", "blocks": [table([["a"]]), table([["b"]])]},
            "only one table block is allowed per message [json-pointer:/blocks/1]",
        ),
        (
            "chat.update",
            {"channel": "C1", "ts": "1.2", "blocks": [{"type": "table", "rows": [[{"type": "image"}]]}]},
            "failed to match any allowed schemas [json-pointer:/blocks/0/rows/0/0]",
        ),
    ],
)
async def test_blocks_slack_would_refuse_are_refused_as_invalid_blocks(
    fake: FakeSlack, client: AsyncWebClient, method: str, payload: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client.api_call(method, json=payload)

    assert raised.value.response["error"] == "invalid_blocks"
    assert raised.value.response["errors"] == [error]


@pytest.mark.anyio
async def test_blocks_at_the_limits_are_accepted(fake: FakeSlack, client: AsyncWebClient) -> None:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}
    await client.chat_postMessage(channel="C1", text="t", blocks=[section] * 50)
    await client.chat_postMessage(channel="C1", text="t", blocks=[table([["x" * 25] * 20] * 20), section])
    await client.chat_postMessage(channel="C1", text="t", blocks=[table([["a"] * 20] * 100)])
    await client.views_open(
        trigger_id="t",
        view={"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": [section] * 100},
    )


@pytest.mark.anyio
async def test_an_override_injects_a_rate_limit(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.overrides["chat.postMessage"] = lambda body: (429, {"Retry-After": "1"}, {"ok": False})
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_conversation_replies_come_from_the_configured_messages(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.messages["C1"] = [
        {"type": "message", "user": "U1", "text": "root", "ts": "1.0"},
        {"type": "message", "user": "U2", "text": "reply", "ts": "1.1", "thread_ts": "1.0"},
        {"type": "message", "user": "U3", "text": "other", "ts": "2.0"},
    ]
    replies = await client.conversations_replies(channel="C1", ts="1.0")
    assert [m["text"] for m in replies["messages"]] == ["root", "reply"]


@pytest.mark.anyio
async def test_posts_to_a_response_url_are_recorded(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.response_url("cmd"))
    response = await webhook.send(text="done", response_type="ephemeral", replace_original=True)

    assert response.status_code == 200
    [call] = fake.calls("/respond/cmd")
    assert call["body"] == {"text": "done", "response_type": "ephemeral", "replace_original": True}


@pytest.mark.anyio
async def test_a_signed_slash_command_is_acked_over_http(fake: FakeSlack, app_url: str) -> None:
    body = slash_command_body("list", user_id="U1", team_id=TEAM_ID, response_url=fake.response_url())
    status, _, text = await post_signed(app_url, body, FORM, SECRET)
    assert (status, text) == (200, "ok")
    assert len(fake.calls("auth.test")) == 1


@pytest.mark.anyio
async def test_a_forged_or_stale_signature_is_rejected(app_url: str) -> None:
    body = slash_command_body("list", user_id="U1", team_id=TEAM_ID)
    forged, _, _ = await post_signed(app_url, body, FORM, "not-the-secret")
    stale, _, _ = await post_signed(app_url, body, FORM, SECRET, timestamp=int(time.time()) - 301)
    assert (forged, stale) == (401, 401)


@pytest.mark.anyio
async def test_a_socket_mode_slash_command_is_acked_on_the_websocket(fake: FakeSlack, app: AsyncApp) -> None:
    handler = AsyncSocketModeHandler(app, "xapp-test")
    await handler.connect_async()
    try:
        envelope_id = await fake.apush_envelope(
            "slash_commands", slash_command("list", user_id="U1", team_id=TEAM_ID)
        )
        ack = await fake.await_ack(envelope_id)
    finally:
        await handler.close_async()

    assert ack == {"envelope_id": envelope_id, "payload": {"text": "ok"}}
    assert fake.calls("apps.connections.open")[0]["headers"]["authorization"] == "Bearer xapp-test"


def test_waiting_for_a_missing_call_fails_with_what_was_received(fake: FakeSlack) -> None:
    urllib.request.urlopen(urllib.request.Request(fake.response_url(), data=b"{}"), timeout=5).close()
    with pytest.raises(AssertionError, match=r"chat\.postMessage.*\['/respond/x'\]"):
        fake.wait_for("chat.postMessage", timeout_s=0.1)


INPUT = {
    "type": "input",
    "block_id": "b",
    "label": {"type": "plain_text", "text": "Name"},
    "element": {"type": "plain_text_input", "action_id": "v"},
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("view", "message"),
    [
        ({**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}, "at most 24 characters"),
        ({**MODAL, "title": None} | {"title": {"type": "mrkdwn", "text": "t"}}, "/view/title"),
        ({**MODAL, "blocks": [INPUT]}, "needs submit"),
        ({**MODAL, "blocks": [INPUT, INPUT], "submit": {"type": "plain_text", "text": "Go"}}, "unique"),
        ({**MODAL, "blocks": [{**INPUT, "label": {"type": "plain_text", "text": "l" * 2001}}]}, "/label"),
        ({**MODAL, "private_metadata": "m" * 3001}, "/view/private_metadata"),
    ],
)
async def test_views_open_refuses_a_view_slack_would_refuse(
    fake: FakeSlack, client: AsyncWebClient, view: dict[str, Any], message: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client.views_open(trigger_id="t1", view=view)
    assert raised.value.response["error"] == "invalid_arguments"
    assert message in " ".join(raised.value.response["response_metadata"]["messages"])


@pytest.mark.anyio
async def test_views_open_needs_a_trigger_id_and_uses_it_once(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as missing:
        await client.api_call("views.open", json={"view": MODAL})
    await client.views_open(trigger_id="t1", view=MODAL)
    with pytest.raises(SlackApiError) as again:
        await client.views_open(trigger_id="t1", view=MODAL)

    assert missing.value.response["error"] == "invalid_arguments"
    assert again.value.response["error"] == "exchanged_trigger_id"


async def _refused(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call
    return str(raised.value.response["error"])


@pytest.mark.anyio
async def test_conversations_open_gives_each_user_one_stable_dm_and_validates_users(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    first = await client.conversations_open(users="U0ALICE")
    again = await client.conversations_open(users="U0ALICE")
    other = await client.conversations_open(users="U0BOB")
    group = await client.conversations_open(users="U0ALICE,U0BOB")
    resumed = await client.conversations_open(channel=first["channel"]["id"])
    refusals = [
        await _refused(client.api_call("conversations.open", params={})),  # slack_sdk checks this too
        await _refused(client.conversations_open(users="alice")),
        await _refused(client.conversations_open(users="U_BOT")),
        await _refused(client.conversations_open(users=",".join(f"U0{n}AA" for n in range(9)))),
        await _refused(client.conversations_open(channel="D0NEVER")),
    ]

    assert first["channel"]["id"] == again["channel"]["id"] == FakeSlack.dm_channel("U0ALICE") == "D0ALICE"
    assert "no_op" not in first.data
    assert (again["no_op"], again["already_open"]) == (True, True)
    assert other["channel"]["id"] == "D0BOB"
    assert group["channel"]["id"].startswith("G")
    assert resumed["channel"]["id"] == "D0ALICE"
    assert refusals == [
        "users_list_not_supplied",
        "user_not_found",
        "cannot_dm_bot",
        "too_many_users",
        "channel_not_found",
    ]
    assert fake.opened["D0ALICE"] == ("U0ALICE",)


@pytest.mark.anyio
async def test_usergroups_users_list_answers_members_and_refuses_as_slack_does(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.usergroups["S0ENG"] = ["U0ALICE"]
    members = await client.usergroups_users_list(usergroup="S0ENG")
    refusals = [
        await _refused(client.usergroups_users_list(usergroup="S0NONE")),
        await _refused(client.api_call("usergroups.users.list", params={})),
    ]
    fake.scopes.remove("usergroups:read")
    no_scope = await _refused(client.usergroups_users_list(usergroup="S0ENG"))

    assert members["users"] == ["U0ALICE"]
    assert refusals == ["no_such_subteam", "invalid_arguments"]
    assert no_scope == "missing_scope"


@pytest.mark.anyio
async def test_users_info_needs_users_read(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.users["U0ADMIN"] = {"id": "U0ADMIN", "team_id": "T_TEST", "is_admin": True}
    assert (await client.users_info(user="U0ADMIN"))["user"]["is_admin"] is True
    fake.scopes.remove("users:read")
    assert await _refused(client.users_info(user="U0ADMIN")) == "missing_scope"


@pytest.mark.anyio
async def test_conversations_open_needs_im_write(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.scopes.remove("im:write")
    with pytest.raises(SlackApiError) as raised:
        await client.conversations_open(users="U0ALICE")
    assert (raised.value.response["error"], raised.value.response["needed"]) == ("missing_scope", "im:write")
