"""Buttons (Test, Tools, Disconnect, Edit, Connect a server) and the App Home tab."""

from __future__ import annotations

import json

import pytest

from bot import texts
from mcp_core.models import ConnectionStatus
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, message_text
from tests.support.fake_slack import FakeSlack, app_home_opened_event
from tests.support.registry import BEARER
from tests.support.servers import RunningServer


@pytest.mark.anyio
async def test_disconnect_removes_the_connection_its_credential_and_its_live_session(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer
) -> None:
    connection = await slack.connect("mine", bearer_server.url, token=BEARER)
    credentials, pool = slack.services.credentials, slack.services.pool
    assert credentials is not None
    assert connection.credential_ref is not None
    assert pool.is_live(connection.id)
    published = len(fake.calls("views.publish"))

    reply = await slack.click("mcp_disconnect", str(connection.id))

    assert (reply.status, reply.text) == (200, "")
    assert await slack.reply_text(reply) == texts.disconnected("mine")
    assert await slack.connections() == []
    assert await credentials.get(TEAM, USER, connection.credential_ref) == {}
    assert not pool.is_live(connection.id)
    [*_, home] = await fake.await_for("views.publish", published + 1)
    assert texts.NO_CONNECTIONS in message_text(home["body"])


@pytest.mark.anyio
async def test_test_button_checks_the_connection_and_refreshes_home(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)
    published = len(fake.calls("views.publish"))

    reply = await slack.click("mcp_test", str(connection.id))

    assert (await slack.reply_text(reply)).startswith("🟢 *toy*: 9 tools, answered in ")
    assert len(fake.calls("views.publish")) == published + 1


@pytest.mark.anyio
async def test_tools_button_answers_with_the_first_page_without_replacing_the_list(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)

    reply = await slack.click("mcp_tools", json.dumps({"c": str(connection.id), "p": 0}))

    [body] = await slack.replies(reply)
    assert body["replace_original"] is False
    assert body["blocks"][0]["text"]["text"] == "*toy* — 9 tools (page 1 of 1)"


@pytest.mark.anyio
async def test_a_button_on_the_home_tab_answers_by_dm(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)

    await slack.click("mcp_test", str(connection.id), in_home=True)

    [dm] = await fake.await_for("chat.postMessage")
    assert dm["body"]["channel"] == USER
    assert dm["body"]["text"].startswith("🟢 *toy*: 9 tools")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        ("mcp_test", "{id}"),
        ("mcp_retry", "{id}"),
        ("mcp_tools", '{{"c": "{id}", "p": 0}}'),
        ("mcp_tools_page_1", '{{"c": "{id}", "p": 1}}'),
        ("mcp_disconnect", "{id}"),
        ("mcp_edit", "{id}"),
    ],
)
async def test_a_crafted_button_naming_another_users_connection_is_refused(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer, action_id: str, value: str
) -> None:
    theirs = await slack.connect("theirs", toy_server.url, user=USER)
    before = len(fake.requests)

    reply = await slack.click(action_id, value.format(id=theirs.id), user=USER_B)

    assert (reply.status, reply.text) == (200, "")
    assert await slack.reply_text(reply) == texts.NOT_YOUR_CONNECTION
    assert await slack.connections(USER) == [theirs]  # untouched: same status, tools, timestamps
    assert slack.services.pool.is_live(theirs.id)
    assert [r["method"] for r in fake.requests[before:]] == [
        f"/respond/{reply.response_url.rsplit('/', 1)[1]}"
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value", ["not-a-uuid", "", '{"c": 5}', "[1, 2]", "00000000-0000-0000-0000-000000000000"]
)
async def test_a_button_with_a_garbled_value_is_refused_not_crashed(slack: SlackDriver, value: str) -> None:
    for action_id in ("mcp_test", "mcp_tools", "mcp_disconnect"):
        reply = await slack.click(action_id, value)

        assert await slack.reply_text(reply) == texts.NOT_YOUR_CONNECTION


@pytest.mark.anyio
async def test_a_crafted_edit_form_for_another_users_connection_adds_a_new_one_and_leaves_theirs(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    theirs = await slack.connect("shared", toy_server.url, user=USER)

    await slack.submit_connect(
        name="shared", url=toy_server.url, user=USER_B, metadata={"channel": "C_TEST", "edit": str(theirs.id)}
    )

    await listeners_done()
    assert await slack.connections(USER) == [theirs]
    [mine] = await slack.connections(USER_B)
    assert (mine.name, mine.status) == ("shared", ConnectionStatus.HEALTHY)
    assert mine.id != theirs.id


@pytest.mark.anyio
async def test_opening_the_home_tab_publishes_the_users_connections_and_a_connect_button(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    connection = await slack.connect("toy", toy_server.url)
    await slack.connect("other", toy_server.url, user=USER_B)
    published = len(fake.calls("views.publish"))

    reply = await slack.event(app_home_opened_event(USER))

    assert reply.status == 200
    [*_, call] = await fake.await_for("views.publish", published + 1)
    assert call["body"]["user_id"] == USER
    view = call["body"]["view"]
    assert view["type"] == "home"
    buttons = [b for block in view["blocks"] if block["type"] == "actions" for b in block["elements"]]
    assert buttons[0]["action_id"] == "mcp_connect_open"
    assert buttons[0]["text"]["text"] == "Connect a server"
    assert [
        (b["action_id"], b["value"]) for b in buttons if b["action_id"] in ("mcp_test", "mcp_disconnect")
    ] == [
        ("mcp_test", str(connection.id)),
        ("mcp_disconnect", str(connection.id)),
    ]
    assert "other" not in message_text(call["body"])


@pytest.mark.anyio
async def test_the_connect_button_on_home_opens_the_form_with_no_channel(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await slack.click("mcp_connect_open", "", in_home=True)

    [call] = await fake.await_for("views.open")
    assert json.loads(call["body"]["view"]["private_metadata"]) == {"channel": ""}
