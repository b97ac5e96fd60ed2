"""The ``slack-mcp-bot`` command: check, migrate, run, credentials, manifest."""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click
import sqlalchemy as sa
import yaml
from pydantic import SecretStr, ValidationError

from bot.distribution import INSTALL_PATH, REDIRECT_PATH
from bot.oauth_web import listener_host, redirect_problem
from bot.runner import SlackRefused, SlackUnreachable, check_bot_token, run_bot, slack_client
from mcp_core.credentials import BACKENDS, describe_backend, detect_backend, rotate_credentials
from mcp_core.credentials.transfer import migrate_credentials
from mcp_core.errors import McpCoreError
from mcp_core.logs import TEXT_FORMAT, use_format
from mcp_core.oauth import CALLBACK_PATH, CLIENT_METADATA_PATH, default_redirect_url
from mcp_core.security import LOOPBACK_HOSTS
from mcp_core.settings import Settings
from mcp_core.store import Store, create_engine, migrate, pending_migrations
from run_cards import BUILTIN_DIR, load_cards, operator_var, read_operator_values
from run_cards.oauth_clients import read_oauth_clients

__all__ = ["main"]

CHECK_DB_TIMEOUT_S = 5.0

MODES: dict[str, tuple[str, ...]] = {
    "Socket Mode (slack-mcp-bot run)": ("slack_bot_token", "slack_app_token"),
    "HTTP mode (slack-mcp-bot run --http)": ("slack_bot_token", "slack_signing_secret"),
    "LLM agent": ("openai_api_key",),
}

HOW_TO_GET_TOKENS = """\
To get them: create a Slack app from manifest.yml (https://api.slack.com/apps → Create New App →
From an app manifest), install it to your workspace, then put in .env:
  SLACK_BOT_TOKEN=xoxb-…       (OAuth & Permissions → Bot User OAuth Token)
  SLACK_APP_TOKEN=xapp-…       (Basic Information → App-Level Tokens, scope connections:write)
  SLACK_SIGNING_SECRET=…       (Basic Information → Signing Secret; HTTP mode only)"""


def _load_settings() -> Settings:
    """Settings from the environment and ``.env``; LOG_LEVEL applies unless --log-level was
    given, and LOG_FORMAT from here on (lines logged before are few, and text)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("Invalid configuration:\n" + "\n".join(lines)) from None
    if not click.get_current_context().find_root().params.get("log_level"):
        try:
            logging.getLogger().setLevel(settings.log_level.upper())
        except ValueError:
            raise click.ClickException(f"LOG_LEVEL: unknown level {settings.log_level!r}") from None
    use_format(settings.log_format)
    return settings


def _shown(value: object) -> str:
    if value is None or value == []:
        return "(not set)"
    if isinstance(value, SecretStr):
        return "set (hidden)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _missing(settings: Settings, fields: tuple[str, ...]) -> list[str]:
    return [name.upper() for name in fields if getattr(settings, name) is None]


@click.group()
@click.option("--log-level", default=None, help="Override LOG_LEVEL.")
def main(log_level: str | None) -> None:
    """slack-mcp-bot: every Slack member's own MCP servers, used through an LLM agent."""
    # LOG_LEVEL and LOG_FORMAT (environment or .env) apply once the settings are read (_load_settings).
    logging.basicConfig(level=(log_level or "INFO").upper(), format=TEXT_FORMAT)


@main.command()
def check() -> None:
    """Print the effective configuration (secrets hidden), what each mode still needs, and
    whether Slack accepts the bot token. Creates nothing (no DATA_DIR, database or key file)."""
    settings = _load_settings()
    click.echo("Configuration:")
    for name in type(settings).model_fields:
        click.echo(f"  {name.upper():<26} {_shown(getattr(settings, name))}")
    click.echo(f"\nWorkspaces: {_workspaces_status(settings)}")
    click.echo("\nModes:")
    for mode, fields in MODES.items():
        if settings.multi_workspace:  # each workspace's token comes from its installation
            fields = tuple(f for f in fields if f != "slack_bot_token")
        missing = _missing(settings, fields)
        click.echo(f"  {mode:<40} {'ready' if not missing else 'missing ' + ', '.join(missing)}")
    click.echo(f"\nSlack: {_slack_status(settings)}")
    click.echo(f"Database: {_database_status(settings)}")
    selection = detect_backend(settings)
    line = f"Credentials: {selection.backend} backend ({selection.reason})"
    try:
        line += f"; {describe_backend(selection, settings)}"
    except McpCoreError as exc:
        line += f"; PROBLEM: {exc}"
    click.echo(line)
    click.echo(_cards_status(settings))
    click.echo(_oauth_status(settings))


def _cards_status(settings: Settings) -> str:
    """The run cards loaded and the operator's .env pre-fill variables (names, never values)."""
    cards = load_cards(BUILTIN_DIR, settings.run_cards_dir)
    line = f"Run cards: {len(cards)} ({', '.join(card.id for card in cards.all())})"
    prefill = read_operator_values(cards.all(), Path(".env"))
    if prefill:
        names = sorted(operator_var(card, key) for card, fields in prefill.items() for key in fields)
        who = "admins" if settings.admin_user_ids else "admins, and ADMIN_USER_IDS is empty"
        line += f"\nOperator pre-fill from .env, for {who}: {', '.join(names)}"
    return line


def _oauth_status(settings: Settings) -> str:
    """Where OAuth sign-ins come back to, and what is missing for them to work from anywhere."""
    configured = settings.oauth_redirect_url
    if configured:
        problem = redirect_problem(configured)
        if problem:
            return f"OAuth sign-in: PROBLEM: {problem}"
        lines = [f"OAuth sign-in: redirect URL {configured}"]
        if urlsplit(configured).path != CALLBACK_PATH:
            lines.append(f"  the bot serves {CALLBACK_PATH}: the proxy in front must forward this URL there")
        host = listener_host(configured)
        lines.append(
            f"  Socket Mode listens for it on {host}:{settings.oauth_port} (OAUTH_PORT); "
            f"HTTP mode on its own port"
        )
        if configured.startswith("https://"):
            metadata = f"https://{urlsplit(configured).netloc}{CLIENT_METADATA_PATH}"
            lines.append(f"  client metadata document: {metadata}")
    else:
        socket_mode = default_redirect_url(settings)
        http_mode = default_redirect_url(settings, settings.port)
        lines = [
            f"OAuth sign-in: redirect URL {socket_mode} (Socket Mode, OAUTH_PORT), "
            f"{http_mode} (HTTP mode, PORT)",
            "  sign-in links work only from a browser on this machine "
            f"(set OAUTH_REDIRECT_URL to https://<your host>{CALLBACK_PATH})",
        ]
    clients = read_oauth_clients(load_cards(BUILTIN_DIR, settings.run_cards_dir).all(), Path(".env"))
    if clients:
        lines.append(f"  pre-registered OAuth clients for cards: {', '.join(sorted(clients))}")
    return "\n".join(lines)


def _workspaces_status(settings: Settings) -> str:
    """Single-workspace mode, or a distributed app and how many workspaces installed it."""
    if not settings.multi_workspace:
        if settings.slack_client_id and settings.slack_bot_token:
            return "one workspace, SLACK_BOT_TOKEN's (SLACK_CLIENT_ID is ignored while a bot token is set)"
        return "one workspace, SLACK_BOT_TOKEN's"
    line = f"a distributed app (SLACK_CLIENT_ID {settings.slack_client_id}), installed at {INSTALL_PATH}"
    try:
        url = _read_only_url(settings)
    except (ValueError, sa.exc.ArgumentError) as exc:
        return f"{line}; installations unknown ({exc})"
    if isinstance(url, Path):
        return f"{line}; no installations yet (no database)"

    async def count() -> tuple[int, int]:
        engine = create_engine(url)
        try:
            async with asyncio.timeout(CHECK_DB_TIMEOUT_S):
                return await Store(engine).count_installations(settings.slack_client_id or "")
        finally:
            await engine.dispose()

    try:
        workspaces, rows = asyncio.run(count())
    except (McpCoreError, TimeoutError, OSError) as exc:
        return f"{line}; installations unknown ({type(exc).__name__}: the database answered no count)"
    return f"{line}; {workspaces} workspace(s) or org(s) installed ({rows} installation(s))"


def _slack_status(settings: Settings) -> str:
    """auth.test with SLACK_BOT_TOKEN: who the bot is, or what is wrong (never the token)."""
    if settings.slack_bot_token is None:
        if settings.multi_workspace:
            return "not checked here (a distributed app: each workspace's token is checked on use)"
        return "not checked (SLACK_BOT_TOKEN is not set)"
    try:
        identity = asyncio.run(check_bot_token(slack_client(settings, retries=False)))
    except SlackRefused as exc:
        return f"PROBLEM: {exc}"
    except SlackUnreachable as exc:
        return f"NOT reachable ({exc})"
    return f"SLACK_BOT_TOKEN accepted: {identity}"


def _read_only_url(settings: Settings) -> str | Path:
    """The database URL to probe without creating anything: an SQLite file opened read-only,
    PostgreSQL as it is; or the path of an SQLite file that does not exist yet."""
    url = sa.make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database.startswith("file:"):
        return settings.sqlalchemy_url
    if url.database == ":memory:" or not Path(url.database).is_file():
        return Path(url.database)
    return f"sqlite+aiosqlite:///file:{quote(url.database)}?mode=ro&uri=true"


def _database_status(settings: Settings) -> str:
    try:
        url = _read_only_url(settings)
    except (ValueError, sa.exc.ArgumentError) as exc:
        return f"NOT usable ({exc})"
    if isinstance(url, Path):
        return f"sqlite, no database yet at {url} (created by the first start or `slack-mcp-bot migrate`)"

    async def probe() -> str:
        engine = create_engine(url)
        try:
            async with asyncio.timeout(CHECK_DB_TIMEOUT_S):
                pending = await pending_migrations(engine)
        finally:
            await engine.dispose()
        kind = engine.dialect.name
        return f"{kind} reachable; " + (
            f"{len(pending)} migration(s) pending" if pending else "schema up to date"
        )

    try:
        return asyncio.run(probe())
    except Exception as exc:  # boundary: report, don't crash the check
        return f"NOT reachable ({type(exc).__name__}: {str(exc)[:200]})"


@main.command("migrate")
def migrate_command() -> None:
    """Apply pending database migrations (idempotent)."""
    applied = _apply_migrations(_load_settings())
    click.echo(f"Applied migrations: {applied}" if applied else "Schema already up to date.")


def _apply_migrations(settings: Settings) -> list[int]:
    async def apply() -> list[int]:
        engine = create_engine(settings)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    return asyncio.run(apply())


@main.group()
def credentials() -> None:
    """Manage stored credentials."""


@credentials.command("rotate")
def credentials_rotate() -> None:
    """Re-wrap every stored credential under the primary key of CREDENTIAL_KEYS."""
    try:
        report = asyncio.run(rotate_credentials(_load_settings()))
    except McpCoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Re-wrapped {report.rewrapped}; already on the primary key {report.already_current}.")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} record(s) could not be read with the configured keys."
        )


@credentials.command("migrate")
@click.option("--to", "target", required=True, type=click.Choice(list(BACKENDS)))
def credentials_migrate(target: str) -> None:
    """Copy every stored credential to another backend and verify each copy."""
    try:
        report = asyncio.run(migrate_credentials(_load_settings(), target))
    except McpCoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Copied and verified {report.copied}; {report.empty} had nothing stored.")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} could not be copied ({', '.join(report.failed[:10])}); nothing was lost, "
            "fix the cause and run again."
        )
    click.echo(f"Now set CREDENTIAL_BACKEND={target} and restart the bot.")


@main.command()
@click.option("--http", "http_mode", is_flag=True, help="Serve Slack's HTTP endpoint instead of Socket Mode.")
@click.option("--port", type=int, default=None, help="HTTP mode's port  [default: PORT, else 3000]")
def run(http_mode: bool, port: int | None) -> None:
    """Start the bot (Socket Mode by default). Exits 2 when Slack refuses a token."""
    settings = _load_settings()
    mode = "HTTP mode (slack-mcp-bot run --http)" if http_mode else "Socket Mode (slack-mcp-bot run)"
    missing = _missing(settings, MODES[mode])
    if missing:  # before touching the database: this is the first thing a new user meets
        click.echo(f"Cannot start in {mode}: missing {', '.join(missing)}.\n\n{HOW_TO_GET_TOKENS}", err=True)
        sys.exit(2)
    try:
        asyncio.run(run_bot(settings, http=http_mode, port=settings.port if port is None else port))
    except SlackRefused as exc:
        click.echo(f"Cannot start in {mode}: {exc}", err=True)
        sys.exit(2)
    except McpCoreError as exc:  # configuration the core refused (a missing extra, a bad key…)
        click.echo(f"Cannot start in {mode}: {exc}", err=True)
        sys.exit(2)


# --- manifest ----------------------------------------------------------------------------------------

_HERE = Path(__file__).resolve().parent
MANIFEST_PATH = next(
    (path for path in (_HERE.parent / "manifest.yml", _HERE / "manifest.yml") if path.is_file()),
    _HERE.parent / "manifest.yml",
)
"""The app manifest in Socket Mode (what Slack's "From an app manifest" takes): the repository
root's in a checkout or editable install, the copy inside the package in a wheel."""
EVENTS_PATH = "/slack/events"
"""Where HTTP mode serves Slack (bot.runner.http_app): events, interactivity and /mcp alike."""


def events_url(base_url: str) -> str:
    """``<base_url>/slack/events``: the one request URL of HTTP mode.

    Raises:
        click.BadParameter: ``base_url`` is not an absolute ``https://`` URL with a host (plain
            ``http://`` only for localhost), or carries credentials, a query or a fragment.
    """
    parts = urlsplit(base_url.strip())
    try:
        _ = parts.port  # only to reject a malformed port
    except ValueError:
        raise click.BadParameter(f"{base_url!r} has an invalid port.", param_hint="--http") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise click.BadParameter(
            f"{base_url!r} is not a base URL such as https://bot.example.com.", param_hint="--http"
        )
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise click.BadParameter(
            f"{base_url!r} must use https: Slack sends its requests, signed, to a public https URL "
            "(plain http only for localhost).",
            param_hint="--http",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise click.BadParameter(
            f"{base_url!r} must be a plain base URL, without user, query or fragment.", param_hint="--http"
        )
    path = parts.path.rstrip("/").removesuffix(EVENTS_PATH)
    return f"{parts.scheme}://{parts.netloc}{path}{EVENTS_PATH}"


def http_manifest(manifest: dict[str, Any], url: str) -> dict[str, Any]:
    """``manifest`` for HTTP mode: Socket Mode off, events, interactivity and slash commands at ``url``."""
    result = copy.deepcopy(manifest)
    settings = result["settings"]
    settings["socket_mode_enabled"] = False
    settings["event_subscriptions"]["request_url"] = url
    settings["interactivity"]["request_url"] = url
    for command in result["features"]["slash_commands"]:
        command["url"] = url
    return result


def distributed_manifest(manifest: dict[str, Any], redirect_url: str) -> dict[str, Any]:
    """``manifest`` for a distributed app (README, *Many workspaces*): Slack's install flow comes
    back to ``redirect_url``, and uninstalls and revoked tokens are told to the bot."""
    result = copy.deepcopy(manifest)
    result["oauth_config"]["redirect_urls"] = [redirect_url]
    events = result["settings"]["event_subscriptions"]["bot_events"]
    events += [e for e in ("app_uninstalled", "tokens_revoked") if e not in events]
    return result


@main.command("manifest")
@click.option(
    "--http",
    "base_url",
    metavar="BASE_URL",
    default=None,
    help="HTTP mode: the bot's public https base URL; Slack will post to BASE_URL/slack/events.",
)
@click.option(
    "--distributed",
    is_flag=True,
    help="With --http: a distributed app (the install redirect URL, app_uninstalled and tokens_revoked).",
)
def manifest_command(base_url: str | None, distributed: bool) -> None:
    """Print the Slack app manifest: manifest.yml as is (Socket Mode), or for HTTP mode with --http."""
    if distributed and base_url is None:
        raise click.ClickException("--distributed needs --http BASE_URL: installs come back to it.")
    try:
        text = MANIFEST_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot read {MANIFEST_PATH}: {exc.strerror}") from None
    if base_url is None:
        click.echo(text, nl=False)
        return
    url = events_url(base_url)
    manifest = http_manifest(yaml.safe_load(text), url)
    if distributed:
        manifest = distributed_manifest(manifest, url.removesuffix("/slack/events") + REDIRECT_PATH)
    click.echo(f"# Slack app manifest for slack-mcp-bot in HTTP mode: every request goes to {url}")
    click.echo("# (made by `slack-mcp-bot manifest --http`; paste it into Create New App → From a manifest)")
    click.echo(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=1000), nl=False)
