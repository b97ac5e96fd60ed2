"""Cards end to end through the registry: built connections launch real servers or reach a toy
server that checks the exact URL, headers and query; form values reach stdio servers literally."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from mcp_core.models import NewConnection
from mcp_core.services import Services
from run_cards import BUILTIN_DIR, CardCatalog, CardFieldError, RunCard, load_cards
from tests.support.postgres import PG_ADMIN_URL, reachable_pg_server
from tests.support.registry import CREDENTIAL_REF, add_remote, call, catalog_name
from tests.support.secrets import DictSecrets
from tests.support.servers import REPO, require_npm, start_http_server

pytestmark = pytest.mark.anyio

ARGV_SERVER = REPO / "tests" / "servers" / "argv.py"
NASTY = [
    "two words",
    "semi; echo pwned",
    "$(touch /tmp/run-card-pwned)",
    "`id` | cat > /tmp/x && rm -rf ~",
    "line one\nline two",
    "'quoted' \"double\" \\back",
    "*",
]


def with_ref(new: NewConnection, **changes: str) -> NewConnection:
    return new.model_copy(update={"credential_ref": CREDENTIAL_REF, **changes})


async def connect(services: Services, secrets: DictSecrets, new: NewConnection, values: dict[str, str]):
    connection = await add_remote(services, secrets, with_ref(new), values)
    assert connection.status == "healthy", connection.status_detail
    return connection


# --- literal values into a stdio server ------------------------------------------------------

ARGV_CARD = RunCard.model_validate(
    {
        "id": "argv",
        "name": "Argv",
        "description": "Echoes its argv.",
        "source": "admin",
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(ARGV_SERVER)],
        "server_args": ["{first}", "--fixed", "{second}"],
        "fields": [
            {"key": "first", "label": "First", "required": True},
            {"key": "second", "label": "Second", "required": True},
            {"key": "note", "label": "Note"},
            {"key": "token", "label": "Token", "secret": True},
        ],
        "mapping": {"first": "arg", "second": "arg", "note": "env:CARD_NOTE", "token": "env:CARD_TOKEN"},
    }
)


@pytest.mark.parametrize("value", NASTY)
async def test_values_reach_a_stdio_server_literally(
    services: Services, secrets: DictSecrets, value: str
) -> None:
    env_value = f"--{value}"  # a leading "--" is fine where it cannot be read as an option
    token = f"-secret:{value}"
    new, secret_map = ARGV_CARD.build(
        {"first": value, "second": value[::-1], "note": env_value, "token": token}
    )
    assert secret_map == {"env:CARD_TOKEN": token}
    await connect(services, secrets, new, secret_map)
    argv = await call(services, await catalog_name(services, "argv", "argv"))
    assert json.loads(argv.text) == [value, "--fixed", value[::-1]]
    env_tool = await catalog_name(services, "argv", "env")
    assert (await call(services, env_tool, name="CARD_NOTE")).text == env_value
    # the whole result is the secret, exactly, so the registry's scrubbing replaces all of it
    assert (await call(services, env_tool, name="CARD_TOKEN")).text == "[redacted]"
    assert not await anyio.Path("/tmp/run-card-pwned").exists()


@pytest.mark.parametrize("value", ["--help", "-", "-rf"])
def test_leading_dash_into_an_argument_is_refused(value: str) -> None:
    with pytest.raises(CardFieldError, match="option") as caught:
        ARGV_CARD.build({"first": "ok", "second": value})
    assert caught.value.field_key == "second"


# --- built-in stdio cards launch their real servers --------------------------------------------


def npm_catalog(card_id: str, package: str) -> CardCatalog:
    """The built-in cards with ``card_id`` pointed at the installed npm server (the admin override)."""
    entry = require_npm(package)
    node = shutil.which("node") or "node"
    command = f"{shlex.quote(node)} {shlex.quote(str(entry))}"
    return load_cards(BUILTIN_DIR, environ={f"RUN_CARD_{card_id.upper()}_COMMAND": command})


def card(catalog: CardCatalog, card_id: str) -> RunCard:
    found = catalog.get(card_id)
    assert found is not None
    return found


@pytest.mark.npm
async def test_slack_card_lists_tools_with_a_fake_token(services: Services, secrets: DictSecrets) -> None:
    slack = card(npm_catalog("slack", "server-slack"), "slack")
    new, secret_map = slack.build({"bot_token": "xoxb-000-fake", "team_id": "T000FAKE"})
    assert new.config == {"env": {"SLACK_TEAM_ID": "T000FAKE"}, "card_values": {"team_id": "T000FAKE"}}
    assert secret_map == {"env:SLACK_BOT_TOKEN": "xoxb-000-fake"}
    connection = await connect(services, secrets, new, secret_map)
    assert "slack_list_channels" in {tool.name for tool in connection.tools}


@pytest.mark.npm
@pytest.mark.postgres
async def test_postgres_card_runs_a_read_query(services: Services, secrets: DictSecrets) -> None:
    await reachable_pg_server()
    url = sa.make_url(PG_ADMIN_URL)
    password = url.password or "unused-with-trust-auth"
    connection_string = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    postgres = card(npm_catalog("postgres", "server-postgres"), "postgres")
    with pytest.raises(CardFieldError) as caught:  # a password in argv would show in ps
        postgres.build({"connection_string": "postgresql://me:pw@db/app"})
    assert caught.value.field_key == "connection_string"
    new, secret_map = postgres.build({"connection_string": connection_string, "password": password})
    assert new.args[-1] == connection_string
    assert secret_map == {"env:PGPASSWORD": password}
    await connect(services, secrets, new, secret_map)
    result = await call(
        services, await catalog_name(services, "postgres", "query"), sql="SELECT 40 + 2 AS answer"
    )
    assert result.is_error is False, result.text
    assert json.loads(result.text) == [{"answer": 42}]


@pytest.mark.npm
async def test_filesystem_card_lists_a_directory(
    services: Services, secrets: DictSecrets, tmp_path: Path
) -> None:
    shared = tmp_path / "shared dir; $(x)"
    shared.mkdir()
    (shared / "hello.txt").write_text("hi")
    filesystem = card(npm_catalog("filesystem", "server-filesystem"), "filesystem")
    new, secret_map = filesystem.build({"directory": str(shared)})
    assert secret_map == {}
    await connect(services, secrets, new, secret_map)
    listing = await call(
        services, await catalog_name(services, "filesystem", "list_directory"), path=str(shared)
    )
    assert listing.is_error is False, listing.text
    assert "hello.txt" in listing.text


# --- remote cards: exact URL, headers and query --------------------------------------------------

BUILTINS = load_cards(BUILTIN_DIR, environ={})


async def test_supabase_card(services: Services, secrets: DictSecrets) -> None:
    token, ref = "sbp_0123456789abcdef", "abcdefghij0123456789"
    new, secret_map = card(BUILTINS, "supabase").build({"access_token": token, "project_ref": ref})
    assert (new.transport, new.url) == ("streamable_http", "https://mcp.supabase.com/mcp")
    assert new.config["query"] == {"project_ref": ref, "read_only": "true"}
    assert secret_map == {"header:Authorization": f"Bearer {token}"}
    flags = ["--bearer", token, "--require-query", f"project_ref={ref}", "--require-query", "read_only=true"]
    async with start_http_server(*flags) as server:
        connection = await connect(services, secrets, new.model_copy(update={"url": server.url}), secret_map)
    assert connection.tools


async def test_supabase_refuses_a_service_role_key() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.x"
    with pytest.raises(CardFieldError) as caught:
        card(BUILTINS, "supabase").build({"access_token": jwt, "project_ref": "abcdefghij0123456789"})
    assert caught.value.field_key == "access_token"


async def test_github_card(services: Services, secrets: DictSecrets) -> None:
    token = "github_pat_11AAAA_fake"
    new, secret_map = card(BUILTINS, "github").build({"token": token, "toolsets": "repos,issues"})
    assert (new.transport, new.url) == ("streamable_http", "https://api.githubcopilot.com/mcp/")
    assert new.config["headers"] == {"X-MCP-Readonly": "true", "X-MCP-Toolsets": "repos,issues"}
    assert secret_map == {"header:Authorization": f"Bearer {token}"}
    flags = [
        "--bearer", token,
        "--require-header", "X-MCP-Readonly=true",
        "--require-header", "X-MCP-Toolsets=repos,issues",
    ]  # fmt: skip
    async with start_http_server(*flags) as server:
        connection = await connect(services, secrets, new.model_copy(update={"url": server.url}), secret_map)
    assert connection.tools


async def test_custom_card_with_bearer(services: Services, secrets: DictSecrets) -> None:
    async with start_http_server("--bearer", "tok-custom") as server:
        new, secret_map = card(BUILTINS, "custom").build({"url": server.url, "bearer_token": "tok-custom"})
        assert (new.transport, new.url) == ("streamable_http", server.url)
        assert new.config == {"card_values": {"url": server.url, "transport": "streamable_http"}}  # no token
        assert secret_map == {"header:Authorization": "Bearer tok-custom"}
        assert (await connect(services, secrets, new, secret_map)).tools


async def test_custom_card_with_a_custom_header_over_sse(services: Services, secrets: DictSecrets) -> None:
    async with start_http_server("--require-header", "X-API-Key=k-123", transport="sse") as server:
        values = {"url": server.url, "transport": "sse", "header_name": "X-API-Key", "header_value": "k-123"}
        new, secret_map = card(BUILTINS, "custom").build(values)
        assert (new.transport, new.url) == ("sse", server.url)
        assert secret_map == {"header:X-API-Key": "k-123"}
        assert (await connect(services, secrets, new, secret_map)).tools


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "https://user:pw@mcp.example.com/mcp"}, "url"),
        ({"url": "https://mcp.example.com/mcp", "transport": "stdio"}, "transport"),
        ({"url": "https://mcp.example.com/mcp", "header_value": "v"}, "header_name"),
        ({"url": "https://mcp.example.com/mcp", "header_name": "X-Key"}, "header_value"),
        (
            {"url": "https://mcp.example.com/mcp", "header_name": "Bad Name", "header_value": "v"},
            "header_name",
        ),
        (
            {
                "url": "https://x.example/mcp",
                "bearer_token": "t",
                "header_name": "authorization",
                "header_value": "v",
            },
            "header_value",
        ),
    ],
)
def test_custom_card_refuses_bad_values(values: dict[str, str], field: str) -> None:
    with pytest.raises(CardFieldError) as caught:
        card(BUILTINS, "custom").build(values)
    assert caught.value.field_key == field
