"""/mcp admin over the wire: only admins (Slack's admins and owners from users.info, or
ADMIN_USER_IDS) see the workspace's usage, open the policy modal and get CSV exports; the
policy saved from the modal is audited and obeyed by /mcp connect and its submission."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from bot import admin_views, texts
from mcp_core.models import UsageRecord
from mcp_core.policy import Policy, change_policy, load_policy
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, message_text
from tests.support.fake_slack import FakeSlack, view_submission_body
from tests.support.registry import BEARER
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio

ADMIN = USER
P = admin_views.PolicyBlocks


def make_admin(fake: FakeSlack, user: str = ADMIN) -> None:
    fake.users[user] = {"id": user, "team_id": TEAM, "name": user.lower(), "is_admin": True, "is_bot": False}


def policy_state(**chosen: Any) -> dict[str, dict[str, Any]]:
    """The policy modal's state as Slack submits it."""

    def options(values: list[str]) -> dict[str, Any]:
        return {"type": "checkboxes", "selected_options": [{"value": v} for v in values]}

    return {
        P.CARDS: {
            P.CARDS: {
                "type": "multi_static_select",
                "selected_options": [{"value": c} for c in chosen.get("cards", [])],
            }
        },
        P.CUSTOM: {P.CUSTOM: options(["yes"] if chosen.get("custom", True) else [])},
        P.WHO: {
            P.WHO: {"type": "radio_buttons", "selected_option": {"value": chosen.get("who", "everyone")}}
        },
        P.GROUP: {P.GROUP: chosen.get("group", "")},
        P.NO_TOOLS: {
            P.NO_TOOLS: {
                "type": "multi_conversations_select",
                "selected_conversations": chosen.get("none", []),
            }
        },
        P.READ_ONLY: {P.READ_ONLY: {"type": "multi_conversations_select", "selected_conversations": []}},
        P.ARGUMENTS: {P.ARGUMENTS: options([])},
    }


async def submit_policy(slack: SlackDriver, user: str = ADMIN, **chosen: Any):
    body = view_submission_body(
        admin_views.POLICY_CALLBACK,
        policy_state(**chosen),
        user_id=user,
        team_id=TEAM,
        private_metadata=json.dumps({"channel": "C_TEST"}),
    )
    return await slack._post(body, "application/x-www-form-urlencoded")


async def test_people_who_are_not_admins_get_nothing_from_admin_or_its_buttons(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    reply = await slack.command("admin", user=USER_B)
    assert await slack.reply_text(reply) == texts.ADMINS_ONLY
    for action in (
        admin_views.ADMIN_CSV_ACTION,
        admin_views.ADMIN_AUDIT_ACTION,
        admin_views.ADMIN_POLICY_ACTION,
    ):
        click = await slack.click(action, "7d", user=USER_B)
        assert await slack.reply_text(click) == texts.ADMINS_ONLY
    submitted = await submit_policy(slack, user=USER_B, who="admins")
    assert json.loads(submitted.text)["errors"] == {P.WHO: texts.ADMINS_ONLY}
    assert await load_policy(slack.services.store, TEAM) == Policy()
    assert fake.calls("files.getUploadURLExternal") == []
    assert fake.calls("views.open") == []


async def test_a_slack_admin_sees_the_workspaces_usage_without_urls_or_secrets(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer
) -> None:
    make_admin(fake)
    await slack.connect("theirs", bearer_server.url + "?team=secret-query", token=BEARER, user=USER_B)
    catalog = {e.tool.name: e.name for e in await slack.services.registry.catalog(TEAM, USER_B)}
    for _ in range(3):
        await slack.services.registry.call(TEAM, USER_B, catalog["add"], {"a": 1, "b": 2})
    slack.services.usage.record(
        UsageRecord(
            team_id="T_OTHER",
            user_id="U9",
            connection_id=None,
            tool_name="elsewhere_tool",
            latency_ms=1,
            success=True,
            created_at=(await slack.connections(USER_B))[0].created_at,
        )
    )
    await slack.services.usage.flush()

    reply = await slack.command("admin")

    shown = await slack.reply_text(reply)
    assert "Workspace MCP usage, last 7 days" in shown
    assert "1 people have 1 connections" in shown
    assert "*Busiest tools*" in shown
    assert "`127.0.0.1`" in shown  # the server is its host
    assert "secret-query" not in shown
    assert "/mcp" not in shown.replace("/mcp admin", "")
    assert "elsewhere_tool" not in shown
    assert BEARER not in fake.all_traffic_text()
    assert [c["body"]["user"] for c in fake.calls("users.info")] == [ADMIN]


async def test_the_usage_csv_lands_in_the_admins_dm_and_holds_no_people(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    make_admin(fake)
    await slack.connect("toy", toy_server.url, user=USER_B)
    catalog = {e.tool.name: e.name for e in await slack.services.registry.catalog(TEAM, USER_B)}
    await slack.services.registry.call(TEAM, USER_B, catalog["echo"], {"text": "hi"})
    await slack.services.registry.call(TEAM, USER_B, catalog["fail"], {})
    await slack.services.usage.flush()

    click = await slack.click(admin_views.ADMIN_CSV_ACTION, "30d")
    said = await slack.reply_text(click)

    [opened] = fake.calls("conversations.open")
    assert opened["body"]["users"] == ADMIN
    [upload] = [u for u in fake.ai.uploads.values() if u.completed]
    assert upload.channel_id == FakeSlack.dm_channel(ADMIN)
    rows = list(csv.DictReader(io.StringIO(upload.data.decode())))
    assert {(r["tool"], r["calls"], r["errors"]) for r in rows} == {("echo", "1", "0"), ("fail", "1", "1")}
    assert all(r["server"] == "url:127.0.0.1" and r["days"] == "30" for r in rows)
    assert USER_B not in upload.data.decode()
    assert "MCP usage per server and tool, last 30 days" in said


async def test_the_policy_modal_saves_an_audited_policy_that_connect_obeys(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    make_admin(fake)
    click = await slack.click(admin_views.ADMIN_POLICY_ACTION, "7d")
    await listeners_done()
    assert click.status == 200
    [opened] = fake.calls("views.open")
    assert opened["body"]["view"]["callback_id"] == admin_views.POLICY_CALLBACK

    saved = await submit_policy(slack, who="admins", custom=False)
    await listeners_done()

    assert (saved.status, saved.text) == (200, "")
    policy = await load_policy(slack.services.store, TEAM)
    assert (policy.who_may_add, policy.custom_urls) == ("admins", False)
    [entry] = await slack.services.store.list_audit(TEAM)
    assert (entry.actor_id, entry.action, entry.detail["changed"]) == (
        ADMIN,
        "policy_changed",
        ["custom_urls", "who_may_add"],
    )
    notes = [c["body"]["text"] for c in fake.calls("chat.postEphemeral")]
    assert texts.policy_saved(["custom_urls", "who_may_add"]) in notes

    refused = await slack.command("connect", user=USER_B)
    assert await slack.reply_text(refused) == texts.may_not_add("admins", None)
    submitted = await slack.submit_connect(name="sneaky", url=toy_server.url, user=USER_B)
    assert json.loads(submitted.text)["errors"]["name"] == texts.CARD_NOT_IN_POLICY
    assert await slack.connections(USER_B) == []
    custom = await slack.command("connect custom")  # the admin: custom URLs are off for everyone
    assert "have not allowed “custom”" in await slack.reply_text(custom)
    await slack.click(admin_views.ADMIN_AUDIT_ACTION, "7d")
    await listeners_done()
    [audit] = [u for u in fake.ai.uploads.values() if u.completed]
    assert "policy_changed" in audit.data.decode()


async def test_members_of_the_chosen_user_group_may_add_connections(
    slack: SlackDriver, fake: FakeSlack, toy_server: RunningServer
) -> None:
    fake.usergroups["S0ENG"] = [USER_B]
    await change_policy(
        slack.services.store, TEAM, ADMIN, Policy(who_may_add="usergroup", usergroup_id="S0ENG")
    )

    member = await slack.connect("toy", toy_server.url, user=USER_B)
    outsider = await slack.submit_connect(name="toy", url=toy_server.url, user="U0CAROL")

    assert member.name == "toy"
    assert "<!subteam^S0ENG>" in json.loads(outsider.text)["errors"]["name"]
    assert [c["body"]["usergroup"] for c in fake.calls("usergroups.users.list")] == ["S0ENG"]  # cached


async def test_a_policy_that_makes_no_sense_is_a_field_error(slack: SlackDriver, fake: FakeSlack) -> None:
    make_admin(fake)
    no_group = await submit_policy(slack, who="usergroup")
    bad_group = await submit_policy(slack, who="usergroup", group="engineering")

    assert "user group" in json.loads(no_group.text)["errors"][P.GROUP]
    assert "S0123ABCD" in json.loads(bad_group.text)["errors"][P.GROUP]
    assert await slack.services.store.list_audit(TEAM) == []


async def test_a_card_left_out_of_the_policy_is_not_offered(slack: SlackDriver, fake: FakeSlack) -> None:
    await change_policy(slack.services.store, TEAM, ADMIN, Policy(allowed_cards=("github",)))

    await slack.command("connect")
    await listeners_done()

    [picker] = fake.calls("views.open")
    shown = message_text(picker["body"])
    assert "GitHub" in shown
    assert "Custom MCP server" not in shown
    assert "Supabase" not in shown


async def test_the_connections_export_lists_every_connection_without_secrets(
    slack: SlackDriver, fake: FakeSlack, bearer_server: RunningServer
) -> None:
    make_admin(fake)
    await slack.connect("theirs", bearer_server.url + "?key=in-the-query", token=BEARER, user=USER_B)

    await slack.click(admin_views.ADMIN_CONNECTIONS_ACTION, "7d")
    await listeners_done()

    [upload] = [u for u in fake.ai.uploads.values() if u.completed]
    text = upload.data.decode()
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert (row["user"], row["name"], row["server"], row["status"]) == (
        USER_B,
        "theirs",
        "url:127.0.0.1",
        "healthy",
    )
    assert BEARER not in text
    assert "in-the-query" not in text
