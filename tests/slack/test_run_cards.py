"""/mcp connect with the run-card catalog: the picker, each card's generated form, and an end to end
connect per built-in card (local servers standing in for the hosted ones)."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from mcp_core.models import ConnectionStatus, NewConnection
from mcp_core.services import build_services
from run_cards import BUILTIN_DIR
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, serve, slack_settings
from tests.support.fake_slack import FORM, FakeSlack, block_actions_body, view_submission_body
from tests.support.postgres import PG_ADMIN_URL, reachable_pg_server
from tests.support.servers import require_npm, start_http_server

pytestmark = pytest.mark.anyio

ADMIN = "U0ADMIN"
SUPABASE_TOKEN, SUPABASE_REF = "sbp_0123456789abcdef", "abcdefghij0123456789"
GITHUB_TOKEN = "github_pat_11AAAA_fake"


@asynccontextmanager
async def bot(
    tmp_path: Path, fake: FakeSlack, urls: dict[str, str] | None = None, **overrides: Any
) -> AsyncIterator[SlackDriver]:
    """The bot served with ``ADMIN`` as its admin and the built-in cards named in ``urls`` pointed at
    local servers (admin cards in RUN_CARDS_DIR that replace them); ``overrides`` change settings."""
    admin_dir = tmp_path / "cards"
    admin_dir.mkdir(exist_ok=True)
    for card_id, url in (urls or {}).items():
        data = yaml.safe_load((BUILTIN_DIR / f"{card_id}.yaml").read_text(encoding="utf-8"))
        (admin_dir / f"{card_id}.yaml").write_text(yaml.safe_dump({**data, "url": url}), encoding="utf-8")
    settings = slack_settings(
        tmp_path, fake, **({"run_cards_dir": admin_dir, "admin_user_ids": ADMIN} | overrides)
    )
    services = await build_services(settings)
    try:
        async with serve(services) as url:
            yield SlackDriver(url, fake, services)
    finally:
        await services.aclose()


async def submit(
    slack: SlackDriver,
    card_id: str,
    values: dict[str, str],
    *,
    name: str | None = None,
    user: str = USER,
    metadata: dict[str, str] | None = None,
) -> Any:
    state = {"name": {"value": name or card_id}} | {key: {"value": value} for key, value in values.items()}
    body = view_submission_body(
        "mcp_connect_submit",
        state,
        user_id=user,
        team_id=TEAM,
        private_metadata=json.dumps(metadata or {"channel": "C_TEST", "card": card_id}),
    )
    return await slack._post(body, FORM)


async def connected(slack: SlackDriver, fake: FakeSlack, card_id: str, values: dict[str, str], **kwargs: Any):
    reply = await submit(slack, card_id, values, **kwargs)
    assert (reply.status, reply.text) == (200, ""), reply
    [post] = await fake.await_for("chat.postEphemeral")
    await listeners_done()
    assert post["body"]["text"].startswith(f"✅ Connected *{kwargs.get('name') or card_id}* — "), post
    connection = await slack.services.store.find_connection(TEAM, USER, kwargs.get("name") or card_id)
    assert connection is not None
    assert (connection.status, connection.card_id) == (ConnectionStatus.HEALTHY, card_id)
    return connection


async def stored_credentials(slack: SlackDriver) -> int:
    async with slack.services.store.engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM mcp_credentials"))).scalar_one()


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def picker_cards(view: dict[str, Any]) -> list[str]:
    return [b["accessory"]["value"] for b in view["blocks"] if b.get("accessory")]


async def test_the_picker_lists_the_cards_a_user_may_use_most_used_first(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with bot(tmp_path, fake) as slack:
        await slack.command("connect", channel="C_HERE")
        [call] = await fake.await_for("views.open")
        view = call["body"]["view"]
        assert picker_cards(view) == [  # by name; not filesystem
            *("atlassian", "custom", "github", "github-oauth", "linear"),
            *("notion", "postgres", "sentry", "slack", "supabase"),
        ]
        assert ":octocat: GitHub" in json.dumps(view)

        await slack.command("connect", user=ADMIN)
        calls = await fake.await_for("views.open", 2)
        assert {"filesystem", "postgres"} <= set(picker_cards(calls[1]["body"]["view"]))

        gh = NewConnection(
            name="gh", transport="streamable_http", url="https://e.com/mcp", card_id="supabase"
        )
        await slack.services.store.create_connection(TEAM, USER_B, gh)  # same team: supabase is popular
        await slack.command("connect")
        calls = await fake.await_for("views.open", 3)
        assert picker_cards(calls[2]["body"]["view"])[0] == "supabase"

        picker = {"id": "V_PICK", "hash": "h1", "private_metadata": json.dumps({"channel": "C_HERE"})}
        body = block_actions_body("mcp_pick_card", "github", user_id=USER, team_id=TEAM, view=picker)
        await slack._post(body, FORM)
        [update] = await fake.await_for("views.update")
        assert update["body"]["view_id"] == "V_PICK"
        form = (
            json.loads(update["body"]["view"])
            if isinstance(update["body"]["view"], str)
            else update["body"]["view"]
        )
        assert json.loads(form["private_metadata"]) == {"channel": "C_HERE", "card": "github"}
        assert list(inputs(form)) == ["name", "token", "read_only", "toolsets"]

        # an ordinary user cannot pick (or submit) an admin-only card
        body = block_actions_body("mcp_pick_card", "filesystem", user_id=USER, team_id=TEAM, view=picker)
        await slack._post(body, FORM)
        reply = await submit(slack, "filesystem", {"directory": str(tmp_path)})
        assert reply.json()["response_action"] == "errors"
        await listeners_done()
        assert len(fake.calls("views.update")) == 1
        assert await slack.connections() == []


async def test_connect_github_opens_a_form_generated_from_the_card(tmp_path: Path, fake: FakeSlack) -> None:
    async with bot(tmp_path, fake) as slack:
        await slack.command("connect github", channel="C_HERE")
        [call] = await fake.await_for("views.open")
    view = call["body"]["view"]
    fields = inputs(view)
    assert list(fields) == ["name", "token", "read_only", "toolsets"]
    assert fields["name"]["element"]["initial_value"] == "github"
    assert fields["token"]["label"]["text"] == "Fine-grained personal access token"
    assert "initial_value" not in fields["token"]["element"]
    assert fields["token"]["element"]["placeholder"]["text"] == "github_pat_…"
    assert "Fine-grained tokens" in fields["token"]["hint"]["text"]
    assert fields["token"].get("optional", False) is False
    assert fields["read_only"]["element"]["initial_value"] == "true"
    assert fields["toolsets"]["optional"] is True
    assert "fine-grained token limited" in json.dumps(view["blocks"][-1])
    assert json.loads(view["private_metadata"]) == {"channel": "C_HERE", "card": "github"}


async def test_connect_an_admin_only_card_as_an_ordinary_user_lists_the_others(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with bot(tmp_path, fake) as slack:
        reply = await slack.command("connect filesystem")
        text = await slack.reply_text(reply)
    assert "There is no run card “filesystem”" in text
    assert "`supabase`" in text
    assert fake.calls("views.open") == []


async def test_supabase_end_to_end(tmp_path: Path, fake: FakeSlack) -> None:
    flags = [
        "--bearer", SUPABASE_TOKEN,
        "--require-query", f"project_ref={SUPABASE_REF}",
        "--require-query", "read_only=true",
    ]  # fmt: skip
    async with start_http_server(*flags) as server, bot(tmp_path, fake, {"supabase": server.url}) as slack:
        values = {"access_token": SUPABASE_TOKEN, "project_ref": SUPABASE_REF, "read_only": "true"}
        connection = await connected(slack, fake, "supabase", values)
        assert connection.config["query"] == {"project_ref": SUPABASE_REF, "read_only": "true"}
        assert slack.services.credentials is not None
        assert connection.credential_ref is not None
        stored = await slack.services.credentials.get(TEAM, USER, connection.credential_ref)
        assert stored == {"header:Authorization": f"Bearer {SUPABASE_TOKEN}"}


async def test_a_field_error_shows_next_to_the_field_and_nothing_is_stored(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with bot(tmp_path, fake) as slack:
        values = {"access_token": "eyJhbGciOiJIUzI1NiJ9.service-role", "project_ref": SUPABASE_REF}
        reply = await submit(slack, "supabase", values)
        answer = reply.json()
        assert answer["response_action"] == "errors"
        assert set(answer["errors"]) == {"access_token"}
        await listeners_done()
        assert await slack.connections() == []
        assert await stored_credentials(slack) == 0


async def test_github_end_to_end_and_edit_shows_non_secret_values_only(
    tmp_path: Path, fake: FakeSlack
) -> None:
    flags = [
        "--bearer", GITHUB_TOKEN,
        "--require-header", "X-MCP-Readonly=true",
        "--require-header", "X-MCP-Toolsets=repos,issues",
    ]  # fmt: skip
    async with start_http_server(*flags) as server, bot(tmp_path, fake, {"github": server.url}) as slack:
        values = {"token": f"Bearer {GITHUB_TOKEN}", "read_only": "true", "toolsets": "repos,issues"}
        connection = await connected(slack, fake, "github", values, name="gh")

        await slack.click("mcp_edit", str(connection.id))
        [call] = await fake.await_for("views.open")
        view = call["body"]["view"]
        initial = {key: b["element"].get("initial_value") for key, b in inputs(view).items()}
        assert initial == {"name": "gh", "token": None, "read_only": "true", "toolsets": "repos,issues"}
        assert GITHUB_TOKEN not in json.dumps(view)
        assert inputs(view)["token"]["optional"] is True  # empty keeps the stored token
        metadata = json.loads(view["private_metadata"])
        assert metadata == {"channel": "C_TEST", "card": "github", "edit": str(connection.id)}

        reply = await submit(
            slack,
            "github",
            {"token": "", "read_only": "true", "toolsets": "repos,issues"},
            name="gh2",
            metadata=metadata,
        )
        assert (reply.status, reply.text) == (200, "")
        posts = await fake.await_for("chat.postEphemeral", 2)
        await listeners_done()
        assert posts[-1]["body"]["text"].startswith("✅ Connected *gh2*")
        [edited] = await slack.connections()
        assert (edited.id, edited.name, edited.status) == (connection.id, "gh2", ConnectionStatus.HEALTHY)
        assert edited.credential_ref == connection.credential_ref
        assert await stored_credentials(slack) == 1


async def test_custom_end_to_end(tmp_path: Path, fake: FakeSlack) -> None:
    async with start_http_server("--bearer", "tok-custom") as server, bot(tmp_path, fake) as slack:
        await slack.command("connect custom")
        [call] = await fake.await_for("views.open")
        assert "url" in inputs(call["body"]["view"])
        connection = await connected(slack, fake, "custom", {"url": server.url, "bearer_token": "tok-custom"})
        assert (connection.transport, connection.url) == ("streamable_http", server.url)


async def test_custom_card_with_a_header_edit_shows_the_header_name_and_url_never_its_value(
    tmp_path: Path, fake: FakeSlack
) -> None:
    header_value = "hv-custom-0123456789"
    async with (
        start_http_server("--require-header", f"X-API-Key={header_value}") as server,
        bot(tmp_path, fake) as slack,
    ):
        values = {"url": server.url, "header_name": "X-API-Key", "header_value": header_value}
        connection = await connected(slack, fake, "custom", values)
        assert connection.credential_ref is not None
        assert slack.services.credentials is not None
        stored = await slack.services.credentials.get(TEAM, USER, connection.credential_ref)
        assert stored == {"header:X-API-Key": header_value}

        await slack.click("mcp_edit", str(connection.id))
        [call] = await fake.await_for("views.open")
        view = call["body"]["view"]
        initial = {key: b["element"].get("initial_value") for key, b in inputs(view).items()}
        assert initial == {
            "name": "custom",
            "url": server.url,
            "transport": "streamable_http",
            "bearer_token": None,
            "header_name": "X-API-Key",
            "header_value": None,
        }
        assert header_value not in json.dumps(view)
        assert header_value not in fake.all_traffic_text()


@pytest.mark.npm
async def test_slack_stdio_card_end_to_end(
    tmp_path: Path, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = require_npm("server-slack")
    node = shutil.which("node") or "node"
    monkeypatch.setenv("RUN_CARD_SLACK_COMMAND", f"{shlex.quote(node)} {shlex.quote(str(entry))}")
    async with bot(tmp_path, fake) as slack:
        connection = await connected(
            slack, fake, "slack", {"bot_token": "xoxb-000-fake", "team_id": "T000FAKE"}
        )
        assert connection.transport == "stdio"
        assert connection.config["env"] == {"SLACK_TEAM_ID": "T000FAKE"}
        assert "slack_list_channels" in {tool.name for tool in connection.tools}

        await slack.click("mcp_edit", str(connection.id))
        [call] = await fake.await_for("views.open")
        initial = {key: b["element"].get("initial_value") for key, b in inputs(call["body"]["view"]).items()}
        assert initial == {"name": "slack", "bot_token": None, "team_id": "T000FAKE", "channel_ids": None}


async def admin_connects(slack: SlackDriver, fake: FakeSlack, card_id: str, values: dict[str, str]):
    reply = await submit(slack, card_id, values, user=ADMIN)
    assert (reply.status, reply.text) == (200, ""), reply
    [post] = await fake.await_for("chat.postEphemeral")
    await listeners_done()
    assert post["body"]["text"].startswith(f"✅ Connected *{card_id}* — "), post
    connection = await slack.services.store.find_connection(TEAM, ADMIN, card_id)
    assert connection is not None
    assert (connection.status, connection.card_id) == (ConnectionStatus.HEALTHY, card_id)
    return connection


@pytest.mark.npm
async def test_filesystem_card_end_to_end_for_an_admin(
    tmp_path: Path, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = require_npm("server-filesystem")
    node = shutil.which("node") or "node"
    monkeypatch.setenv("RUN_CARD_FILESYSTEM_COMMAND", f"{shlex.quote(node)} {shlex.quote(str(entry))}")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("hi")
    async with bot(tmp_path, fake) as slack:
        connection = await admin_connects(slack, fake, "filesystem", {"directory": str(shared)})
        result = await slack.services.registry.call(
            TEAM, ADMIN, "filesystem__list_directory", {"path": str(shared)}
        )

    assert connection.transport == "stdio"
    assert "notes.txt" in result.text


@pytest.mark.npm
@pytest.mark.postgres
async def test_postgres_card_end_to_end_for_an_ordinary_user_when_the_host_is_allowed(
    tmp_path: Path, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await reachable_pg_server()
    entry = require_npm("server-postgres")
    node = shutil.which("node") or "node"
    monkeypatch.setenv("RUN_CARD_POSTGRES_COMMAND", f"{shlex.quote(node)} {shlex.quote(str(entry))}")
    url = sa.make_url(PG_ADMIN_URL)
    connection_string = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    values = {"connection_string": connection_string, "password": url.password or "unused-with-trust-auth"}
    async with bot(tmp_path, fake) as slack:  # the test settings allow 127.0.0.1 and localhost
        connection = await connected(slack, fake, "postgres", values)
        result = await slack.services.registry.call(
            TEAM, USER, "postgres__query", {"sql": "SELECT 6 * 7 AS n"}
        )

    assert connection.transport == "stdio"
    assert connection.config["endpoints"] == [connection_string]
    assert connection.config["card_values"] == {"connection_string": connection_string}
    assert json.loads(result.text) == [{"n": 42}]


async def test_postgres_refuses_a_local_database_unless_allowed_and_stores_nothing(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with bot(tmp_path, fake, mcp_allowed_hosts=[]) as slack:
        await slack.command("connect postgres")
        [call] = await fake.await_for("views.open")
        assert "connection_string" in inputs(call["body"]["view"])  # offered to ordinary users now

        local = {"connection_string": "postgresql://reader@127.0.0.1:5432/app", "password": "pw-local"}
        answer = (await submit(slack, "postgres", local)).json()
        assert answer["response_action"] == "errors"
        assert set(answer["errors"]) == {"connection_string"}
        assert "MCP_ALLOWED_HOSTS" in answer["errors"]["connection_string"]

        # libpq reads ?host= as the host to connect to: the card's pattern allows no such query
        redirected = {
            "connection_string": "postgresql://reader@db.example.com:5432/app?host=127.0.0.1",
            "password": "pw-redirected",
        }
        answer = (await submit(slack, "postgres", redirected)).json()
        assert answer["response_action"] == "errors"
        assert set(answer["errors"]) == {"connection_string"}

        await listeners_done()
        assert await slack.connections() == []
        assert await stored_credentials(slack) == 0
        assert fake.calls("chat.postEphemeral") == []
