"""``/mcp`` and its subcommands: one table that dispatches them and writes the usage text.

A new subcommand is a handler here and a row in ``SUBCOMMANDS``; ``/mcp help`` (and any word
the table does not know) then lists it. Handlers read one ``CommandRequest`` and answer
ephemerally through its response_url.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.models.blocks import Block

from bot import stats_views, texts, views
from bot._payload import owner
from bot.admin import AdminPanel
from bot.connect import OpenConnect
from bot.failures import Failures
from bot.home import Home
from mcp_core.models import Connection
from mcp_core.services import Services
from mcp_core.stats import stats_report, window

__all__ = ["SUBCOMMANDS", "USAGE", "CommandRequest", "Subcommand", "register_commands"]


@dataclass(frozen=True)
class CommandRequest:
    """One ``/mcp <subcommand> <arg>`` from a verified user, with what handlers need."""

    body: dict[str, Any]
    respond: AsyncRespond
    arg: str
    services: Services
    home: Home
    open_connect: OpenConnect
    admin: AdminPanel

    @property
    def owner(self) -> tuple[str, str]:
        return owner(self.body)

    async def say(self, text: str, blocks: list[Block] | None = None) -> None:
        await self.respond(text=text, blocks=blocks, response_type="ephemeral")

    async def find(self, name: str) -> Connection | None:
        """The user's connection named ``name`` (any case); else the user hears their names."""
        store = self.services.store
        connection = await store.find_connection(*self.owner, name)
        if connection is None:
            names = [c.name for c in await store.list_connections(*self.owner)]
            await self.say(texts.unknown_connection(name, names))
        return connection


Handler = Callable[[CommandRequest], Awaitable[None]]


@dataclass(frozen=True)
class Subcommand:
    """A row of the table: ``/mcp <name> <syntax>`` — ``summary``, run by ``handler``."""

    name: str
    syntax: str
    summary: str
    handler: Handler

    def usage_line(self) -> str:
        return f"• `/mcp {' '.join(filter(None, (self.name, self.syntax)))}` — {self.summary}"


async def connect(request: CommandRequest) -> None:
    await request.open_connect(request.body, request.respond, request.arg)


async def show_list(request: CommandRequest) -> None:
    connections = await request.services.store.list_connections(*request.owner)
    await request.say(texts.list_summary(connections), views.connection_blocks(connections))


async def show_tools(request: CommandRequest) -> None:
    if request.arg:
        connection = await request.find(request.arg)
        if connection is not None:
            await request.say(texts.tools_of(connection.name), views.tool_page_blocks(connection, 0))
        return
    connections = await request.services.store.list_connections(*request.owner)
    if not connections:
        await request.say(texts.NO_CONNECTIONS)
        return
    await request.say(texts.ALL_TOOLS, views.all_tools_blocks(connections))


async def run_tests(request: CommandRequest) -> None:
    """One reply for all the checks (a response_url takes at most five)."""
    team_id, user_id = request.owner
    if request.arg:
        connection = await request.find(request.arg)
        targets = [connection] if connection is not None else []
    else:
        targets = await request.services.store.list_connections(team_id, user_id)
        if not targets:
            await request.say(texts.NO_CONNECTIONS)
    if not targets:
        return
    connections = request.services.connections
    reports = await asyncio.gather(*(connections.test(team_id, user_id, c.id) for c in targets))
    await request.say("\n".join(texts.health(r) for r in reports))
    await request.home.publish(team_id, user_id)


async def confirm_disconnect(request: CommandRequest) -> None:
    if not request.arg:
        await request.say(texts.WHICH_ONE)
        return
    connection = await request.find(request.arg)
    if connection is not None:
        await request.say(texts.disconnect_prompt(connection.name), views.connection_blocks([connection]))


async def show_stats(request: CommandRequest) -> None:
    days = window(request.arg)
    if days is None:
        await request.say(texts.STATS_WINDOWS)
        return
    services = request.services
    report = await stats_report(services.store, services.settings, *request.owner, days)
    blocks = stats_views.stats_blocks(report.stats, report.suggestions, priced=report.priced)
    await request.say(stats_views.stats_summary(report.stats), blocks)


async def show_admin(request: CommandRequest) -> None:
    await request.admin.show(request.body, request.respond, request.arg)


async def show_help(request: CommandRequest) -> None:
    await request.say(USAGE)


SUBCOMMANDS = (
    Subcommand("connect", "[card]", "connect a server (`custom`: any remote MCP URL)", connect),
    Subcommand("list", "", "your connections, their status, usage and tool choices", show_list),
    Subcommand(
        "tools", "[name]", "browse tools of one or all connections; switch them off or on", show_tools
    ),
    Subcommand("test", "[name]", "health check of one or all connections", run_tests),
    Subcommand("disconnect", "<name>", "remove a connection and its stored credentials", confirm_disconnect),
    Subcommand("stats", "[7d|30d]", "your tool calls, errors, latency, tokens and suggestions", show_stats),
    Subcommand("admin", "[7d|30d]", "workspace usage, policy and audit log (admins only)", show_admin),
    Subcommand("help", "", "this message", show_help),
)
USAGE = texts.usage([s.usage_line() for s in SUBCOMMANDS])
_BY_NAME = {s.name: s for s in SUBCOMMANDS}


def register_commands(
    app: AsyncApp,
    *,
    services: Services,
    home: Home,
    open_connect: OpenConnect,
    admin: AdminPanel,
    failures: Failures,
) -> None:
    """Add the ``/mcp`` listener: ack at once, then run the subcommand (help when unknown)."""

    @app.command("/mcp")
    @failures.after_ack
    async def mcp_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        words = (body.get("text") or "").split()
        subcommand = _BY_NAME.get(words[0].lower() if words else "help", _BY_NAME["help"])
        request = CommandRequest(body, respond, " ".join(words[1:]), services, home, open_connect, admin)
        await subcommand.handler(request)
