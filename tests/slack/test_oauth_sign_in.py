"""OAuth sign-in over Slack's wire: the link, the browser's callback, the DM, the token in use.

The bot is served like production (``http_app`` on a loopback port, signed requests, the fake
Slack, the real composition root with a scripted LLM); the MCP server is a real
OAuth-protected one with its own authorization server (``tests/servers/oauth_server.py``).
The person's browser is an HTTP client: it follows the Sign in button's link to the
authorization server (which approves at once) and brings the redirect's query back to the
bot's ``/oauth/callback``, as a browser would. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest
import sqlalchemy as sa

from bot import texts
from mcp_core.models import Connection, ConnectionStatus
from mcp_core.oauth import Owner
from mcp_core.services import Services, build_services
from mcp_core.store._tables import oauth_pending
from run_cards import BUILTIN_DIR
from tests import test_cli
from tests.slack.agent_harness import live_thread, record_posts, updates
from tests.slack.conftest import (
    SECRET,
    TEAM,
    USER,
    USER_B,
    Reply,
    SlackDriver,
    listeners_done,
    message_text,
    serve,
    slack_settings,
)
from tests.slack.test_process import (
    START_TIMEOUT_S,
    _assert_stopped_cleanly,
    _free_port,
    _start,
    _stop,
    _wait_health,
)
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.fake_slack import (
    FORM,
    FakeSlack,
    app_mention_event,
    message_im_event,
    post_signed,
    slash_command,
    view_submission,
    view_submission_body,
)
from tests.support.oauth_server import OAuthServer, afollow_sign_in, start_oauth_server

pytestmark = pytest.mark.anyio

NAME = "tracker"
SERVER_TOOLS = 4
"""The OAuth server's tools: whoami, echo, list_issues, create_issue."""
TURN_S = 20.0
PROCESS_SECRET = "process-signing-secret"
ADMIN = "U0ADMIN"
CLIENT_SECRET = "admin-client-secret-7d41"

check_env = test_cli.env
"""A clean environment and working directory for ``slack-mcp-bot check`` (tests/test_cli.py's)."""
invoke = test_cli.invoke


@pytest.fixture
async def oauth() -> AsyncIterator[OAuthServer]:
    async with start_oauth_server("generic") as server:
        yield server


@pytest.fixture
async def closed_oauth() -> AsyncIterator[OAuthServer]:
    """A server that lets no client register itself (no DCR, no metadata documents)."""
    async with start_oauth_server(dcr=False, cimd=False) as server:
        yield server


async def follow_sign_in(link: str) -> dict[str, str]:
    """What the person's browser brings back to the bot's callback: the authorization server's
    redirect query (it approves at once)."""
    result = await afollow_sign_in(link)
    assert result.pop("redirect_uri", "").endswith("/oauth/callback"), result
    return result


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path, fake: FakeSlack, llm: FakeOpenAI) -> AsyncIterator[Services]:
    """The conftest's services, with the scripted LLM (the slack fixture serves these)."""
    settings = slack_settings(
        tmp_path, fake, openai_api_key=llm.api_key, openai_base_url=llm.base_url, admin_user_ids=[ADMIN]
    )
    built = await build_services(settings)
    try:
        yield built
    finally:
        await built.aclose()


# --- the browser and what Slack received -------------------------------------------------------


async def browser_get(url: str, params: dict[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.get(url, params=params)


def callback_url(slack: SlackDriver) -> str:
    return slack.url.removesuffix("/slack/events") + "/oauth/callback"


def buttons(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = body.get("blocks") or (body.get("view") or {}).get("blocks") or []
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"]]


def sign_in_link(body: dict[str, Any]) -> str:
    [link] = [b["url"] for b in buttons(body) if "url" in b]
    return link


def state_of(link: str) -> str:
    return dict(parse_qsl(urlsplit(link).query))["state"]


async def submit(slack: SlackDriver, oauth: OAuthServer, name: str = NAME) -> None:
    reply = await slack.submit_connect(name=name, url=oauth.mcp_url)
    assert (reply.status, reply.text) == (200, ""), reply
    await listeners_done()


async def connect_waiting(slack: SlackDriver, fake: FakeSlack, oauth: OAuthServer) -> str:
    """The custom card submitted with the OAuth server's URL; the Sign in link it answered."""
    await submit(slack, oauth)
    [ephemeral] = fake.calls("chat.postEphemeral")
    return sign_in_link(ephemeral["body"])


async def sign_in(slack: SlackDriver, link: str) -> httpx2.Response:
    """The person clicks the link: the authorization server, then the bot's callback page."""
    page = await browser_get(callback_url(slack), await follow_sign_in(link))
    await listeners_done()
    return page


async def connect_signed_in(slack: SlackDriver, fake: FakeSlack, oauth: OAuthServer) -> Connection:
    page = await sign_in(slack, await connect_waiting(slack, fake, oauth))
    assert page.status_code == 200, page.text
    return await stored(slack)


async def stored(slack: SlackDriver, name: str = NAME, user: str = USER) -> Connection:
    connection = await slack.services.store.find_connection(TEAM, user, name)
    assert connection is not None
    return connection


def dms(fake: FakeSlack, user: str = USER) -> list[dict[str, Any]]:
    return [c["body"] for c in fake.calls("chat.postMessage") if c["body"].get("channel") == user]


async def pending_sign_ins(services: Services) -> int:
    async with services.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(oauth_pending))).scalar_one()


# --- connect, sign in, use ---------------------------------------------------------------------


async def test_connecting_a_server_that_signs_people_in_answers_a_sign_in_link_and_the_callback_connects_it(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    await submit(slack, oauth)

    [ephemeral] = fake.calls("chat.postEphemeral")
    body = ephemeral["body"]
    assert (body["channel"], body["user"]) == ("C_TEST", USER)
    assert body["text"] == texts.sign_in_needed(NAME)
    [button] = buttons(body)
    assert button["text"]["text"] == "Sign in to tracker"
    link = button["url"]
    assert link.startswith(f"{oauth.issuer}/authorize?")
    [home] = fake.calls("views.publish")  # the Home tab's entry carries the same link
    assert sign_in_link(home["body"]) == link
    assert "🟠 needs sign-in" in message_text(home["body"])
    waiting = await stored(slack)
    assert (waiting.status, waiting.needs_sign_in) == (ConnectionStatus.NEEDS_AUTH, True)
    assert dms(fake) == []

    page = await sign_in(slack, link)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Connected — you can close this tab" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    [dm] = dms(fake)
    assert dm["text"] == f"✅ Connected *tracker* — {SERVER_TOOLS} tools available"
    connected = await stored(slack)
    assert connected.status == ConnectionStatus.HEALTHY
    assert len(connected.tools) == SERVER_TOOLS
    home = fake.calls("views.publish")[-1]["body"]
    assert "🟢 healthy" in message_text(home)
    assert not any("url" in b for b in buttons(home))


async def test_connect_linear_answers_a_sign_in_button_with_the_cards_name(
    oauth: OAuthServer, tmp_path: Path, fake: FakeSlack
) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    linear = (BUILTIN_DIR / "linear.yaml").read_text()
    (cards / "linear.yaml").write_text(linear.replace("https://mcp.linear.app/mcp", oauth.mcp_url))
    services = await build_services(slack_settings(tmp_path, fake, run_cards_dir=cards))
    try:
        async with serve(services) as url:
            slack = SlackDriver(url, fake, services)
            await slack.command("connect linear")
            [opened] = await fake.await_for("views.open")
            metadata = json.loads(opened["body"]["view"]["private_metadata"])
            reply = await slack.submit_connect(name="linear", url="", metadata=metadata)
            assert (reply.status, reply.text) == (200, "")
            await listeners_done()
            [ephemeral] = fake.calls("chat.postEphemeral")
            page = await sign_in(slack, sign_in_link(ephemeral["body"]))
            await listeners_done()
    finally:
        await services.aclose()

    assert metadata["card"] == "linear"
    assert ephemeral["body"]["text"] == texts.sign_in_needed("Linear")
    assert [b["text"]["text"] for b in buttons(ephemeral["body"])] == ["Sign in to Linear"]
    assert "Connected — you can close this tab" in page.text
    assert [dm["text"] for dm in dms(fake)] == ["✅ Connected *linear* — 4 tools available"]


async def test_after_signing_in_a_mention_in_a_channel_uses_the_servers_tool_with_the_persons_token(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack, llm: FakeOpenAI
) -> None:
    await connect_signed_in(slack, fake, oauth)
    before = (oauth.stats())["mcp_unauthorized"]
    posts = record_posts(fake)
    live_thread(fake, posts)
    llm.call_tools((f"{NAME}__whoami", {}))
    llm.reply("You are signed in.")

    event = app_mention_event("who am I on the tracker?", user_id=USER)
    await slack.event(event)
    await llm.drained(TURN_S)
    await listeners_done(TURN_S)

    assert questions(fake) == []  # whoami is read-only, as its server says
    [tool_message] = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert json.loads(tool_message)["subject"] == "user"  # the token's person, as the server saw it
    assert (oauth.stats())["mcp_unauthorized"] == before
    answer = updates(fake, posts.ts_of("🤔"))[-1]
    assert answer["text"] == "You are signed in."


def questions(fake: FakeSlack) -> list[str]:
    """Approval questions posted so far (the custom card's `writes` policy runs the server's
    read-only tools, such as whoami and list_issues, without one)."""
    return [
        text
        for c in fake.calls("chat.postMessage")
        if (text := str(c["body"].get("text", ""))).startswith(f"<@{USER}>, may I run")
    ]


# --- what the callback refuses -------------------------------------------------------------------


async def test_a_sign_in_link_works_once_the_second_visit_says_so_and_changes_nothing(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    query = await follow_sign_in(await connect_waiting(slack, fake, oauth))
    first = await browser_get(callback_url(slack), query)
    assert first.status_code == 200
    before = await stored(slack)

    again = await browser_get(callback_url(slack), query)
    await listeners_done()

    assert again.status_code == 400
    assert "already used" in again.text
    assert query["code"] not in again.text
    assert query["state"] not in again.text
    assert len(dms(fake)) == 1
    assert await stored(slack) == before
    assert (oauth.stats())["code_reuse"] == 0  # the code was never sent twice


async def test_an_expired_sign_in_link_says_so_and_nothing_is_connected(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    link = await connect_waiting(slack, fake, oauth)
    async with slack.services.store.engine.begin() as conn:
        await conn.execute(
            sa.update(oauth_pending).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    page = await sign_in(slack, link)

    assert page.status_code == 400
    assert "expired" in page.text
    assert dms(fake) == []
    assert (await stored(slack)).needs_sign_in
    assert (oauth.stats())["token_requests"] == {}


async def test_declining_at_the_sign_in_server_says_so_and_the_connection_still_waits(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    link = await connect_waiting(slack, fake, oauth)

    page = await browser_get(callback_url(slack), {"error": "access_denied", "state": state_of(link)})
    await listeners_done()

    assert page.status_code == 400
    assert "tracker: the sign-in was not completed (access_denied)" in page.text
    assert dms(fake) == []
    assert (await stored(slack)).needs_sign_in
    assert (oauth.stats())["token_requests"] == {}


@pytest.mark.parametrize(
    "query",
    [{}, {"code": "c", "state": "<script>alert(1)</script>"}, {"error": "x" * 100}],
    ids=["empty", "unknown-state-with-markup", "no-state"],
)
async def test_a_callback_the_bot_did_not_start_says_so_and_echoes_nothing(
    slack: SlackDriver, fake: FakeSlack, query: dict[str, str]
) -> None:
    page = await browser_get(callback_url(slack), query)
    await listeners_done()

    assert page.status_code == 400
    assert "Start again from Slack" in page.text or "Use Sign in again" in page.text
    assert "<script>" not in page.text
    assert "x" * 100 not in page.text
    assert fake.calls("chat.postMessage") == []


async def test_a_head_request_to_the_callback_does_not_spend_the_sign_in(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    query = await follow_sign_in(await connect_waiting(slack, fake, oauth))
    async with httpx2.AsyncClient(timeout=10) as http:
        head = await http.head(callback_url(slack), params=query)

    assert head.status_code == 405
    assert (await browser_get(callback_url(slack), query)).status_code == 200


# --- Sign in again ---------------------------------------------------------------------------------


async def test_mcp_list_shows_needs_sign_in_and_sign_in_again_answers_a_new_link_that_connects(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    first_link = await connect_waiting(slack, fake, oauth)
    waiting = await stored(slack)

    listed = await slack.command("list")
    [shown] = await slack.replies(listed)
    assert "*tracker* · 🟠 needs sign-in" in message_text(shown)
    [again] = [b for b in buttons(shown) if b["action_id"] == "mcp_sign_in_again"]
    assert (again["text"]["text"], again["value"]) == ("Sign in again", str(waiting.id))

    click = await slack.click("mcp_sign_in_again", again["value"])
    assert click.status == 200
    await listeners_done()
    [answer] = await slack.replies(click)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == texts.sign_in_again_needed(NAME)
    link = sign_in_link(answer)
    assert state_of(link) != state_of(first_link)

    page = await sign_in(slack, link)

    assert "Connected — you can close this tab" in page.text
    [dm] = dms(fake)
    assert dm["text"] == texts.connected(NAME, SERVER_TOOLS)


async def test_sign_in_again_on_the_home_tab_puts_the_new_link_in_the_connections_entry(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    await connect_waiting(slack, fake, oauth)
    waiting = await stored(slack)
    published = len(fake.calls("views.publish"))

    click = await slack.click("mcp_sign_in_again", str(waiting.id), in_home=True)
    await listeners_done()

    assert click.status == 200
    home = fake.calls("views.publish")[published]["body"]
    assert home["user_id"] == USER
    link = sign_in_link(home)
    assert (await sign_in(slack, link)).status_code == 200
    assert [dm["text"] for dm in dms(fake)] == [texts.connected(NAME, SERVER_TOOLS)]


async def test_sign_in_again_on_a_connection_that_is_signed_in_says_connected(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    connection = await connect_signed_in(slack, fake, oauth)

    click = await slack.click("mcp_sign_in_again", str(connection.id))
    await listeners_done()

    [answer] = await slack.replies(click)
    assert answer["text"] == texts.connected(NAME, SERVER_TOOLS)
    assert await pending_sign_ins(slack.services) == 0


async def test_sign_in_again_on_someone_elses_connection_is_refused_and_makes_no_link(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    await connect_waiting(slack, fake, oauth)
    alices = await stored(slack)
    pending = await pending_sign_ins(slack.services)

    click = await slack.click("mcp_sign_in_again", str(alices.id), user=USER_B)
    await listeners_done()

    [answer] = await slack.replies(click)
    assert answer["text"] == texts.NOT_YOUR_CONNECTION
    assert "url" not in json.dumps(answer.get("blocks") or [])
    assert await pending_sign_ins(slack.services) == pending


async def test_a_link_button_click_is_acked_and_nothing_else_happens(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    click = await slack.click("mcp_sign_in_link", "")
    await listeners_done()

    assert (click.status, click.text) == (200, "")
    assert [r["method"] for r in fake.requests] == ["auth.test"]  # Bolt's own, on its first request


# --- disconnect, client registration, the metadata document ---------------------------------------


async def test_disconnect_revokes_the_tokens_at_the_server(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    connection = await connect_signed_in(slack, fake, oauth)
    owner = Owner(TEAM, USER, connection.id)
    assert await slack.services.oauth.grants.load(owner) is not None

    click = await slack.click("mcp_disconnect", str(connection.id))
    await listeners_done()

    [answer] = await slack.replies(click)
    assert answer["text"] == texts.disconnected(NAME)
    stats = oauth.stats()
    assert stats["revocations"] >= 1
    assert stats["live_grants"] == 0
    assert await slack.services.oauth.grants.load(owner) is None


async def test_a_server_that_lets_no_client_register_says_what_an_admin_must_do(
    closed_oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    await submit(slack, closed_oauth)

    [ephemeral] = fake.calls("chat.postEphemeral")
    text = ephemeral["body"]["text"]
    assert text.startswith("❌ Couldn't connect *tracker*: its sign-in server")
    assert "does not let the bot register itself" in text
    assert "An admin must register the bot there and give it the client id" in text
    assert "OAUTH_" not in text  # the operator's clients serve their cards' own URLs only
    assert not any("url" in b for b in buttons(ephemeral["body"]))
    card_text = texts.oauth_client_missing("linear", "linear", "https://mcp.linear.app")
    assert "OAUTH_LINEAR_CLIENT_ID / OAUTH_LINEAR_CLIENT_SECRET" in card_text


async def test_an_admin_registers_the_bots_client_in_slack_and_goes_on_to_sign_in(
    closed_oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reply = await slack.submit_connect(name=NAME, url=closed_oauth.mcp_url, user=ADMIN)
    assert reply.status == 200
    await listeners_done()
    [ephemeral] = fake.calls("chat.postEphemeral")
    redirect = slack.services.oauth.redirect_url
    assert f"with the callback URL `{redirect}`" in ephemeral["body"]["text"]
    [register] = [b for b in buttons(ephemeral["body"]) if b["action_id"] == "mcp_oauth_client_open"]
    connection = await stored(slack, user=ADMIN)
    assert register["value"] == str(connection.id)
    closed_oauth.add_client(  # the admin registers the bot at the provider
        "admin-client",
        redirect_uris=[redirect],
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
    )

    await slack.click("mcp_oauth_client_open", register["value"], user=ADMIN)
    [opened] = await fake.await_for("views.open")
    form = opened["body"]["view"]
    assert form["callback_id"] == "mcp_oauth_client_submit"
    assert [b.get("block_id") for b in form["blocks"] if b["type"] == "input"] == [
        "client_id",
        "client_secret",
    ]
    blank = await submit_client_form(slack, form, " ", user=ADMIN)
    assert blank.json() == {"response_action": "errors", "errors": {"client_id": texts.CLIENT_ID_FORMAT}}
    saved = await submit_client_form(slack, form, "admin-client", CLIENT_SECRET, user=ADMIN)
    assert (saved.status, saved.text) == (200, "")
    await listeners_done()
    answer = fake.calls("chat.postEphemeral")[-1]["body"]
    link = sign_in_link(answer)
    page = await sign_in(slack, link)

    assert answer["text"].startswith(texts.client_registered(NAME))
    assert "client_id=admin-client" in link
    assert "Connected — you can close this tab" in page.text
    assert (await stored(slack, user=ADMIN)).status == ConnectionStatus.HEALTHY
    assert CLIENT_SECRET not in fake.all_traffic_text()
    assert CLIENT_SECRET not in caplog.text


async def test_only_an_admin_gets_or_may_use_the_client_form(
    closed_oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack
) -> None:
    await submit(slack, closed_oauth)
    [ephemeral] = fake.calls("chat.postEphemeral")
    assert not any(b["action_id"] == "mcp_oauth_client_open" for b in buttons(ephemeral["body"]))
    connection = await stored(slack)

    click = await slack.click("mcp_oauth_client_open", str(connection.id))
    await listeners_done()
    form = {"private_metadata": json.dumps({"connection": str(connection.id)})}
    submitted = await submit_client_form(slack, form, "sneaky-client")

    [refused] = await slack.replies(click)
    assert refused["text"] == texts.ADMINS_ONLY
    assert fake.calls("views.open") == []
    assert submitted.json() == {"response_action": "errors", "errors": {"client_id": texts.ADMINS_ONLY}}
    assert await slack.services.oauth.grants.team_client(TEAM, connection.url or "") is None


async def submit_client_form(
    slack: SlackDriver, form: dict[str, Any], client_id: str, secret: str = "", *, user: str = USER
) -> Reply:
    """The admin's client form submitted as Slack sends it."""
    body = view_submission_body(
        "mcp_oauth_client_submit",
        {"client_id": {"value": client_id}, "client_secret": {"value": secret}},
        user_id=user,
        team_id=TEAM,
        private_metadata=form["private_metadata"],
    )
    status, headers, text = await post_signed(slack.url, body, FORM, SECRET)
    return Reply(status, headers, text)


async def test_the_client_metadata_document_is_not_served_without_a_public_https_redirect(
    slack: SlackDriver,
) -> None:
    response = await browser_get(callback_url(slack).replace("/callback", "/client-metadata.json"))

    assert response.status_code == 404


async def test_the_client_metadata_document_names_the_bot_and_its_https_callback(
    tmp_path: Path, fake: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, fake, oauth_redirect_url="https://bot.example.com/oauth/callback")
    services = await build_services(settings)
    try:
        async with serve(services) as url:
            response = await browser_get(url.removesuffix("/slack/events") + "/oauth/client-metadata.json")
    finally:
        await services.aclose()

    assert response.status_code == 200
    document = response.json()
    assert document["client_id"] == "https://bot.example.com/oauth/client-metadata.json"
    assert document["redirect_uris"] == ["https://bot.example.com/oauth/callback"]
    assert document["client_name"] == "Slack MCP bot"


# --- the agent: a tool that needs a sign-in mid-answer --------------------------------------------


async def revoked_mid_answer(
    slack: SlackDriver, fake: FakeSlack, oauth: OAuthServer, llm: FakeOpenAI, event: dict[str, Any]
) -> dict[str, Any]:
    """Signed in, then the person revokes the app at the provider; the next answer's last edit."""
    await connect_signed_in(slack, fake, oauth)
    oauth.revoke_all()
    posts = record_posts(fake)
    live_thread(fake, posts)
    llm.call_tools((f"{NAME}__list_issues", {}))
    llm.reply("I could not reach the tracker: sign in again, please.")
    await slack.event(event)  # list_issues is read-only: no question
    await llm.drained(TURN_S)
    await listeners_done(TURN_S)
    progress = posts.ts_of("🤔")
    [post] = [body for body, ts in posts.made if ts == progress]
    assert post["thread_ts"] == event["ts"]  # the answer stays in the thread it answers
    return updates(fake, progress)[-1]


async def test_a_tool_needing_a_sign_in_mid_answer_in_a_channel_gets_a_sign_in_button_only_the_asker_can_use(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack, llm: FakeOpenAI
) -> None:
    answer = await revoked_mid_answer(slack, fake, oauth, llm, app_mention_event("issues?", user_id=USER))
    connection = await stored(slack)

    assert answer["text"] == "I could not reach the tracker: sign in again, please."
    [button] = buttons(answer)
    assert button["text"]["text"] == "Sign in to tracker"
    assert "url" not in button  # others see this message: no link in it
    assert button["value"] == str(connection.id)

    stranger = await slack.click(button["action_id"], button["value"], user=USER_B)
    await listeners_done()
    [refused] = await slack.replies(stranger)
    assert refused["text"] == texts.NOT_YOUR_CONNECTION

    mine = await slack.click(button["action_id"], button["value"])
    await listeners_done()
    [offered] = await slack.replies(mine)
    assert offered["response_type"] == "ephemeral"
    assert (await sign_in(slack, sign_in_link(offered))).status_code == 200
    assert (await stored(slack)).status == ConnectionStatus.HEALTHY


async def test_a_tool_needing_a_sign_in_mid_answer_in_a_dm_gets_the_link_itself(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack, llm: FakeOpenAI
) -> None:
    answer = await revoked_mid_answer(slack, fake, oauth, llm, message_im_event("issues?", user_id=USER))

    [button] = buttons(answer)
    assert button["text"]["text"] == "Sign in to tracker"
    assert (await sign_in(slack, button["url"])).status_code == 200
    assert (await stored(slack)).status == ConnectionStatus.HEALTHY


# --- secrets ---------------------------------------------------------------------------------------


async def test_no_code_state_token_or_verifier_reaches_slack_or_the_log(
    oauth: OAuthServer, slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    grants = slack.services.oauth.grants
    taken: list[Any] = []
    take = grants.take_pending

    async def spy(state: str) -> Any:
        taken.append(pending := await take(state))
        return pending

    grants.take_pending = spy  # type: ignore[method-assign]
    link = await connect_waiting(slack, fake, oauth)
    query = await follow_sign_in(link)
    page = await browser_get(callback_url(slack), query)
    await listeners_done()
    connection = await stored(slack)
    grant = await grants.load(Owner(TEAM, USER, connection.id))
    assert page.status_code == 200
    assert grant is not None
    assert taken

    secrets = {
        "code": query["code"],
        "code_verifier": taken[0].secrets["code_verifier"],
        **{kind: value for kind, value in grant.tokens.items() if kind.endswith("_token") and value},
    }
    assert {"access_token", "refresh_token"} <= secrets.keys()
    state = query["state"]
    traffic = fake.all_traffic_text()
    log = caplog.text
    for kind, value in secrets.items():
        assert value not in traffic, kind
        assert value not in log, kind
        assert value not in page.text, kind
    assert state not in log
    assert state not in page.text
    assert traffic.replace(link, "").count(state) == 0  # only inside the Sign in links


# --- the processes: Socket Mode's listener, HTTP mode's own port ------------------------------------


async def test_socket_mode_serves_the_sign_in_on_oauth_port_from_connect_to_dm_and_stops_on_sigterm(
    oauth: OAuthServer, fake: FakeSlack, tmp_path: Path
) -> None:
    port = _free_port()
    process = _start(["run"], fake, tmp_path, **process_env(port), SLACK_APP_TOKEN="xapp-process-test")
    try:
        envelope = await fake.apush_envelope("interactive", connect_form(oauth), timeout_s=START_TIMEOUT_S)
        assert await fake.await_ack(envelope, timeout_s=START_TIMEOUT_S) == {"envelope_id": envelope}
        [ephemeral] = await fake.await_for("chat.postEphemeral", timeout_s=TURN_S)
        link = sign_in_link(ephemeral["body"])
        query = await follow_sign_in(link)
        listener = f"http://127.0.0.1:{port}"
        page = await browser_get(f"{listener}/oauth/callback", query)
        [dm] = await fake.await_for("chat.postMessage", timeout_s=TURN_S)
        metadata = await browser_get(f"{listener}/oauth/client-metadata.json")
    finally:
        output, stop_s = _stop(process)

    assert redirect_of(link) == f"http://localhost:{port}/oauth/callback"
    assert "Connected — you can close this tab" in page.text
    assert (dm["body"]["channel"], dm["body"]["text"]) == (USER, texts.connected(NAME, SERVER_TOOLS))
    assert metadata.status_code == 404
    assert f"serving OAuth sign-in callbacks on http://127.0.0.1:{port}/oauth/callback" in output
    _assert_stopped_cleanly(process, output, stop_s, "xapp-process-test", query["code"], query["state"])


async def test_socket_mode_with_oauth_port_taken_says_so_in_one_line_and_still_answers_slack(
    fake: FakeSlack, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start(["run"], fake, tmp_path, **process_env(port), SLACK_APP_TOKEN="xapp-process-test")
        try:
            command = slash_command(
                "help", user_id=USER, team_id=TEAM, response_url=fake.response_url("help")
            )
            envelope = await fake.apush_envelope("slash_commands", command, timeout_s=START_TIMEOUT_S)
            await fake.await_ack(envelope, timeout_s=START_TIMEOUT_S)
            [reply] = await fake.await_for("/respond/help")
        finally:
            output, stop_s = _stop(process)

    assert "/mcp connect" in reply["body"]["text"]
    [line] = [line for line in output.splitlines() if "OAuth" in line]
    assert f"OAuth sign-in callbacks will not work: cannot listen on 127.0.0.1:{port} (OAUTH_PORT)" in line
    assert "Set OAUTH_PORT to a free port" in line
    _assert_stopped_cleanly(process, output, stop_s, "xapp-process-test")


async def test_http_mode_serves_the_sign_in_callback_on_its_own_port(
    oauth: OAuthServer, fake: FakeSlack, tmp_path: Path
) -> None:
    port = _free_port()
    process = _start(
        ["run", "--http", "--port", str(port)],
        fake,
        tmp_path,
        **process_env(_free_port()),
        SLACK_SIGNING_SECRET=PROCESS_SECRET,
    )
    try:
        _wait_health(f"http://127.0.0.1:{port}/healthz", process)
        body = urlencode({"payload": json.dumps(connect_form(oauth))})
        status, _, _ = await post_signed(f"http://127.0.0.1:{port}/slack/events", body, FORM, PROCESS_SECRET)
        [ephemeral] = await fake.await_for("chat.postEphemeral", timeout_s=TURN_S)
        link = sign_in_link(ephemeral["body"])
        query = await follow_sign_in(link)
        page = await browser_get(f"http://127.0.0.1:{port}/oauth/callback", query)
        [dm] = await fake.await_for("chat.postMessage", timeout_s=TURN_S)
    finally:
        output, stop_s = _stop(process)

    assert status == 200
    assert redirect_of(link) == f"http://localhost:{port}/oauth/callback"
    assert "Connected — you can close this tab" in page.text
    assert dm["body"]["text"] == texts.connected(NAME, SERVER_TOOLS)
    _assert_stopped_cleanly(process, output, stop_s, query["code"], query["state"])


def process_env(oauth_port: int) -> dict[str, str]:
    return {"OAUTH_PORT": str(oauth_port), "MCP_ALLOWED_HOSTS": "127.0.0.1,localhost"}


def connect_form(oauth: OAuthServer) -> dict[str, Any]:
    """The custom card's form submitted with the OAuth server's URL (a Socket Mode payload)."""
    return view_submission(
        "mcp_connect_submit",
        {"name": {"value": NAME}, "url": {"value": oauth.mcp_url}},
        user_id=USER,
        team_id=TEAM,
        private_metadata=json.dumps({"channel": "C_TEST", "card": "custom"}),
    )


def redirect_of(link: str) -> str:
    return dict(parse_qsl(urlsplit(link).query))["redirect_uri"]


# --- slack-mcp-bot check --------------------------------------------------------------------------


def oauth_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("OAuth sign-in:"))
    return [lines[start], *[line for line in lines[start + 1 :] if line.startswith("  ")]]


def test_check_without_a_redirect_url_says_sign_in_links_work_only_on_this_machine(
    check_env: pytest.MonkeyPatch,
) -> None:
    check_env.setenv("OAUTH_PORT", "3101")
    check_env.setenv("PORT", "3100")

    result = invoke("check")

    assert result.exit_code == 0, result.output
    assert oauth_lines(result.output) == [
        "OAuth sign-in: redirect URL http://localhost:3101/oauth/callback (Socket Mode, OAUTH_PORT), "
        "http://localhost:3100/oauth/callback (HTTP mode, PORT)",
        "  sign-in links work only from a browser on this machine "
        "(set OAUTH_REDIRECT_URL to https://<your host>/oauth/callback)",
    ]


def test_check_with_a_public_https_redirect_url_says_where_it_is_served(
    check_env: pytest.MonkeyPatch,
) -> None:
    check_env.setenv("OAUTH_REDIRECT_URL", "https://bot.example.com/oauth/callback")
    check_env.setenv("OAUTH_GITHUB_OAUTH_CLIENT_ID", "Iv1.operator")
    check_env.setenv("OAUTH_GITHUB_OAUTH_CLIENT_SECRET", CLIENT_SECRET)

    result = invoke("check")

    assert oauth_lines(result.output) == [
        "OAuth sign-in: redirect URL https://bot.example.com/oauth/callback",
        "  Socket Mode listens for it on 0.0.0.0:3001 (OAUTH_PORT); HTTP mode on its own port",
        "  client metadata document: https://bot.example.com/oauth/client-metadata.json",
        "  pre-registered OAuth clients for cards: github-oauth",
    ]
    assert CLIENT_SECRET not in result.output


@pytest.mark.parametrize(
    "url",
    ["http://bot.example.com/oauth/callback", "ftp://bot.example.com/oauth/callback", "bot.example.com"],
)
def test_check_refuses_a_redirect_url_that_is_not_https_or_localhost(
    check_env: pytest.MonkeyPatch, url: str
) -> None:
    check_env.setenv("OAUTH_REDIRECT_URL", url)

    result = invoke("check")

    [line] = oauth_lines(result.output)
    assert line.startswith(f"OAuth sign-in: PROBLEM: OAUTH_REDIRECT_URL {url!r}")


def test_check_says_a_redirect_path_elsewhere_must_be_forwarded_to_the_callback(
    check_env: pytest.MonkeyPatch,
) -> None:
    check_env.setenv("OAUTH_REDIRECT_URL", "https://bot.example.com/slack-bot/cb")

    result = invoke("check")

    assert "  the bot serves /oauth/callback: the proxy in front must forward this URL there" in oauth_lines(
        result.output
    )
