"""No stack trace and no secret reaches Slack (or the logs); failures read as what to do next."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from bot import texts
from mcp_core.errors import StoreError
from mcp_core.models import NewConnection
from tests.slack.conftest import TEAM, USER, SlackDriver, listeners_done
from tests.support.fake_slack import FakeSlack
from tests.support.registry import BEARER
from tests.support.servers import RunningServer

WRONG_TOKEN = "tok-wrong-8d1e2f3a4b"
HOSTILE = Path(__file__).resolve().parents[1] / "servers" / "hostile.py"
HOSTILE_TOKEN = "hostile-slack-tok-4e7d2a91"


@pytest.mark.anyio
async def test_a_full_connect_tools_test_disconnect_run_never_shows_the_token(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = await slack.connect("mine", bearer_server.url, token=BEARER)
    await slack.connect("wrong", bearer_server.url, token=WRONG_TOKEN)  # refused: the error is shown

    for text in ("list", "tools", "tools mine", "test", "test wrong"):
        await slack.command(text)
    await slack.click("mcp_edit", str(connection.id))
    await slack.click("mcp_disconnect", str(connection.id))
    await listeners_done()

    posts = [call["body"]["text"] for call in fake.calls("chat.postEphemeral")]
    assert posts[1].startswith("❌ Couldn't connect *wrong*: the server refused the credentials")
    traffic = fake.all_traffic_text()
    assert "Disconnected *mine*" in traffic
    for secret in (BEARER, WRONG_TOKEN):
        assert secret not in traffic
        assert secret not in caplog.text
    assert "Traceback" not in traffic


@pytest.mark.anyio
async def test_a_bug_in_a_handler_gives_a_friendly_message_and_no_traceback(
    slack: SlackDriver, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("internal detail /srv/app/secret-path.py")

    monkeypatch.setattr(slack.services.store, "list_connections", broken)

    reply = await slack.command("list")

    assert (reply.status, reply.text) == (200, "")  # the ack stands although the listener failed
    assert await slack.reply_text(reply) == texts.INTERNAL_ERROR
    assert "Traceback" not in fake.all_traffic_text()
    assert "secret-path" not in fake.all_traffic_text()
    assert "unhandled error in a Slack listener" in caplog.text  # the operator gets the details


@pytest.mark.anyio
async def test_a_core_error_is_shown_as_its_user_text(
    slack: SlackDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*_: object) -> None:
        raise StoreError("The database is not answering right now. Try again in a minute.")

    monkeypatch.setattr(slack.services.store, "list_connections", unreachable)

    reply = await slack.command("list")

    assert (reply.status, reply.text) == (200, "")
    assert (
        await slack.reply_text(reply) == "❌ The database is not answering right now. Try again in a minute."
    )


@pytest.mark.anyio
async def test_a_bug_after_a_modal_was_submitted_is_reported_by_dm(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(slack.services.registry, "add_connection", broken)

    reply = await slack.submit_connect(name="toy", url=toy_server.url)

    assert (reply.status, reply.text) == (200, "")
    [dm] = await fake.await_for("chat.postMessage")
    assert dm["body"]["text"] == texts.INTERNAL_ERROR


@pytest.mark.anyio
async def test_an_expired_trigger_says_to_run_connect_again(slack: SlackDriver, fake: FakeSlack) -> None:
    fake.overrides["views.open"] = lambda body: (200, {}, {"ok": False, "error": "expired_trigger_id"})

    reply = await slack.command("connect")

    assert await slack.reply_text(reply) == texts.FORM_DID_NOT_OPEN


@pytest.mark.anyio
async def test_a_failing_home_refresh_does_not_spoil_a_successful_action(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    fake.overrides["views.publish"] = lambda body: (200, {}, {"ok": False, "error": "internal_error"})
    connection = await slack.connect("toy", toy_server.url)

    reply = await slack.click("mcp_test", str(connection.id))

    assert (await slack.reply_text(reply)).startswith("🟢 *toy*: 9 tools")
    assert fake.calls("views.publish")
    traffic = fake.all_traffic_text()
    assert texts.INTERNAL_ERROR not in traffic
    assert "Traceback" not in traffic
    [post] = fake.calls("chat.postEphemeral")
    assert post["body"]["text"].startswith("✅ Connected *toy*")


@pytest.mark.anyio
async def test_a_server_that_puts_its_secret_in_tool_descriptions_never_gets_it_shown(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = slack.services.credentials
    assert credentials is not None
    ref = await credentials.put(TEAM, USER, {"env:HOSTILE_TOKEN": HOSTILE_TOKEN})
    new = NewConnection(
        name="hostile", transport="stdio", command=sys.executable, args=[str(HOSTILE)], credential_ref=ref
    )
    outcome = await slack.services.registry.add_connection(TEAM, USER, new)
    assert outcome.error is None, outcome.error

    for text in ("tools", "tools hostile", "list", "test hostile"):
        await slack.command(text)
    await listeners_done()

    traffic = fake.all_traffic_text()
    assert "Use the key [redacted] when asked." in traffic
    assert HOSTILE_TOKEN not in traffic
    assert HOSTILE_TOKEN not in caplog.text
