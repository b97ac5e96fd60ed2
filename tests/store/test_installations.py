"""Bolt's installation and state stores on our database (migration 0013), on SQLite and
PostgreSQL: tokens live encrypted in the credential manager and never in the row, workspaces
and orgs stay apart, the newest install answers, rotation writes back, deleting removes the
tokens, states are one-time and expire, and a removed workspace is purged once its grace
period ends unless it reinstalls."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.installations import DatabaseInstallationStore, DatabaseStateStore
from mcp_core.credentials.keys import parse_keyring
from mcp_core.credentials.local import LocalCredentialStore
from mcp_core.store._tables import credentials, slack_installations

pytestmark = pytest.mark.anyio

CLIENT = "111.222"
KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def installs(store, engine) -> DatabaseInstallationStore:
    return DatabaseInstallationStore(store, LocalCredentialStore(engine, parse_keyring(f"k1:{KEY}")), CLIENT)


def installation(
    team: str,
    token: str,
    *,
    enterprise: str | None = None,
    org_wide: bool = False,
    user: str = "U1",
    refresh: str | None = None,
) -> Installation:
    return Installation(
        app_id="A1",
        enterprise_id=enterprise,
        team_id=None if org_wide else team,
        team_name=f"Team {team}",
        bot_token=token,
        bot_id=f"B{team}",
        bot_user_id=f"UB{team}",
        bot_scopes="chat:write,commands",
        bot_refresh_token=refresh,
        bot_token_expires_in=43200 if refresh else None,
        user_id=user,
        is_enterprise_install=org_wide,
        token_type="bot",
    )


async def test_tokens_are_encrypted_in_the_credential_manager_and_each_workspace_finds_its_own(
    installs, engine
) -> None:
    await installs.async_save(installation("T_A", "xoxb-aaa-secret"))
    await installs.async_save(installation("T_B", "xoxb-bbb-secret"))

    bot_a = await installs.async_find_bot(enterprise_id=None, team_id="T_A")
    bot_b = await installs.async_find_bot(enterprise_id=None, team_id="T_B")

    assert (bot_a.bot_token, bot_a.bot_user_id, bot_a.team_id) == ("xoxb-aaa-secret", "UBT_A", "T_A")
    assert bot_b.bot_token == "xoxb-bbb-secret"
    assert await installs.async_find_bot(enterprise_id=None, team_id="T_C") is None
    async with engine.connect() as conn:
        rows = [str(r._mapping) for r in (await conn.execute(sa.select(slack_installations))).all()]
        stored = [str(r._mapping) for r in (await conn.execute(sa.select(credentials))).all()]
    assert rows
    assert not any("secret" in r for r in rows)
    assert stored
    assert not any("xoxb" in r for r in stored)


async def test_the_newest_install_answers_and_a_reinstall_replaces_the_old_token(installs, engine) -> None:
    await installs.async_save(installation("T_A", "xoxb-old"))
    await installs.async_save(installation("T_A", "xoxb-other-installer", user="U2"))
    await installs.async_save(installation("T_A", "xoxb-new"))

    found = await installs.async_find_installation(enterprise_id=None, team_id="T_A")
    assert (found.bot_token, found.user_id) == ("xoxb-new", "U1")
    async with engine.connect() as conn:
        secrets_left = (await conn.execute(sa.select(sa.func.count()).select_from(credentials))).scalar_one()
    assert secrets_left == 2  # the replaced token of U1 is gone


async def test_an_org_wide_install_answers_for_every_workspace_of_the_org(installs) -> None:
    await installs.async_save(installation("", "xoxb-org", enterprise="E1", org_wide=True))

    in_workspace = await installs.async_find_bot(enterprise_id="E1", team_id="T_IN_ORG")
    org = await installs.async_find_bot(enterprise_id="E1", team_id=None, is_enterprise_install=True)
    other_org = await installs.async_find_bot(enterprise_id="E2", team_id="T_IN_ORG")

    assert in_workspace.bot_token == org.bot_token == "xoxb-org"
    assert other_org is None


async def test_a_rotated_token_is_written_back(installs) -> None:
    await installs.async_save(installation("T_A", "xoxe.xoxb-1", refresh="xoxe-1-r1"))
    bot = await installs.async_find_bot(enterprise_id=None, team_id="T_A")
    rotated = Bot(
        **{
            **bot.to_dict_for_copying(),
            "bot_token": "xoxe.xoxb-2",
            "bot_refresh_token": "xoxe-1-r2",
            "bot_token_expires_in": 43200,
        }
    )

    await installs.async_save_bot(rotated)

    again = await installs.async_find_bot(enterprise_id=None, team_id="T_A")
    assert (again.bot_token, again.bot_refresh_token) == ("xoxe.xoxb-2", "xoxe-1-r2")
    assert again.bot_token_expires_at is not None


async def test_deleting_a_workspace_removes_its_tokens(installs, engine) -> None:
    await installs.async_save(installation("T_A", "xoxb-a"))
    await installs.async_save(installation("T_B", "xoxb-b"))

    await installs.async_delete_all(enterprise_id=None, team_id="T_A")

    assert await installs.async_find_bot(enterprise_id=None, team_id="T_A") is None
    assert (await installs.async_find_bot(enterprise_id=None, team_id="T_B")).bot_token == "xoxb-b"
    assert await installs.installations() == (1, 1)
    async with engine.connect() as conn:
        owners = {r.team_id for r in (await conn.execute(sa.select(credentials.c.team_id))).all()}
    assert owners == {"T_B"}


async def test_states_are_one_time_and_expire(store) -> None:
    states = DatabaseStateStore(store)
    state = await states.async_issue()
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False
    assert await states.async_consume("never-issued") is False
    expired = DatabaseStateStore(store, expires_s=-1)
    assert await expired.async_consume(await expired.async_issue()) is False


async def test_a_removed_workspace_is_due_after_its_grace_period_unless_it_reinstalls(
    installs, store
) -> None:
    now = datetime.now(UTC)
    await store.schedule_workspace_removal("", "T_GONE", "app_uninstalled", now - timedelta(seconds=1))
    await store.schedule_workspace_removal("", "T_BACK", "app_uninstalled", now - timedelta(seconds=1))
    await store.schedule_workspace_removal("", "T_LATER", "app_uninstalled", now + timedelta(days=30))
    await installs.async_save(installation("T_BACK", "xoxb-back"))

    assert await store.due_workspace_removals() == [("", "T_GONE")]
