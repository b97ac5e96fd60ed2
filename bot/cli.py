"""The ``slack-mcp-bot`` command: check, migrate, run."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click
from pydantic import SecretStr, ValidationError

from bot.runner import run_bot
from mcp_core.credentials import describe_keys, detect_backend, rotate_credentials
from mcp_core.credentials.transfer import migrate_credentials
from mcp_core.errors import McpCoreError
from mcp_core.settings import Settings
from mcp_core.store import create_engine, migrate, pending_migrations
from run_cards import BUILTIN_DIR, load_cards, operator_var, read_operator_values

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
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("Invalid configuration:\n" + "\n".join(lines)) from None


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
    level = (log_level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def check() -> None:
    """Print the effective configuration (secrets hidden) and what each mode still needs."""
    settings = _load_settings()
    click.echo("Configuration:")
    for name in type(settings).model_fields:
        click.echo(f"  {name.upper():<26} {_shown(getattr(settings, name))}")
    click.echo("\nModes:")
    for mode, fields in MODES.items():
        missing = _missing(settings, fields)
        click.echo(f"  {mode:<40} {'ready' if not missing else 'missing ' + ', '.join(missing)}")
    click.echo(f"\nDatabase: {_database_status(settings)}")
    selection = detect_backend(settings)
    line = f"Credentials: {selection.backend} backend ({selection.reason})"
    if selection.backend == "local":
        try:
            line += f"; {describe_keys(settings)}"
        except McpCoreError as exc:
            line += f"; PROBLEM: {exc}"
    click.echo(line)
    click.echo(_cards_status(settings))


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


def _database_status(settings: Settings) -> str:
    async def probe() -> str:
        engine = create_engine(settings)
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
@click.option("--to", "target", required=True, type=click.Choice(["local", "gcp", "aws", "supabase"]))
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
@click.option("--port", type=int, default=3000, envvar="PORT", show_default=True)
def run(http_mode: bool, port: int) -> None:
    """Start the bot (Socket Mode by default)."""
    settings = _load_settings()
    mode = "HTTP mode (slack-mcp-bot run --http)" if http_mode else "Socket Mode (slack-mcp-bot run)"
    missing = _missing(settings, MODES[mode])
    if missing:  # before touching the database: this is the first thing a new user meets
        click.echo(f"Cannot start in {mode}: missing {', '.join(missing)}.\n\n{HOW_TO_GET_TOKENS}", err=True)
        sys.exit(2)
    asyncio.run(run_bot(settings, http=http_mode, port=port))
