"""/mcp connect: the modal, its validation, and what a submission connects and says."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from bot import texts
from mcp_core.models import ConnectionStatus
from tests.slack.conftest import TEAM, USER, SlackDriver, listeners_done, message_text
from tests.support.fake_slack import FakeSlack
from tests.support.registry import BEARER
from tests.support.servers import RunningServer, start_http_server_sync

TOY_TOOLS = 9


async def stored_credentials(slack: SlackDriver) -> int:
    async with slack.services.store.engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM mcp_credentials"))).scalar_one()


@pytest.mark.anyio
async def test_connect_acks_in_the_request_and_opens_the_form_on_its_trigger_id(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    reply = await slack.command("connect custom", channel="C_HERE")

    assert (reply.status, reply.text) == (200, "")
    [call] = await fake.await_for("views.open")
    assert call["body"]["trigger_id"] == reply.trigger_id
    assert call["headers"]["authorization"] == "Bearer xoxb-test"
    view = call["body"]["view"]
    assert view["callback_id"] == "mcp_connect_submit"
    assert [b.get("block_id") for b in view["blocks"] if b["type"] == "input"] == [
        "name",
        "url",
        "transport",
        "bearer_token",
        "header_name",
        "header_value",
    ]
    assert json.loads(view["private_metadata"]) == {"channel": "C_HERE", "card": "custom"}


@pytest.mark.anyio
async def test_connect_custom_opens_the_same_form(slack: SlackDriver, fake: FakeSlack) -> None:
    await slack.command("connect Custom")

    [call] = await fake.await_for("views.open")
    assert call["body"]["view"]["callback_id"] == "mcp_connect_submit"


@pytest.mark.anyio
async def test_connect_with_an_unknown_card_lists_the_available_cards(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    reply = await slack.command("connect nope")

    available = [  # in id order; filesystem: admins only
        *("atlassian", "custom", "github", "github-oauth", "linear"),
        *("notion", "postgres", "sentry", "slack", "supabase"),
    ]
    assert await slack.reply_text(reply) == texts.unknown_card("nope", available)
    assert "`custom`" in texts.unknown_card("nope", available)
    assert fake.calls("views.open") == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "url", "errors"),
    [
        pytest.param("bad name!", "http://127.0.0.1:9/mcp", {"name"}, id="bad-name"),
        pytest.param("", "http://127.0.0.1:9/mcp", {"name"}, id="empty-name"),
        pytest.param("ok", "http://10.1.2.3/mcp", {"url"}, id="http-to-a-host-not-allowed"),
        pytest.param("ok", "https://10.1.2.3/mcp", {"url"}, id="private-address"),
        pytest.param("ok", "ftp://127.0.0.1/mcp", {"url"}, id="not-http"),
        pytest.param("ok", "http://user:pw@127.0.0.1/mcp", {"url"}, id="credentials-in-url"),
        pytest.param("x" * 40, "nonsense", {"name", "url"}, id="both"),
    ],
)
async def test_an_invalid_submission_keeps_the_modal_open_with_errors_by_field_and_stores_nothing(
    slack: SlackDriver, fake: FakeSlack, name: str, url: str, errors: set[str]
) -> None:
    reply = await slack.submit_connect(name=name, url=url, token="tok-not-stored")

    assert reply.status == 200
    answer = reply.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == errors
    assert all(answer["errors"].values())
    await listeners_done()
    assert await slack.connections() == []
    assert await stored_credentials(slack) == 0
    assert fake.calls("chat.postEphemeral") == fake.calls("views.publish") == []


@pytest.mark.anyio
async def test_a_duplicate_name_in_any_case_is_an_error_on_the_name_field(
    slack: SlackDriver, toy_server: RunningServer
) -> None:
    first = await slack.connect("toy", toy_server.url)

    reply = await slack.submit_connect(name="TOY", url=toy_server.url, token="tok-not-stored")

    assert reply.json() == {"response_action": "errors", "errors": {"name": texts.duplicate_name("toy")}}
    await listeners_done()
    assert await slack.connections() == [first]
    assert await stored_credentials(slack) == 0


@pytest.mark.anyio
async def test_a_valid_submission_connects_and_tells_the_channel_it_came_from(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer
) -> None:
    reply = await slack.submit_connect(
        name="Mine", url=bearer_server.url, token=BEARER, metadata={"channel": "C_ORIGIN"}
    )

    assert (reply.status, reply.text) == (200, "")
    [post] = await fake.await_for("chat.postEphemeral")
    assert post["body"]["text"] == f"✅ Connected *mine* — {TOY_TOOLS} tools available"
    assert (post["body"]["channel"], post["body"]["user"]) == ("C_ORIGIN", USER)
    await listeners_done()
    [connection] = await slack.connections()
    assert (connection.name, connection.status, len(connection.tools)) == (
        "mine",
        ConnectionStatus.HEALTHY,
        TOY_TOOLS,
    )
    assert connection.credential_ref is not None
    assert slack.services.credentials is not None
    stored = await slack.services.credentials.get(TEAM, USER, connection.credential_ref)
    assert stored == {"header:Authorization": f"Bearer {BEARER}"}
    [home] = fake.calls("views.publish")
    assert home["body"]["user_id"] == USER
    assert "*mine* · 🟢 healthy" in message_text(home["body"])


@pytest.mark.anyio
async def test_a_token_typed_with_its_bearer_prefix_is_stored_once(
    slack: SlackDriver, bearer_server: RunningServer
) -> None:
    connection = await slack.connect("mine", bearer_server.url, token=f"Bearer {BEARER}")

    assert connection.status == ConnectionStatus.HEALTHY


@pytest.mark.anyio
async def test_without_a_channel_the_result_comes_as_a_dm(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    await slack.submit_connect(name="toy", url=toy_server.url, metadata={})

    [dm] = await fake.await_for("chat.postMessage")
    assert (dm["body"]["channel"], dm["body"]["text"]) == (
        USER,
        f"✅ Connected *toy* — {TOY_TOOLS} tools available",
    )
    assert fake.calls("chat.postEphemeral") == []


@pytest.mark.anyio
async def test_when_the_ephemeral_reply_fails_the_result_comes_as_a_dm(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    fake.overrides["chat.postEphemeral"] = lambda body: (200, {}, {"ok": False, "error": "not_in_channel"})

    await slack.submit_connect(name="toy", url=toy_server.url)

    [dm] = await fake.await_for("chat.postMessage")
    assert dm["body"]["text"].startswith("✅ Connected *toy*")


@pytest.fixture
def port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def later_server(port: int) -> Iterator[Callable[[], RunningServer]]:
    """Starts a toy server on ``port`` when called; stopped at the end of the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(start_http_server_sync("--port", str(port)))


@pytest.mark.anyio
async def test_a_server_that_refuses_is_reported_with_retry_and_edit_and_retry_tests_again(
    slack: SlackDriver,
    fake: FakeSlack,
    port: int,
    later_server: Callable[[], RunningServer],
) -> None:
    url = f"http://127.0.0.1:{port}/mcp"
    reply = await slack.submit_connect(name="later", url=url)

    assert (reply.status, reply.text) == (200, "")
    [post] = await fake.await_for("chat.postEphemeral")
    text = post["body"]["text"]
    assert text.startswith("❌ Couldn't connect *later*: could not reach the server")
    [actions] = [b for b in post["body"]["blocks"] if b["type"] == "actions"]
    [connection] = await slack.connections()
    assert [(b["action_id"], b["value"]) for b in actions["elements"]] == [
        ("mcp_retry", str(connection.id)),
        ("mcp_edit", str(connection.id)),
    ]
    assert connection.status == ConnectionStatus.ERROR

    later_server()
    retry = await slack.click("mcp_retry", str(connection.id))

    assert (retry.status, retry.text) == (200, "")
    assert (await slack.reply_text(retry)).startswith(f"🟢 *later*: {TOY_TOOLS} tools, answered in ")
    [connection] = await slack.connections()
    assert connection.status == ConnectionStatus.HEALTHY


@pytest.mark.anyio
async def test_edit_reopens_the_form_and_saving_changes_the_connection_in_place_keeping_its_token(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer, free_url: str
) -> None:
    broken = await slack.connect("mine", free_url, token=BEARER)
    assert broken.status == ConnectionStatus.ERROR
    await fake.await_for("chat.postEphemeral")

    await slack.click("mcp_edit", str(broken.id))

    [call] = await fake.await_for("views.open")
    view = call["body"]["view"]
    initial = {
        b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"
    }
    assert initial == {
        "name": "mine",
        "url": free_url,
        "transport": "streamable_http",
        "bearer_token": None,
        "header_name": None,
        "header_value": None,
    }
    metadata = json.loads(view["private_metadata"])
    assert metadata == {"channel": "C_TEST", "card": "custom", "edit": str(broken.id)}

    saved = await slack.submit_connect(name="mine", url=bearer_server.url, metadata=metadata)

    assert (saved.status, saved.text) == (200, "")
    posts = await fake.await_for("chat.postEphemeral", 2)
    assert posts[-1]["body"]["text"] == f"✅ Connected *mine* — {TOY_TOOLS} tools available"
    await listeners_done()
    [connection] = await slack.connections()
    assert (connection.url, connection.status) == (bearer_server.url, ConnectionStatus.HEALTHY)
    assert connection.id == broken.id  # same row: its usage history stays with it
    assert connection.credential_ref == broken.credential_ref
    assert await stored_credentials(slack) == 1
