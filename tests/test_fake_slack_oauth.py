"""The fake Slack installs an app in several workspaces the way Slack does: OAuth v2 codes, one bot and one
token per workspace, token rotation, uninstall and revocation, over the wire with slack_sdk and Bolt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.installation_store.file import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fake_slack import API_APP_ID, TEAM_ID, FakeSlack, app_mention_event
from tests.support.fake_slack_oauth import CODE_TTL_S, ROTATING_TOKEN_TTL_S, AuthorizeRefused

pytestmark = pytest.mark.filterwarnings(
    "ignore:BasicAuth is deprecated:DeprecationWarning"
)  # slack_sdk's own

CLIENT_ID, SECRET = "111.222", "client-secret"
REDIRECT = "https://bot.example/slack/oauth_redirect"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        running.register_app(CLIENT_ID, SECRET, redirect_uri=REDIRECT)
        yield running


@pytest.fixture
async def web(fake: FakeSlack) -> AsyncIterator[Any]:
    """`web(token=None)`: a real AsyncWebClient against the fake (no token: the installer's client)."""
    clients: list[AsyncWebClient] = []

    def make(token: str | None = None) -> AsyncWebClient:
        clients.append(AsyncWebClient(token=token, base_url=fake.base_url))
        return clients[-1]

    yield make
    for client in clients:
        if client.session is not None:
            await client.session.close()


async def install(web: Any, fake: FakeSlack, team_id: str | None, **kwargs: Any) -> dict[str, Any]:
    """Authorize in `team_id` and exchange the code as an app's redirect handler would."""
    code = fake.authorize(CLIENT_ID, team_id=team_id, redirect_uri=REDIRECT, **kwargs)
    answer = await web().oauth_v2_access(
        client_id=CLIENT_ID, client_secret=SECRET, code=code, redirect_uri=REDIRECT
    )
    return answer.data


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value.response["error"]


@pytest.mark.anyio
async def test_two_workspaces_get_their_own_bot_token_and_auth_test_tells_them_apart(
    fake: FakeSlack, web: Any
) -> None:
    one = await install(web, fake, "T_ONE", team_name="One")
    two = await install(web, fake, "T_TWO", team_name="Two", user_id="U_ADMIN")

    assert one["ok"] is True
    assert one["app_id"] == API_APP_ID
    assert one["token_type"] == "bot"
    assert one["access_token"].startswith("xoxb-T_ONE-")
    assert one["bot_user_id"] == "U_BOT_T_ONE"
    assert one["team"] == {"id": "T_ONE", "name": "One"}
    assert one["enterprise"] is None
    assert one["is_enterprise_install"] is False
    assert one["authed_user"] == {"id": "U_INSTALLER"}
    assert "chat:write" in one["scope"].split(",")
    assert "refresh_token" not in one
    assert "expires_in" not in one
    assert two["access_token"] != one["access_token"]
    assert two["authed_user"] == {"id": "U_ADMIN"}

    auth_one = await web(one["access_token"]).auth_test()
    auth_two = await web(two["access_token"]).auth_test()
    assert (auth_one["team_id"], auth_one["team"], auth_one["user_id"]) == ("T_ONE", "One", "U_BOT_T_ONE")
    assert (auth_two["team_id"], auth_two["user_id"], auth_two["bot_id"]) == (
        "T_TWO",
        "U_BOT_T_TWO",
        "B_BOT_T_TWO",
    )
    assert auth_one["bot_id"] != auth_two["bot_id"]
    assert auth_one["is_enterprise_install"] is False
    assert auth_one.headers["x-oauth-scopes"] == one["scope"]


@pytest.mark.anyio
async def test_recorded_calls_say_which_workspace_token_they_carried(fake: FakeSlack, web: Any) -> None:
    one = await install(web, fake, "T_ONE")
    two = await install(web, fake, "T_TWO")

    posted = await web(two["access_token"]).chat_postMessage(channel="C1", text="hi two")
    await web(one["access_token"]).chat_postMessage(channel="C1", text="hi one")
    await web("xoxb-test").chat_postMessage(channel="C1", text="hi legacy")

    calls = await fake.await_for("chat.postMessage", 3)
    assert [(c["team_id"], c["body"]["text"]) for c in calls] == [
        ("T_TWO", "hi two"),
        ("T_ONE", "hi one"),
        (TEAM_ID, "hi legacy"),
    ]
    assert calls[0]["token"] == two["access_token"]
    assert posted["message"]["user"] == "U_BOT_T_TWO"
    assert posted["message"]["bot_id"] == "B_BOT_T_TWO"


@pytest.mark.anyio
async def test_client_credentials_go_as_basic_auth_or_as_form_fields(fake: FakeSlack, web: Any) -> None:
    await install(web, fake, "T_ONE")
    [basic] = fake.calls("oauth.v2.access")
    assert basic["headers"]["authorization"].startswith("Basic ")
    assert "client_secret" not in basic["body"]

    code = fake.authorize(CLIENT_ID, team_id="T_TWO")
    fields = {"client_id": CLIENT_ID, "client_secret": SECRET, "code": code}
    answer = await web().api_call("oauth.v2.access", data=fields)
    assert answer["team"]["id"] == "T_TWO"


@pytest.mark.anyio
async def test_a_code_works_once_and_only_for_ten_minutes(fake: FakeSlack, web: Any) -> None:
    code = fake.authorize(CLIENT_ID, team_id="T_ONE")
    await web().oauth_v2_access(client_id=CLIENT_ID, client_secret=SECRET, code=code)
    assert await error_of(web().oauth_v2_access(client_id=CLIENT_ID, client_secret=SECRET, code=code)) == (
        "invalid_code"
    )

    late = fake.authorize(CLIENT_ID, team_id="T_TWO")
    fake.advance_clock(CODE_TTL_S)
    assert await error_of(web().oauth_v2_access(client_id=CLIENT_ID, client_secret=SECRET, code=late)) == (
        "invalid_code"
    )


@pytest.mark.anyio
async def test_a_code_is_bound_to_the_app_it_was_issued_for(fake: FakeSlack, web: Any) -> None:
    fake.register_app("other", "other-secret")
    code = fake.authorize(CLIENT_ID, team_id="T_ONE")
    assert await error_of(
        web().oauth_v2_access(client_id="other", client_secret="other-secret", code=code)
    ) == ("invalid_code")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"client_id": "nobody", "client_secret": SECRET}, "invalid_client_id"),
        ({"client_id": CLIENT_ID, "client_secret": "wrong"}, "bad_client_secret"),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "code": "not-a-code"}, "invalid_code"),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "password"}, "invalid_grant_type"),
        (
            {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uri": "https://evil.example/"},
            "bad_redirect_uri",
        ),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uri": None}, "bad_redirect_uri"),
    ],
)
async def test_an_exchange_slack_would_refuse_is_refused(
    fake: FakeSlack, web: Any, arguments: dict[str, Any], error: str
) -> None:
    code = fake.authorize(CLIENT_ID, team_id="T_ONE", redirect_uri=REDIRECT)
    arguments = {"code": code, "redirect_uri": REDIRECT} | arguments
    assert await error_of(web().oauth_v2_access(**arguments)) == error
    answer = await web().oauth_v2_access(
        client_id=CLIENT_ID, client_secret=SECRET, code=code, redirect_uri=REDIRECT
    )
    assert answer["ok"] is True  # a refused exchange did not use the code up


def test_authorize_refuses_an_unknown_app_or_a_redirect_outside_the_registered_ones(fake: FakeSlack) -> None:
    with pytest.raises(AuthorizeRefused) as unknown:
        fake.authorize("nobody", team_id="T_ONE")
    with pytest.raises(AuthorizeRefused) as elsewhere:
        fake.authorize(CLIENT_ID, team_id="T_ONE", redirect_uri="https://bot.example/other")

    assert unknown.value.error == "invalid_client_id"
    assert elsewhere.value.error == "bad_redirect_uri"
    assert fake.authorize(
        CLIENT_ID, team_id="T_ONE", redirect_uri=f"{REDIRECT}/sub"
    )  # a subdirectory is fine


@pytest.mark.anyio
async def test_rotation_issues_expiring_pairs_and_a_refresh_token_works_once(
    fake: FakeSlack, web: Any
) -> None:
    first = await install(web, fake, "T_ONE", rotation=True)
    assert first["access_token"].startswith("xoxe.xoxb-1-T_ONE-")
    assert first["refresh_token"].startswith("xoxe-1-")
    assert first["expires_in"] == ROTATING_TOKEN_TTL_S

    refresh = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token"}
    second = await web().oauth_v2_access(**refresh, refresh_token=first["refresh_token"])
    assert second["token_type"] == "bot"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in"] == ROTATING_TOKEN_TTL_S
    assert (second["team"]["id"], second["bot_user_id"]) == ("T_ONE", "U_BOT_T_ONE")

    again = web().oauth_v2_access(**refresh, refresh_token=first["refresh_token"])
    assert await error_of(again) == "invalid_refresh_token"
    assert (await web(first["access_token"]).auth_test())["team_id"] == "T_ONE"  # lives until it expires
    assert 0 < (await web(second["access_token"]).auth_test())["expires_in"] <= ROTATING_TOKEN_TTL_S


@pytest.mark.anyio
async def test_an_expired_rotating_token_is_refused_with_token_expired(fake: FakeSlack, web: Any) -> None:
    installed = await install(web, fake, "T_ONE", rotation=True)
    fake.advance_clock(ROTATING_TOKEN_TTL_S)

    assert (
        await error_of(web(installed["access_token"]).chat_postMessage(channel="C1", text="x"))
        == "token_expired"
    )
    refresh = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token"}
    renewed = await web().oauth_v2_access(**refresh, refresh_token=installed["refresh_token"])
    assert (await web(renewed["access_token"]).auth_test())["ok"] is True


@pytest.mark.anyio
async def test_refreshing_again_and_again_keeps_only_two_access_tokens_active(
    fake: FakeSlack, web: Any
) -> None:
    tokens = [await install(web, fake, "T_ONE", rotation=True)]
    refresh = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token"}
    for _ in range(2):
        tokens.append(
            (await web().oauth_v2_access(**refresh, refresh_token=tokens[-1]["refresh_token"])).data
        )

    assert await error_of(web(tokens[0]["access_token"]).auth_test()) == "token_revoked"
    assert (await web(tokens[1]["access_token"]).auth_test())["ok"] is True
    assert (await web(tokens[2]["access_token"]).auth_test())["ok"] is True


@pytest.mark.anyio
async def test_slack_sdks_token_rotator_refreshes_against_the_fake(fake: FakeSlack, web: Any) -> None:
    installed = await install(web, fake, "T_ONE", rotation=True)
    bot = Bot(
        app_id=installed["app_id"],
        team_id="T_ONE",
        bot_token=installed["access_token"],
        bot_refresh_token=installed["refresh_token"],
        bot_token_expires_at=int(time.time()) + 60,  # inside the rotator's margin
        bot_id="B_BOT_T_ONE",
        bot_user_id=installed["bot_user_id"],
        installed_at=time.time(),
    )
    rotator = AsyncTokenRotator(client_id=CLIENT_ID, client_secret=SECRET, client=web())

    rotated = await rotator.perform_bot_token_rotation(bot=bot)

    assert rotated is not None
    assert rotated.bot_token != installed["access_token"]
    assert (await web(rotated.bot_token).auth_test())["team_id"] == "T_ONE"


@pytest.mark.anyio
async def test_bolts_oauth_flow_turns_a_code_into_an_installation(
    fake: FakeSlack, web: Any, tmp_path: Path
) -> None:
    settings = AsyncOAuthSettings(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scopes=["chat:write", "commands"],
        redirect_uri=REDIRECT,
        installation_store=FileInstallationStore(base_dir=str(tmp_path / "installations")),
        state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(tmp_path / "states")),
    )
    flow = AsyncOAuthFlow(client=web(), settings=settings)
    code = fake.authorize(CLIENT_ID, team_id="T_ONE", team_name="One", redirect_uri=REDIRECT, rotation=True)

    installation = await flow.run_installation(code)

    assert installation is not None
    assert (installation.team_id, installation.team_name, installation.enterprise_id) == (
        "T_ONE",
        "One",
        None,
    )
    assert (installation.bot_user_id, installation.bot_id) == ("U_BOT_T_ONE", "B_BOT_T_ONE")
    assert installation.bot_refresh_token is not None
    assert installation.bot_token_expires_at is not None
    assert installation.user_id == "U_INSTALLER"


@pytest.mark.anyio
async def test_uninstall_revokes_that_workspaces_tokens_and_returns_app_uninstalled(
    fake: FakeSlack, web: Any
) -> None:
    one = await install(web, fake, "T_ONE")
    two = await install(web, fake, "T_TWO")

    payload = fake.uninstall("T_ONE")

    assert payload["type"] == "event_callback"
    assert (payload["team_id"], payload["api_app_id"]) == ("T_ONE", API_APP_ID)
    assert payload["event"] == {"type": "app_uninstalled"}
    assert payload["authorizations"] == [
        {
            "enterprise_id": None,
            "team_id": "T_ONE",
            "user_id": "U_BOT_T_ONE",
            "is_bot": True,
            "is_enterprise_install": False,
        }
    ]
    assert [e["event"] for e in fake.oauth.events] == [
        {"type": "app_uninstalled"},
        {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U_BOT_T_ONE"]}},
    ]
    assert (
        await error_of(web(one["access_token"]).chat_postMessage(channel="C1", text="x")) == "token_revoked"
    )
    assert (await web(two["access_token"]).auth_test())["team_id"] == "T_TWO"
    again = await install(web, fake, "T_ONE")
    assert again["access_token"] != one["access_token"]
    assert again["bot_user_id"] == "U_BOT_T_ONE"


@pytest.mark.anyio
async def test_reinstalling_keeps_the_token_and_adds_scopes(fake: FakeSlack, web: Any) -> None:
    first = await install(web, fake, "T_ONE", scopes=["chat:write", "commands"])
    assert await error_of(web(first["access_token"]).users_info(user="U1")) == "missing_scope"

    second = await install(web, fake, "T_ONE", scopes=["users:read"])

    assert second["access_token"] == first["access_token"]
    assert second["scope"] == "chat:write,commands,users:read"
    assert (await web(first["access_token"]).users_info(user="U1"))["user"]["id"] == "U1"


@pytest.mark.anyio
async def test_revoke_tokens_revokes_the_named_tokens_and_uninstalls_once_none_is_left(
    fake: FakeSlack, web: Any
) -> None:
    installed = await install(web, fake, "T_ONE", user_scopes=["search:read"])
    user_token = installed["authed_user"]["access_token"]
    assert user_token.startswith("xoxp-T_ONE-")
    assert (installed["authed_user"]["scope"], installed["authed_user"]["token_type"]) == (
        "search:read",
        "user",
    )
    assert (await web(user_token).auth_test())["user_id"] == "U_INSTALLER"

    payload = fake.revoke_tokens("T_ONE", bot=False, users=["U_INSTALLER"])

    assert payload["event"] == {"type": "tokens_revoked", "tokens": {"oauth": ["U_INSTALLER"], "bot": []}}
    assert payload["team_id"] == "T_ONE"
    assert await error_of(web(user_token).auth_test()) == "token_revoked"
    assert (await web(installed["access_token"]).auth_test())["ok"] is True
    fake.revoke_tokens("T_ONE")
    assert fake.oauth.events[-1]["event"] == {"type": "app_uninstalled"}
    assert await error_of(web(installed["access_token"]).auth_test()) == "token_revoked"


@pytest.mark.anyio
async def test_apps_uninstall_removes_the_calling_tokens_install(fake: FakeSlack, web: Any) -> None:
    fake.register_app("other", "other-secret")
    installed = await install(web, fake, "T_ONE")
    bot = web(installed["access_token"])

    assert (
        await error_of(bot.apps_uninstall(client_id=CLIENT_ID, client_secret="wrong")) == "bad_client_secret"
    )
    mismatch = bot.apps_uninstall(client_id="other", client_secret="other-secret")
    assert await error_of(mismatch) == "client_id_token_mismatch"
    assert (await bot.apps_uninstall(client_id=CLIENT_ID, client_secret=SECRET))["ok"] is True

    assert await error_of(bot.auth_test()) == "token_revoked"
    assert fake.oauth.events[0]["event"] == {"type": "app_uninstalled"}


@pytest.mark.anyio
async def test_auth_revoke_revokes_the_calling_token(fake: FakeSlack, web: Any) -> None:
    installed = await install(web, fake, "T_ONE")
    bot = web(installed["access_token"])

    assert (await bot.auth_revoke(test=True))["revoked"] is False
    assert (await bot.auth_test())["ok"] is True
    assert (await bot.auth_revoke())["revoked"] is True

    assert await error_of(bot.auth_test()) == "token_revoked"
    assert [e["event"]["type"] for e in fake.oauth.events] == ["tokens_revoked", "app_uninstalled"]


@pytest.mark.anyio
async def test_auth_revoke_on_a_rotating_token_leaves_the_install(fake: FakeSlack, web: Any) -> None:
    installed = await install(web, fake, "T_ONE", rotation=True)

    await web(installed["access_token"]).auth_revoke()

    assert await error_of(web(installed["access_token"]).auth_test()) == "token_revoked"
    refresh = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token"}
    renewed = await web().oauth_v2_access(**refresh, refresh_token=installed["refresh_token"])
    assert (await web(renewed["access_token"]).auth_test())["team_id"] == "T_ONE"
    assert fake.oauth.events == []


@pytest.mark.anyio
async def test_an_org_wide_install_answers_for_the_enterprise(fake: FakeSlack, web: Any) -> None:
    org = await install(
        web,
        fake,
        None,
        enterprise_id="E_ORG",
        enterprise_name="Org",
        is_enterprise_install=True,
        user_id="W_ADMIN",
    )

    assert org["team"] is None
    assert org["enterprise"] == {"id": "E_ORG", "name": "Org"}
    assert org["is_enterprise_install"] is True
    assert org["bot_user_id"] == "W_BOT_E_ORG"
    auth = await web(org["access_token"]).auth_test()
    assert (auth["enterprise_id"], auth["is_enterprise_install"], auth["user_id"]) == (
        "E_ORG",
        True,
        "W_BOT_E_ORG",
    )
    await web(org["access_token"]).chat_postMessage(channel="C1", text="hi", team_id="T_IN_ORG")
    [call] = fake.calls("chat.postMessage")
    assert (call["team_id"], call["enterprise_id"]) == ("T_IN_ORG", "E_ORG")

    code = fake.authorize(CLIENT_ID, team_id="T_IN_ORG", enterprise_id="E_ORG")
    refused = web().oauth_v2_access(client_id=CLIENT_ID, client_secret=SECRET, code=code)
    assert await error_of(refused) == "cannot_install_an_org_installed_app"

    event = fake.oauth.event_callback(
        app_mention_event("hi", user_id="W1"), team_id="T_IN_ORG", enterprise_id="E_ORG"
    )
    assert event["authorizations"][0] | {"team_id": "T_IN_ORG"} == {
        "enterprise_id": "E_ORG",
        "team_id": "T_IN_ORG",
        "user_id": "W_BOT_E_ORG",
        "is_bot": True,
        "is_enterprise_install": True,
    }
    uninstalled = fake.uninstall(enterprise_id="E_ORG")
    assert (uninstalled["team_id"], uninstalled["enterprise_id"]) == (None, "E_ORG")
    assert uninstalled["authorizations"][0]["is_enterprise_install"] is True


@pytest.mark.anyio
async def test_tokens_the_fake_did_not_issue_act_for_the_default_workspace(fake: FakeSlack, web: Any) -> None:
    await install(web, fake, "T_ONE")

    auth = await web("xoxb-test").auth_test()
    assert (auth["team_id"], auth["user_id"]) == (TEAM_ID, "U_BOT")
    assert fake.calls("auth.test")[0]["team_id"] == TEAM_ID

    fake.oauth.accept_unknown_tokens = False
    assert await error_of(web("xoxb-test").auth_test()) == "invalid_auth"
