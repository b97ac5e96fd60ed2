"""Operator pre-fill: ``MCP_<CARD>_<FIELD>`` values in the bot's ``./.env`` fill empty card fields,
for the admins (ADMIN_USER_IDS) only, and are never shown back in Slack."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.slack.conftest import TEAM, USER, listeners_done
from tests.slack.test_run_cards import ADMIN, admin_connects, bot, inputs, stored_credentials, submit
from tests.support.fake_slack import FakeSlack
from tests.support.servers import start_http_server

pytestmark = pytest.mark.anyio

OPERATOR_TOKEN = "github_pat_11OPERATOR_0123456789secret"
OPERATOR_TOOLSETS = "repos,issues"


@pytest.fixture
def operator_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the bot's working directory, with the operator's ``.env`` in it."""
    monkeypatch.chdir(tmp_path)
    env = tmp_path / ".env"
    env.write_text(
        f"MCP_GITHUB_TOKEN={OPERATOR_TOKEN}\nMCP_GITHUB_TOOLSETS={OPERATOR_TOOLSETS}\n", encoding="utf-8"
    )
    return env


async def test_an_admin_connects_github_with_the_operators_values_which_are_never_shown(
    tmp_path: Path, fake: FakeSlack, operator_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    flags = ["--bearer", OPERATOR_TOKEN, "--require-header", f"X-MCP-Toolsets={OPERATOR_TOOLSETS}"]
    async with start_http_server(*flags) as server, bot(tmp_path, fake, {"github": server.url}) as slack:
        await slack.command("connect github", user=ADMIN)
        [call] = await fake.await_for("views.open")
        fields = inputs(call["body"]["view"])
        for key, var in (("token", "MCP_GITHUB_TOKEN"), ("toolsets", "MCP_GITHUB_TOOLSETS")):
            assert fields[key]["optional"] is True, key
            assert "initial_value" not in fields[key]["element"], key
            assert f"Leave empty to use {var} from the bot's .env." in fields[key]["hint"]["text"]
        assert fields["read_only"]["element"]["initial_value"] == "true"  # not pre-filled: a default

        connection = await admin_connects(
            slack, fake, "github", {"token": "", "read_only": "true", "toolsets": ""}
        )
        assert connection.config["headers"]["X-MCP-Toolsets"] == OPERATOR_TOOLSETS
        assert connection.config["card_values"] == {"read_only": "true"}  # the operator's never shown back
        assert slack.services.credentials is not None
        assert connection.credential_ref is not None
        stored = await slack.services.credentials.get(TEAM, ADMIN, connection.credential_ref)
        assert stored == {"header:Authorization": f"Bearer {OPERATOR_TOKEN}"}

        await slack.click("mcp_edit", str(connection.id), user=ADMIN)
        calls = await fake.await_for("views.open", 2)
        edit = calls[1]["body"]["view"]
        initial = {key: b["element"].get("initial_value") for key, b in inputs(edit).items()}
        assert initial == {"name": "github", "token": None, "read_only": "true", "toolsets": None}
        assert json.dumps(OPERATOR_TOOLSETS) not in json.dumps(edit)  # (the placeholder holds it)
        await listeners_done()

    traffic = fake.all_traffic_text()
    assert fake.requests, "no Slack traffic was captured"
    assert OPERATOR_TOKEN not in traffic
    for request in fake.requests:
        assert OPERATOR_TOKEN not in json.dumps(request, default=str)
    assert "MCP_GITHUB_TOKEN" in caplog.text  # the log names the variable…
    assert OPERATOR_TOKEN not in caplog.text  # …never its value


async def test_an_ordinary_user_gets_no_operator_prefill(
    tmp_path: Path, fake: FakeSlack, operator_env: Path
) -> None:
    async with bot(tmp_path, fake) as slack:
        await slack.command("connect github", user=USER)
        [call] = await fake.await_for("views.open")
        fields = inputs(call["body"]["view"])
        assert fields["token"].get("optional", False) is False
        assert "MCP_GITHUB_TOKEN" not in fields["token"]["hint"]["text"]
        assert "MCP_GITHUB" not in json.dumps(call["body"]["view"])

        answer = (await submit(slack, "github", {"token": "", "read_only": "true", "toolsets": ""})).json()
        assert answer["response_action"] == "errors"
        assert answer["errors"] == {"token": "required"}
        await listeners_done()
        assert await slack.connections(USER) == []
        assert await stored_credentials(slack) == 0

    assert OPERATOR_TOKEN not in fake.all_traffic_text()


@pytest.fixture
def malformed_env(operator_env: Path) -> Path:
    operator_env.write_text("MCP_GITHUB_TOKEN=not-a-github-token-3f9a\n", encoding="utf-8")
    return operator_env


async def test_a_malformed_operator_value_is_a_field_error_naming_the_variable_not_the_value(
    tmp_path: Path, fake: FakeSlack, malformed_env: Path
) -> None:
    async with bot(tmp_path, fake) as slack:
        reply = await submit(slack, "github", {"token": "", "read_only": "true"}, user=ADMIN)
        answer = reply.json()
        await listeners_done()
        assert await stored_credentials(slack) == 0

    assert answer["response_action"] == "errors"
    assert answer["errors"]["token"].startswith(
        "MCP_GITHUB_TOKEN in the bot's .env is not in the expected format"
    )
    assert "not-a-github-token-3f9a" not in fake.all_traffic_text() + json.dumps(answer)
