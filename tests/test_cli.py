"""The ``slack-mcp-bot`` command: check, migrate and run, with configuration from the environment.

Each test runs in an empty ``tmp_path`` (so no ``.env`` is read) with every setting removed
from the environment, then sets just what it needs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from mcp_core.services import build_services
from mcp_core.settings import Settings
from run_cards import load_cards
from tests.support.fake_slack import FakeSlack
from tests.support.postgres import reachable_pg_server

BOT_TOKEN = "xoxb-111-222-secretbot"
APP_TOKEN = "xapp-1-secretapp"
SIGNING_SECRET = "signing-secret-9a8b7c"
OPENAI_KEY = "sk-test-secretkey-42"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment and working directory; set variables with ``env.setenv``."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def mode_line(output: str, mode: str) -> str:
    [line] = [line for line in output.splitlines() if line.strip().startswith(mode)]
    return line


def setting_line(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if re.match(rf"\s+{name}\s", line)]
    return line


# --- check ------------------------------------------------------------------------------------------


def test_check_shows_secrets_only_as_set_hidden(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    env.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    env.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    env.setenv("OPENAI_API_KEY", OPENAI_KEY)
    env.setenv("CREDENTIAL_KEYS", "key-material-5566")

    result = invoke("check")

    assert result.exit_code == 0, result.output
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, OPENAI_KEY, "key-material-5566"):
        assert secret not in result.output
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY"):
        assert setting_line(result.output, name).endswith("set (hidden)")
    for mode in ("Socket Mode", "HTTP mode", "LLM agent"):
        assert mode_line(result.output, mode).endswith("ready")


def test_check_names_the_variables_each_mode_still_needs(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)

    result = invoke("check")

    assert result.exit_code == 0, result.output
    assert mode_line(result.output, "Socket Mode").endswith("missing SLACK_APP_TOKEN")
    assert mode_line(result.output, "HTTP mode").endswith("missing SLACK_SIGNING_SECRET")
    assert mode_line(result.output, "LLM agent").endswith("missing OPENAI_API_KEY")
    assert setting_line(result.output, "SLACK_APP_TOKEN").endswith("(not set)")


def test_check_with_nothing_set_names_every_missing_variable(env: pytest.MonkeyPatch) -> None:
    result = invoke("check")

    assert result.exit_code == 0, result.output
    assert mode_line(result.output, "Socket Mode").endswith("missing SLACK_BOT_TOKEN, SLACK_APP_TOKEN")
    assert mode_line(result.output, "HTTP mode").endswith("missing SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET")
    assert mode_line(result.output, "LLM agent").endswith("missing OPENAI_API_KEY")


def test_check_reports_the_database_and_its_pending_migrations(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = invoke("check")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "slack-mcp-bot.db").touch()  # an empty file is an empty SQLite database
    empty = invoke("check")
    invoke("migrate")
    after = invoke("check")

    assert (
        f"Database: sqlite, no database yet at {tmp_path / 'data' / 'slack-mcp-bot.db'} (created"
        in before.output
    )
    assert re.search(r"Database: sqlite reachable; \d+ migration\(s\) pending", empty.output)
    assert "Database: sqlite reachable; schema up to date" in after.output


def test_check_creates_no_data_dir_database_or_key_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = sorted(tmp_path.rglob("*"))

    result = invoke("check")

    assert result.exit_code == 0, result.output
    assert sorted(tmp_path.rglob("*")) == before == []
    assert "no key yet; one will be generated" in result.output


def test_check_shows_who_the_bot_is_when_slack_accepts_the_token(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    with FakeSlack() as fake:
        env.setenv("SLACK_API_URL", fake.base_url)

        result = invoke("check")

    assert "Slack: SLACK_BOT_TOKEN accepted: bot user @mcp-bot (U_BOT) in Fake Team (T_TEST)" in result.output
    assert BOT_TOKEN not in result.output


def test_check_says_which_token_slack_refused_and_where_to_get_one(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    with FakeSlack() as fake:
        env.setenv("SLACK_API_URL", fake.base_url)
        fake.overrides["auth.test"] = lambda body: (200, {}, {"ok": False, "error": "token_revoked"})

        result = invoke("check")

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("Slack:")]
    assert "PROBLEM: Slack refused SLACK_BOT_TOKEN (token_revoked)" in line
    assert "OAuth & Permissions → Bot User OAuth Token" in line
    assert BOT_TOKEN not in result.output


def test_check_reports_an_unreachable_slack(env: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    env.setenv("SLACK_API_URL", f"http://127.0.0.1:{port}/api/")

    result = invoke("check")

    assert "Slack: NOT reachable (ClientConnectorError: Cannot connect to host" in result.output
    assert BOT_TOKEN not in result.output


def test_log_level_is_read_from_dot_env(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=error\n")
    root = logging.getLogger()
    env.setattr(root, "level", root.level)  # restored after the test

    invoke("check")

    assert root.level == logging.ERROR


def test_an_empty_value_in_dot_env_means_not_set(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=\nSLACK_BOT_TOKEN=\nMCP_CALL_TIMEOUT_S=\n")

    settings = Settings()
    result = invoke("check")

    assert (settings.port, settings.slack_bot_token, settings.mcp_call_timeout_s) == (3000, None, 60.0)
    assert result.exit_code == 0, result.output
    assert "SLACK_BOT_TOKEN" in mode_line(result.output, "Socket Mode")  # named as missing


def test_check_reports_an_unreachable_database_without_its_password(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgresql://bot:db-pass-7d6e@127.0.0.1:1/bot")

    result = invoke("check")

    assert result.exit_code == 0, result.output
    assert "Database: NOT reachable" in result.output
    assert "db-pass-7d6e" not in result.output
    assert setting_line(result.output, "DATABASE_URL").endswith("set (hidden)")


def test_check_reports_invalid_settings_by_variable_name(env: pytest.MonkeyPatch) -> None:
    env.setenv("MCP_ALLOWED_HOSTS", "localhost,10.0.0.0/33")

    result = CliRunner().invoke(main, ["check"])

    assert result.exit_code == 1
    assert "Invalid configuration" in result.output
    assert "MCP_ALLOWED_HOSTS" in result.output


def test_a_dot_env_file_in_the_working_directory_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"SLACK_BOT_TOKEN={BOT_TOKEN}\n")

    result = invoke("check")

    assert setting_line(result.output, "SLACK_BOT_TOKEN").endswith("set (hidden)")
    assert BOT_TOKEN not in result.output


def test_check_names_the_run_cards_and_the_operator_pre_fill_variables_but_not_their_values(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MCP_GITHUB_TOKEN=github_pat_operator_5e6f\nADMIN_USER_IDS=U0ME\n")

    result = invoke("check")

    assert f"Run cards: {len(load_cards().all())} (" in result.output
    assert "Operator pre-fill from .env, for admins: MCP_GITHUB_TOKEN" in result.output
    assert "github_pat_operator_5e6f" not in result.output


# --- migrate ----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, env: pytest.MonkeyPatch) -> Iterator[str]:
    """The kind of database DATABASE_URL names for the test: the default SQLite file or a fresh
    PostgreSQL database (skipped locally when unreachable, failing under CI)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    # asyncio.run, like the CLI itself: anyio.run refuses to start once an anyio test ran here.
    server = asyncio.run(reachable_pg_server())
    name = asyncio.run(server.create_database())
    env.setenv("DATABASE_URL", server.url_for(name))
    try:
        yield "postgresql"
    finally:
        asyncio.run(server.drop_database(name))


def test_migrate_applies_the_migrations_once_then_says_up_to_date(database: str) -> None:
    first = invoke("migrate")
    second = invoke("migrate")
    check = invoke("check")

    assert first.exit_code == second.exit_code == 0
    assert re.fullmatch(r"Applied migrations: \[1(, \d+)*\]\n", first.output), first.output
    assert second.output == "Schema already up to date.\n"
    assert f"Database: {database} reachable; schema up to date" in check.output


# --- run --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((), ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"]),
        (("--http",), ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]),
    ],
)
def test_run_without_tokens_exits_2_and_says_how_to_get_them(
    env: pytest.MonkeyPatch, args: tuple[str, ...], names: list[str]
) -> None:
    result = CliRunner().invoke(main, ["run", *args])

    assert result.exit_code == 2
    assert f"missing {', '.join(names)}" in result.stderr
    assert "manifest.yml" in result.stderr
    assert result.stdout == ""


def test_run_without_tokens_says_so_before_touching_the_database(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/nowhere")  # nothing listens there

    result = CliRunner().invoke(main, ["run"])

    assert result.exit_code == 2
    assert "missing SLACK_BOT_TOKEN, SLACK_APP_TOKEN" in result.stderr


# --- credentials rotate -------------------------------------------------------------------------------


def test_credentials_rotate_rewraps_records_under_the_new_primary_key(env: pytest.MonkeyPatch) -> None:
    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    env.setenv("CREDENTIAL_KEYS", f"k1:{old}")

    async def store_one() -> str:
        services = await build_services(Settings())
        try:
            return await services.credentials.put("T1", "U1", {"header:Authorization": "Bearer rotate-me"})
        finally:
            await services.aclose()

    ref = asyncio.run(store_one())
    env.setenv("CREDENTIAL_KEYS", f"k2:{new},k1:{old}")

    first = invoke("credentials", "rotate")
    second = invoke("credentials", "rotate")

    assert first.exit_code == 0, first.output
    assert "Re-wrapped 1;" in first.output
    assert "Re-wrapped 0; already on the primary key 1." in second.output

    env.setenv("CREDENTIAL_KEYS", f"k2:{new}")  # the old key retired: the record still reads

    async def read_back() -> dict[str, str]:
        services = await build_services(Settings())
        try:
            return dict(await services.credentials.get("T1", "U1", ref))
        finally:
            await services.aclose()

    assert asyncio.run(read_back()) == {"header:Authorization": "Bearer rotate-me"}
    assert "rotate-me" not in first.output + second.output
