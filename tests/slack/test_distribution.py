"""A distributed app over the wire: workspaces install it through /slack/install and
/slack/oauth_redirect (Bolt's OAuth flow against the fake Slack's oauth.v2.access), each
request's Web API calls carry its own workspace's token, nothing of one workspace shows in
another (both directions), a rotating token is refreshed before it expires, and an uninstall
deletes that workspace's tokens at once and marks its data for deletion."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.distribution import INSTALL_PATH, REDIRECT_PATH
from mcp_core.services import Services, build_services
from tests.slack.conftest import SECRET, listeners_done, serve, slack_settings
from tests.support.fake_slack import (
    FORM,
    JSON,
    FakeSlack,
    app_home_opened_event,
    post_signed,
    slash_command,
    slash_command_body,
    view_submission_body,
)
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio

CLIENT_ID, CLIENT_SECRET = "1111.2222", "client-secret-for-tests"
T_A, T_B = "T_WS_A", "T_WS_B"
PERSON = "U0SAME"  # the same user id in both workspaces (as an Enterprise Grid W… id would be)


@asynccontextmanager
async def distributed(
    tmp_path: Path, fake: FakeSlack, *, rotation: bool = False
) -> AsyncIterator[tuple[str, Services]]:
    fake.register_app(CLIENT_ID, CLIENT_SECRET, rotation=rotation)
    settings = slack_settings(
        tmp_path, fake, slack_bot_token=None, slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET
    )
    assert settings.multi_workspace
    services = await build_services(settings)
    try:
        async with serve(services) as url:
            yield url, services
    finally:
        await services.aclose()


async def install(url: str, fake: FakeSlack, team_id: str, **authorize: Any) -> int:
    """Add to Slack, as a browser does it: the install page, Allow on Slack, the redirect back."""
    base = url.removesuffix("/slack/events")
    async with aiohttp.ClientSession() as browser:
        async with browser.get(base + INSTALL_PATH) as page:
            assert page.status == 200
            html = await page.text()
        state = re.search(r"state=([^&\"']+)", html).group(1)
        assert f"client_id={CLIENT_ID}" in html
        code = fake.authorize(
            CLIENT_ID, team_id=team_id, team_name=f"Team {team_id}", user_id=PERSON, **authorize
        )
        cookie = {"Cookie": f"slack-app-oauth-state={state}"}
        async with browser.get(
            base + REDIRECT_PATH, params={"code": code, "state": state}, headers=cookie
        ) as back:
            return back.status


async def command(url: str, fake: FakeSlack, text: str, team_id: str, user: str = PERSON) -> tuple[int, str]:
    response_url = fake.response_url(f"{team_id}-{len(fake.requests)}")
    body = slash_command_body(
        text,
        user_id=user,
        team_id=team_id,
        response_url=response_url,
        trigger_id=f"trig-{len(fake.requests)}",
    )
    status, _, _ = await post_signed(url, body, FORM, SECRET)
    await listeners_done()
    return status, response_url.split(str(fake.port), 1)[1]


async def event(url: str, fake: FakeSlack, payload: dict[str, Any]) -> int:
    status, _, _ = await post_signed(url, json.dumps(payload), JSON, SECRET)
    await listeners_done()
    return status


def bot_token(fake: FakeSlack, team_id: str) -> str:
    """The first bot token the fake issued in ``team_id``."""
    return next(
        t.value
        for t in fake.oauth.tokens.values()
        if t.install.team_id == team_id and t.kind == "bot" and not t.refresh
    )


def made_with(fake: FakeSlack, method: str) -> list[tuple[str, str]]:
    """(team, token) of each call to ``method``."""
    return [(c["team_id"], c["token"]) for c in fake.calls(method)]


async def test_two_workspaces_install_and_each_request_uses_its_own_token(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with distributed(tmp_path, fake) as (url, services):
        assert await install(url, fake, T_A) == 200
        assert await install(url, fake, T_B) == 200
        await command(url, fake, "connect", T_A)
        await command(url, fake, "connect", T_B)
        counted = await services.store.count_installations(CLIENT_ID)

    assert counted == (2, 2)
    [(team_a, token_a), (team_b, token_b)] = made_with(fake, "views.open")
    assert (team_a, team_b) == (T_A, T_B)
    assert token_a == bot_token(fake, T_A)
    assert token_b == bot_token(fake, T_B)
    assert token_a != token_b


async def test_nothing_of_one_workspace_shows_in_the_other_either_way(
    tmp_path: Path, fake: FakeSlack, toy_server: RunningServer
) -> None:
    async with distributed(tmp_path, fake) as (url, services):
        await install(url, fake, T_A)
        await install(url, fake, T_B)
        for team, name in ((T_A, "alpha"), (T_B, "bravo")):
            state = {"name": {"value": name}, "url": {"value": toy_server.url}, "bearer_token": {"value": ""}}
            body = view_submission_body(
                "mcp_connect_submit",
                state,
                user_id=PERSON,
                team_id=team,
                private_metadata=json.dumps({"channel": "C_TEST"}),
            )
            status, _, _ = await post_signed(url, body, FORM, SECRET)
            assert status == 200
            await listeners_done()
        _, in_a = await command(url, fake, "list", T_A)
        _, in_b = await command(url, fake, "list", T_B)
        await event(url, fake, fake.oauth.event_callback(app_home_opened_event(PERSON), team_id=T_B))
        names_a = [c.name for c in await services.store.list_connections(T_A, PERSON)]
        names_b = [c.name for c in await services.store.list_connections(T_B, PERSON)]

    listed_a = json.dumps(fake.calls(in_a)[0]["body"])
    listed_b = json.dumps(fake.calls(in_b)[0]["body"])
    assert (names_a, names_b) == (["alpha"], ["bravo"])
    assert "alpha" in listed_a
    assert "bravo" not in listed_a
    assert "bravo" in listed_b
    assert "alpha" not in listed_b
    [home] = [
        c for c in fake.calls("views.publish") if c["team_id"] == T_B and "bravo" in json.dumps(c["body"])
    ][-1:]
    assert "alpha" not in json.dumps(home["body"])
    assert {team for team, _ in made_with(fake, "chat.postEphemeral")} <= {T_A, T_B}


async def test_an_uninstall_deletes_the_tokens_at_once_and_marks_the_data_for_later(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with distributed(tmp_path, fake) as (url, services):
        await install(url, fake, T_A)
        await install(url, fake, T_B)

        assert await event(url, fake, fake.uninstall(T_A)) == 200

        store = services.store
        gone = await store.newest_installation(CLIENT_ID, "", T_A)
        kept = await store.newest_installation(CLIENT_ID, "", T_B)
        before = len(fake.calls("views.open"))
        await command(url, fake, "connect", T_A)  # Bolt finds no installation: nothing is sent
        await command(url, fake, "connect", T_B)
        async with store.engine.connect() as conn:
            marked = (await conn.exec_driver_sql("SELECT team_id, reason FROM mcp_workspace_removals")).all()

    assert gone is None
    assert kept is not None
    assert [team for team, _ in made_with(fake, "views.open")[before:]] == [T_B]
    assert [tuple(row) for row in marked] == [(T_A, "app_uninstalled")]


async def test_a_revoked_bot_token_is_deleted_and_the_workspace_marked(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with distributed(tmp_path, fake) as (url, services):
        await install(url, fake, T_A)
        await install(url, fake, T_B)

        assert await event(url, fake, fake.revoke_tokens(T_B)) == 200

        gone = await services.store.newest_installation(CLIENT_ID, "", T_B)
        kept = await services.store.newest_installation(CLIENT_ID, "", T_A)

    assert gone is None
    assert kept is not None


async def test_a_rotating_token_is_refreshed_before_it_expires(tmp_path: Path, fake: FakeSlack) -> None:
    async with distributed(tmp_path, fake, rotation=True) as (url, services):
        await install(url, fake, T_A)
        first = bot_token(fake, T_A)
        # Eleven and a half hours later, on both sides: half an hour left, inside Bolt's two.
        fake.advance_clock(43_200 - 30 * 60)
        record = await services.store.newest_installation(CLIENT_ID, "", T_A)
        data = {**record.data, "bot_token_expires_at": int(time.time()) + 30 * 60}
        await services.store.save_installation(record.model_copy(update={"data": data}))

        await command(url, fake, "connect", T_A)
        await command(url, fake, "connect", T_A)

    refreshes = [c for c in fake.calls("oauth.v2.access") if c["body"].get("grant_type") == "refresh_token"]
    used = [token for _, token in made_with(fake, "views.open")]
    assert len(refreshes) == 1  # once: the second request finds the fresh token saved
    assert first.startswith("xoxe.xoxb-")
    assert used[0] == used[1] != first


async def test_an_org_wide_install_answers_for_a_workspace_of_its_org(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with distributed(tmp_path, fake) as (url, services):
        assert (
            await install(
                url, fake, None, enterprise_id="E_ORG", enterprise_name="Org", is_enterprise_install=True
            )
            == 200
        )
        fields = slash_command(
            "connect", user_id=PERSON, team_id="T_IN_ORG", response_url=fake.response_url("grid")
        )
        fields |= {"enterprise_id": "E_ORG", "is_enterprise_install": "true"}
        status, _, _ = await post_signed(url, urlencode(fields), FORM, SECRET)
        await listeners_done()
        org_token = await services.store.installation_for_team(CLIENT_ID, "T_IN_ORG")

    assert status == 200
    [(_, token)] = made_with(fake, "views.open")
    assert "E_ORG" in token
    assert org_token is not None  # the workspace's org was remembered: work outside a request finds it
    assert org_token.is_enterprise_install
