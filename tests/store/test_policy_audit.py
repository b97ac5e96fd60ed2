"""A workspace's policy and audit log (migration 0012) on SQLite and PostgreSQL: no policy
allows everything, a change is saved with its audit entry and teams stay apart, bad policies
are refused, channels limit the agent's catalog, and approvals are logged with arguments only
when the policy says so."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from mcp_core.audit import Auditor
from mcp_core.models import CatalogEntry, ToolInfo
from mcp_core.policy import Policy, change_policy, channel_catalog, load_policy, may_add

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

ADMIN = "UADMIN"


async def test_no_saved_policy_allows_everything(store) -> None:
    policy = await load_policy(store, TEAM)
    assert policy == Policy()
    assert policy.card_allowed("custom", custom=True)
    assert policy.channel_tools("C1") == "all"
    assert may_add(policy, is_admin=False, in_usergroup=False) is None


async def test_a_change_is_saved_with_its_audit_entry_and_stays_in_its_team(store) -> None:
    new = Policy(allowed_cards=("github",), custom_urls=False, who_may_add="admins")

    change = await change_policy(store, TEAM, ADMIN, new)

    assert change is not None
    assert change.changed == ["allowed_cards", "custom_urls", "who_may_add"]
    assert await load_policy(store, TEAM) == new
    assert await load_policy(store, "T_OTHER") == Policy()
    [entry] = await store.list_audit(TEAM)
    assert (entry.actor_id, entry.action) == (ADMIN, "policy_changed")
    assert entry.detail["before"]["custom_urls"] is True
    assert entry.detail["after"]["custom_urls"] is False
    assert await store.list_audit("T_OTHER") == []
    assert await change_policy(store, TEAM, ADMIN, new) is None  # nothing changed: nothing logged
    assert len(await store.list_audit(TEAM)) == 1


def test_policies_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ValidationError, match="user group"):
        Policy(who_may_add="usergroup")
    with pytest.raises(ValidationError, match="S0123ABCD"):
        Policy(who_may_add="usergroup", usergroup_id="engineering")
    with pytest.raises(ValidationError, match="not channel ids"):
        Policy(no_tool_channels=("#general",))
    with pytest.raises(ValidationError):
        Policy.model_validate({"allow_everything": True})


def test_who_may_add_connections() -> None:
    group = Policy(who_may_add="usergroup", usergroup_id="S0ENG")
    assert may_add(group, is_admin=False, in_usergroup=True) is None
    assert may_add(group, is_admin=False, in_usergroup=False) == "usergroup"
    assert may_add(group, is_admin=True, in_usergroup=False) is None
    assert may_add(Policy(who_may_add="admins"), is_admin=False, in_usergroup=True) == "admins"


def test_cards_and_custom_urls() -> None:
    policy = Policy(allowed_cards=("github", "custom"), custom_urls=False)
    assert policy.card_allowed("github", custom=False)
    assert not policy.card_allowed("supabase", custom=False)
    assert not policy.card_allowed("custom", custom=True)


def entry(name: str, read_only: bool | None) -> CatalogEntry:
    return CatalogEntry(
        name=f"srv__{name}",
        connection_id=uuid.uuid4(),
        connection_name="srv",
        tool=ToolInfo(name=name, read_only=read_only),
    )


def test_channels_limit_the_agents_tools() -> None:
    policy = Policy(no_tool_channels=("CNONE",), read_only_channels=("CREAD",))
    catalog = [entry("list", True), entry("write", None), entry("drop", False)]

    assert channel_catalog(policy, "CNONE", catalog) == ([], "none")
    assert [e.tool.name for e in channel_catalog(policy, "CREAD", catalog)[0]] == ["list"]
    assert channel_catalog(policy, "COPEN", catalog) == (catalog, "all")


async def test_approvals_are_logged_without_arguments_unless_the_policy_keeps_them(store) -> None:
    auditor = Auditor(store)
    await auditor.decision(
        TEAM, USER, connection="gh", tool="create_issue", decision="approved", arguments={"title": "x"}
    )
    await change_policy(store, TEAM, ADMIN, Policy(audit_arguments=True))
    await auditor.decision(
        TEAM,
        USER,
        connection="gh",
        tool="delete_repo",
        decision="denied",
        arguments={"token": "sekrit"},
        redact=lambda text: text.replace("sekrit", "[redacted]"),
    )

    denied, _policy, approved = await store.list_audit(TEAM)
    assert (approved.action, approved.detail) == (
        "tool_approved",
        {"connection": "gh", "tool": "create_issue", "decision": "approved"},
    )
    assert denied.action == "tool_denied"
    assert denied.detail["arguments"] == '{"token": "[redacted]"}'
