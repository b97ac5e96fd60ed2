"""The tool registry: connect, discover, catalog and call a user's MCP tools.

Everything here is scoped by (team_id, user_id) taken from the verified request; a user's
catalog is built only from their own connections, so a tool name can never reach another
user's server.

* Discovery lists every page of tools/list, drops malformed tools with a recorded warning,
  caches the result in the store, and runs concurrently across connections.
* The catalog gives each tool a unique name valid for OpenAI function calling
  (``^[A-Za-z0-9_-]{1,64}$``), mapped back to (connection, tool), without the tools the person
  switched off and with their *Always allow* choices (``ToolPrefs``). It is cached in memory until
  it changes, so a warm turn reads nothing from the database: this process's own changes drop
  the person's catalog at once, and another process's arrive through ``connections_changed``
  and ``watching`` (``mcp_core.store.watch_connection_changes``). Until a watch reports that
  it sees every change, nothing is cached.
* ``call`` validates arguments against the tool's inputSchema before anything is sent, relies
  on the pool's timeouts, caps the output, and queues a usage row without waiting for it.

Size (~600 lines): this is where a person's connections, their live sessions and their catalog
meet (each change to one invalidates the others). What stands alone lives beside it: the form
checks in ``connection_service``, spec building in ``session_specs``, names and argument
validation in ``tool_catalog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcp_core import errors
from mcp_core._results import flatten_result
from mcp_core.call_events import CallEvents, TaskHook
from mcp_core.connection_config import ConnectionConfig
from mcp_core.connections import ConnectionPool, SpecFactory
from mcp_core.limits import UserLimits, too_many_connections
from mcp_core.metrics import Metrics, ToolCallOutcome
from mcp_core.models import (
    ApprovalPolicy,
    CatalogEntry,
    Connection,
    ConnectionStatus,
    NewConnection,
    SessionSpec,
    ToolInfo,
    ToolResult,
    Transport,
    UsageRecord,
)
from mcp_core.rich_results import rich_parts
from mcp_core.security import NetworkTargets, PolicyVerdict, judge_targets, scrub
from mcp_core.session_specs import session_spec
from mcp_core.settings import Settings
from mcp_core.store import Store
from mcp_core.store._rollups import server_key
from mcp_core.tool_catalog import ArgumentValidators, function_name, usable_tools, without_optional_nulls
from mcp_core.usage import UsageRecorder

if TYPE_CHECKING:
    import mcp_types as types

    from mcp_core.oauth import GrantProvider, OAuthFlows
    from mcp_core.oauth.machine import MachineProvider

logger = logging.getLogger(__name__)

__all__ = ["ConnectOutcome", "Discovery", "HealthReport", "SecretSource", "ToolRegistry", "function_name"]

POLICY_FIELDS = frozenset({"transport", "url", "config"})
"""The connection fields the network policy looks at."""
USAGE_MESSAGE_MAX_CHARS = 300


class SecretSource(Protocol):
    """Where a connection's secrets come from (the credential manager).

    Keys say where each value goes: ``header:<Name>``, ``env:<NAME>`` or ``query:<name>``
    (``SecretTarget.parse`` reads them).
    Secrets are stored first and the connection then created with their ``credential_ref``,
    so a connection's very first session already has them. A source that cannot decrypt
    what it holds raises ``CredentialError``; the registry adds the connection's name.
    """

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> Mapping[str, str]: ...


@dataclass
class Discovery:
    tools: list[ToolInfo]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ConnectOutcome:
    """A stored connection and, if it could not be opened, why (it is kept, marked error)."""

    connection: Connection
    error: errors.McpCoreError | None = None


@dataclass
class HealthReport:
    connection: str
    ok: bool
    latency_ms: float
    tool_count: int
    error: str | None = None


@dataclass
class _Catalog:
    entries: dict[str, CatalogEntry]


class ToolRegistry:
    """Connects, discovers and calls the tools of each user's own MCP servers."""

    def __init__(
        self,
        store: Store,
        pool: ConnectionPool,
        usage: UsageRecorder,
        settings: Settings,
        secrets: SecretSource | None = None,
        limits: UserLimits | None = None,
        oauth: OAuthFlows | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where calls are counted and timed (``/metrics``); without it, a registry
        of this registry's own that nobody reads."""
        self.limits = limits or UserLimits(
            max_turns=settings.agent_max_turns_per_user,
            max_calls_per_minute=settings.mcp_max_calls_per_minute,
        )
        self._store = store
        self._pool = pool
        self._usage = usage
        self._settings = settings
        self._secrets = secrets
        self._catalogs: dict[tuple[str, str], _Catalog] = {}
        self._catalogs_trusted = False
        """True while a watch reports every other process's change (``watching``)."""
        self._catalog_epoch = 0
        """Bumped by every invalidation: a catalog read meanwhile may be stale, so not cached."""
        self._validators = ArgumentValidators()
        self._call_openers: dict[uuid.UUID, SpecFactory] = {}
        """How the pool opens each connection's session for a call (built once, not per call)."""
        self._owners: dict[uuid.UUID, tuple[str, str]] = {}
        self._secret_forms: dict[uuid.UUID, tuple[str, ...]] = {}
        self._card_approvals: dict[str, ApprovalPolicy] = {}
        self._oauth = oauth
        self._metrics = metrics or Metrics()
        self._transports: dict[uuid.UUID, Transport] = {}
        self._servers: dict[uuid.UUID, str] = {}
        """Each catalogued connection's server key, for the workspace rollup (no read per call)."""
        """Each catalogued connection's transport, the label of its calls' metrics."""
        self._providers: dict[uuid.UUID, GrantProvider | MachineProvider] = {}
        """The OAuth provider of each connection's newest session: what it ran into explains a
        failure better than the transport can (a sign-in link, a server that cannot register us)."""

    # -- connections ---------------------------------------------------------------------

    async def add_connection(
        self, team_id: str, user_id: str, new: NewConnection, *, checked: PolicyVerdict | None = None
    ) -> ConnectOutcome:
        """Store a connection, open it and discover its tools.

        A connection that cannot be opened is kept with status error (or needs_auth) so the
        user can retry or edit it; the outcome carries the reason. ``checked`` is the caller's
        own admission of exactly this connection a moment ago (the connection service checks
        the per-person limit and the network policy before the form closes): then neither is
        repeated, and the first session does not resolve the URL again.

        Raises:
            PolicyError: the URL is not allowed (nothing is stored).
            DuplicateConnectionError: the user already has a connection with this name.
            LimitError: the user already has MCP_MAX_CONNECTIONS_PER_USER connections.
        """
        if checked is None:
            await self.check_room(team_id, user_id)
        checked = await self._check_policy(NetworkTargets.of(new), checked)
        connection = await self._store.create_connection(team_id, user_id, new)
        self._invalidate(team_id, user_id)
        return await self._connect(connection, checked)

    async def check_room(self, team_id: str, user_id: str) -> None:
        """Refuse a new connection once the person has MCP_MAX_CONNECTIONS_PER_USER of them.

        Raises:
            LimitError: with the limit and what to do.
        """
        limit = self._settings.mcp_max_connections_per_user
        if len(await self._store.list_connections(team_id, user_id)) >= limit:
            raise errors.LimitError(too_many_connections(limit))

    async def update_connection(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        *,
        checked: PolicyVerdict | None = None,
        **changes: Any,
    ) -> ConnectOutcome:
        """Change a connection in place — its id and usage history stay — then reconnect.

        ``checked``: the network policy's verdict on the changed connection, already asked by
        the caller (see ``add_connection``); it is used only if it covers exactly the
        changed addresses.

        Raises:
            PolicyError: the new URL or endpoint is not allowed (nothing is changed).
            DuplicateConnectionError: the new name is taken by another of the user's connections.
            ConnectionNotFoundError: not this user's connection.
        """
        if POLICY_FIELDS & changes.keys():
            if changes.keys() >= POLICY_FIELDS:  # the whole target is given: no need to read it
                endpoints = ConnectionConfig.model_validate(changes["config"]).endpoints
                targets = NetworkTargets.of_fields(changes["transport"], changes["url"], endpoints)
            else:
                current = await self._store.get_connection(team_id, user_id, connection_id)
                targets = NetworkTargets.of(current.model_copy(update=changes))
            checked = await self._check_policy(targets, checked)
        connection = await self._store.update_connection(team_id, user_id, connection_id, **changes)
        await self._pool.discard(connection_id)  # the old session used the old URL or secret
        self._forget(connection_id)
        self._invalidate(team_id, user_id)
        return await self._connect(connection, checked)

    async def _connect(self, connection: Connection, checked: PolicyVerdict | None) -> ConnectOutcome:
        """Discover a connection just stored; the outcome has it as stored afterwards."""
        team_id, user_id = connection.team_id, connection.user_id
        try:
            await self._discover(connection, checked)
        except errors.McpCoreError as exc:
            return ConnectOutcome(await self._store.get_connection(team_id, user_id, connection.id), exc)
        return ConnectOutcome(await self._store.get_connection(team_id, user_id, connection.id))

    async def reconnect(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> ConnectOutcome:
        """Close the connection's session and open it again (new tokens after a sign-in)."""
        connection = await self._store.get_connection(team_id, user_id, connection_id)
        await self._pool.discard(connection_id)
        self._invalidate(team_id, user_id)
        return await self._connect(connection, None)

    async def remove_connection(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> bool:
        """Close the live session, then delete the row. Returns False if it was not theirs."""
        await self._store.get_connection(team_id, user_id, connection_id)  # ownership first
        await self._pool.discard(connection_id, delete_files=True)
        removed = await self._store.delete_connection(team_id, user_id, connection_id)
        self._forget(connection_id)
        self._providers.pop(connection_id, None)
        self._invalidate(team_id, user_id)
        return removed

    async def discover(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> Discovery:
        """List every page of the connection's tools and cache them in the store.

        Raises:
            McpServerError: the server could not be reached; the connection is marked error.
        """
        connection = await self._store.get_connection(team_id, user_id, connection_id)  # ownership first
        return await self._discover(connection)

    async def _discover(self, connection: Connection, checked: PolicyVerdict | None = None) -> Discovery:
        """``discover`` for a connection just read from the store (so its owner is known)."""
        team_id, user_id, connection_id = connection.team_id, connection.user_id, connection.id
        try:
            listing = await self._pool.list_tools(
                connection_id, self._opener(team_id, user_id, connection_id, connection, checked)
            )
        except errors.McpCoreError as exc:
            exc = await self._explained(connection_id, exc)
            await self._mark_failed(team_id, user_id, connection_id, exc)
            raise exc  # the explained failure keeps the transport's as its cause
        tools, skipped = usable_tools(listing.tools)
        skipped = listing.skipped + skipped
        await self._store.save_tools(team_id, user_id, connection_id, tools, datetime.now(UTC))
        self._forget(connection_id)
        self._invalidate(team_id, user_id)
        return Discovery(tools, skipped)

    async def discover_all(self, team_id: str, user_id: str) -> dict[str, Discovery | errors.McpCoreError]:
        """Discover every connection of the user concurrently; one failure never stops the rest."""
        connections = await self._store.list_connections(team_id, user_id)
        results = await asyncio.gather(
            *(self.discover(team_id, user_id, c.id) for c in connections), return_exceptions=True
        )
        out: dict[str, Discovery | errors.McpCoreError] = {}
        for connection, result in zip(connections, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, errors.McpCoreError):
                raise result
            out[connection.name] = result
        return out

    async def test(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> HealthReport:
        """Health check: (re)list the tools and time it."""
        connection = await self._store.get_connection(team_id, user_id, connection_id)
        started = time.perf_counter()
        try:
            discovery = await self._discover(connection)
        except errors.McpCoreError as exc:
            return HealthReport(connection.name, False, (time.perf_counter() - started) * 1000, 0, str(exc))
        return HealthReport(
            connection.name, True, (time.perf_counter() - started) * 1000, len(discovery.tools)
        )

    async def on_tools_changed(self, connection_id: uuid.UUID) -> None:
        """Pool hook: a server announced a new tool list."""
        owner = self._owners.get(connection_id)
        if owner is None:
            return
        try:
            await self.discover(*owner, connection_id)
        except errors.McpCoreError as exc:
            logger.warning("refreshing tools after list_changed failed: %s", exc)

    # -- catalog and calls ---------------------------------------------------------------

    def use_card_approvals(self, approvals: Mapping[str, ApprovalPolicy]) -> None:
        """Each run card's approval policy (card id → policy), given once the cards are loaded.

        A catalog entry carries its connection's card policy; a connection without a card, or
        whose card is gone, gets ``writes``. Cached catalogs are rebuilt with the new policies.
        """
        self._card_approvals = dict(approvals)
        self._catalog_epoch += 1
        self._catalogs.clear()

    def connections_changed(self, team_id: str, user_id: str) -> None:
        """Another process changed this person's connections: rebuild their catalog next time."""
        self._invalidate(team_id, user_id)

    def watching(self, complete: bool) -> None:
        """Whether every other process's change reaches ``connections_changed`` from now on.
        Either way what is cached may have missed one, so every catalog is dropped; with
        ``complete`` False nothing is cached until it is True again."""
        self._catalog_epoch += 1
        self._catalogs.clear()
        self._catalogs_trusted = complete

    async def catalog(self, team_id: str, user_id: str) -> list[CatalogEntry]:
        """The user's tools under unique OpenAI-valid names, healthy-or-not connections alike."""
        return list((await self._catalog(team_id, user_id)).entries.values())

    async def call(
        self,
        team_id: str,
        user_id: str,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        events: CallEvents | None = None,
    ) -> ToolResult:
        """Call a catalog tool for this user; ``events`` hears the server's progress and
        questions during this call (``mcp_core.call_events``).

        Raises:
            UnknownToolError: not in this user's catalog (a tool they switched off is not).
            ToolArgumentsError: arguments do not match the inputSchema (nothing sent).
            LimitError: the user made MCP_MAX_CALLS_PER_MINUTE calls in the last minute (nothing sent).
            McpServerError: the server failed; see ``mcp_core.errors``.
        """
        catalog = self._catalogs.get((team_id, user_id)) or await self._catalog(team_id, user_id)
        entry = catalog.entries.get(tool)
        if entry is None:
            raise errors.UnknownToolError(tool)
        arguments = without_optional_nulls(entry.tool.input_schema, arguments or {})
        self._validators.check(entry, arguments)
        self.limits.count_call(team_id, user_id)
        connection_id = entry.connection_id
        opener = self._call_openers.get(connection_id)
        if opener is None:  # the pool asks it only to open a session; it holds ids, nothing stale
            opener = self._call_openers[connection_id] = self._opener(team_id, user_id, connection_id)
        started = time.perf_counter()
        try:
            result = await self._pool.call_tool(
                connection_id,
                opener,
                entry.tool.name,
                arguments,
                events=events,
                task_support=entry.tool.task_support,
            )
        except errors.McpCoreError as exc:
            raise await self._call_failed(team_id, user_id, entry, started, exc)  # noqa: B904  # cause kept
        except asyncio.CancelledError:  # the person stopped the turn; the server was told
            latency_ms = (time.perf_counter() - started) * 1000
            self._record(team_id, user_id, entry, latency_ms, "stopped", "Stopped", "stopped by the person")
            raise
        return await self._finish(team_id, user_id, entry, started, result)

    async def task_followable(self, team_id: str, user_id: str, tool: str) -> bool:
        """Whether a call of catalog tool ``tool`` that its server ran as an MCP task can be
        followed from another process: the tool is still in the person's catalog and its
        server is remote (a local server's tasks ended with the process that ran it)."""
        entry = (await self._catalog(team_id, user_id)).entries.get(tool)
        return entry is not None and self._transports.get(entry.connection_id, "stdio") != "stdio"

    async def follow_task(
        self,
        team_id: str,
        user_id: str,
        tool: str,
        task_id: str,
        *,
        on_task: TaskHook | None = None,
        stop: asyncio.Event | None = None,
    ) -> ToolResult:
        """The result of the call of ``tool`` that a process now gone sent, which its remote
        server runs as MCP task ``task_id``: followed on this process's session, as a call's
        result (scrubbed, cut, recorded once: the dead process recorded nothing). Nothing is
        sent again. ``stop`` set (the person's Stop) cancels the task on its server.

        Raises:
            CallStoppedError: ``stop`` was set before the task ended.
            UnknownToolError: the tool left the person's catalog (disconnected, switched off).
            McpServerError: the server is local, unreachable, or no longer knows the task.
        """
        catalog = await self._catalog(team_id, user_id)
        entry = catalog.entries.get(tool)
        if entry is None:
            raise errors.UnknownToolError(tool)
        if self._transports.get(entry.connection_id, "stdio") == "stdio":
            raise errors.McpServerError(entry.connection_name, "its local server stopped with my process")
        opener = self._opener(team_id, user_id, entry.connection_id)
        started = time.perf_counter()
        try:
            result = await self._pool.follow_task(
                entry.connection_id, opener, entry.tool.name, task_id, on_task=on_task, stop=stop
            )
        except errors.CallStoppedError:
            latency_ms = (time.perf_counter() - started) * 1000
            self._record(team_id, user_id, entry, latency_ms, "stopped", "Stopped", "stopped by the person")
            raise
        except errors.McpCoreError as exc:
            raise await self._call_failed(team_id, user_id, entry, started, exc)  # noqa: B904  # cause kept
        return await self._finish(team_id, user_id, entry, started, result)

    async def set_tool_enabled(
        self, team_id: str, user_id: str, connection_id: uuid.UUID, tool: str, enabled: bool
    ) -> Connection:
        """Switch one tool of the person's own connection on or off (by the server's name for
        it); an off tool leaves the catalog at once, so it is neither offered nor run.

        Raises:
            ConnectionNotFoundError: not this person's connection.
            ToolError: the connection has no such tool.
        """
        return await self._choose(team_id, user_id, connection_id, "off", tool, not enabled)

    async def set_always_allowed(
        self, team_id: str, user_id: str, connection_id: uuid.UUID, tool: str, allowed: bool
    ) -> Connection:
        """Remember (or forget) that this tool of the person's own connection runs without
        asking. Where someone else wrote in the thread it is asked about all the same
        (``mcp_core.agent.approval_rule``).

        Raises:
            ConnectionNotFoundError: not this person's connection.
            ToolError: the connection has no such tool, or the server says it may delete or
                overwrite things (such a tool asks every time).
        """
        return await self._choose(team_id, user_id, connection_id, "always", tool, allowed)

    async def _choose(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        kind: Literal["off", "always"],
        tool: str,
        chosen: bool,
    ) -> Connection:
        """One tool pref changed: only a tool the connection lists may be chosen (a name from a
        button is whatever the sender wrote); one it no longer lists may still be un-chosen."""
        connection = await self._store.get_connection(team_id, user_id, connection_id)
        listed = {t.name: t for t in connection.tools}
        known = listed.keys() if chosen else listed.keys() | getattr(connection.tool_prefs, kind)
        if tool not in known:
            raise errors.ToolError(f"{connection.name} has no tool named “{tool[:64]}”.")
        if chosen and kind == "always" and listed[tool].always_asks:
            raise errors.ToolError(
                f"{connection.name} says “{tool[:64]}” may delete or overwrite things, so I ask every time."
            )
        pin = listed[tool].fingerprint if chosen and kind == "always" else ""
        changed = await self._store.set_tool_pref(
            team_id, user_id, connection_id, kind, tool, chosen, fingerprint=pin
        )
        self._invalidate(team_id, user_id)
        return changed

    def redactor(self, team_id: str, user_id: str) -> Callable[[str], str]:
        """Scrub the secrets of this user's connections (those opened by this process) out of
        text the bot is about to show: the agent's answer, approval questions, progress.

        Tool results are scrubbed per connection already; this is the second line, for text a
        model wrote after reading something that slipped through.
        """
        forms = sorted(
            {
                form
                for connection_id, owner in self._owners.items()
                if owner == (team_id, user_id)
                for form in self._forms_of(connection_id)
            },
            key=len,
            reverse=True,
        )
        return functools.partial(scrub, secrets=forms)

    # -- internals -----------------------------------------------------------------------

    async def _finish(
        self, team_id: str, user_id: str, entry: CatalogEntry, started: float, result: types.CallToolResult
    ) -> ToolResult:
        """A server's answer to a call as the model and Slack see it: an auth refusal the
        transport hid turned into its error, text cut to MCP_MAX_OUTPUT_CHARS, the connection's
        tokens scrubbed, rich parts kept apart; the call recorded."""
        connection_id = entry.connection_id
        provider = self._providers.get(entry.connection_id)
        if result.is_error and provider is not None and provider.failure is not None:
            # The server refused the request at the HTTP layer (a step-up 403, a grant that no
            # longer refreshes) and the transport reported it as a closed connection: the tool
            # did not run. Say what the person can do instead.
            await self._pool.discard(entry.connection_id)
            refused = errors.ServerAuthError(entry.connection_name, "the server refused the call")
            raise await self._call_failed(team_id, user_id, entry, started, refused)
        text, truncated = flatten_result(result, self._settings.mcp_max_output_chars)
        structured = None if truncated else result.structured_content
        tokens = provider.secret_values() if provider is not None else ()
        if tokens:
            clean = scrub(text, tokens)  # a server echoing the token it was sent
            if clean != text:
                text, structured = clean, None
        rich = rich_parts(
            result,
            max_image_bytes=self._settings.max_upload_bytes,
            secrets=self._forms_of(connection_id),
            clean=functools.partial(scrub, secrets=tokens),
        )
        latency_ms = (time.perf_counter() - started) * 1000
        failure = text[:USAGE_MESSAGE_MAX_CHARS] if result.is_error else None
        self._record(
            team_id,
            user_id,
            entry,
            latency_ms,
            "tool_error" if result.is_error else "ok",
            "ToolReportedError" if failure else None,
            failure,
        )
        return ToolResult(
            text=text,
            is_error=result.is_error,
            truncated=truncated,
            structured=structured,
            latency_ms=latency_ms,
            rich=rich,
        )

    async def _mark_failed(
        self, team_id: str, user_id: str, connection_id: uuid.UUID, exc: errors.McpCoreError
    ) -> None:
        """Show the failure in /mcp list: needs_auth for refused or unreadable credentials
        (reconnecting fixes both), error otherwise (an unreachable secret store included)."""
        unreadable = isinstance(exc, errors.CredentialError) and not isinstance(
            exc, errors.CredentialBackendError
        )
        auth = isinstance(exc, errors.ServerAuthError) or unreadable
        status = ConnectionStatus.NEEDS_AUTH if auth else ConnectionStatus.ERROR
        with contextlib.suppress(errors.ConnectionNotFoundError):  # removed meanwhile: nothing to mark
            await self._store.set_status(team_id, user_id, connection_id, status, str(exc))
        self._invalidate(team_id, user_id)

    def _forms_of(self, connection_id: uuid.UUID) -> tuple[str, ...]:
        """The connection's secrets as they may appear in text: its stored ones and, for an OAuth
        connection, its current tokens and client secret (they change on every refresh)."""
        provider = self._providers.get(connection_id)
        oauth = provider.secret_values() if provider is not None else ()
        return self._secret_forms.get(connection_id, ()) + oauth

    async def _call_failed(
        self, team_id: str, user_id: str, entry: CatalogEntry, started: float, exc: errors.McpCoreError
    ) -> errors.McpCoreError:
        """A call that failed, explained (``_explained``), recorded, and shown in /mcp list when
        the connection itself is at fault; the error to raise."""
        exc = await self._explained(entry.connection_id, exc)
        latency_ms = (time.perf_counter() - started) * 1000
        self._record(team_id, user_id, entry, latency_ms, "failed", type(exc).__name__, str(exc))
        if isinstance(exc, errors.ServerUnavailableError | errors.ServerCrashedError):
            await self._mark_failed(team_id, user_id, entry.connection_id, exc)
        return exc

    async def _explained(self, connection_id: uuid.UUID, exc: errors.McpCoreError) -> errors.McpCoreError:
        """What the connection's OAuth provider ran into, if anything (the transport only saw
        that the request failed). A server that asked for a sign-in makes the connection an
        OAuth one, so /mcp list offers "Sign in again" instead of "paste a new token"."""
        provider = self._providers.get(connection_id)
        if provider is None or provider.failure is None:
            return exc
        failure, provider.failure = provider.failure, None
        if provider.sign_in_started or isinstance(failure, errors.OAuthClientMissingError):
            owner = provider.owner
            with contextlib.suppress(errors.McpCoreError):
                connection = await self._store.get_connection(owner.team_id, owner.user_id, connection_id)
                if connection.typed_config.oauth is None:
                    config = {**connection.config, "oauth": {}}
                    await self._store.update_connection(
                        owner.team_id, owner.user_id, connection_id, config=config
                    )
        failure.__cause__ = exc
        return failure

    def _record(
        self,
        team_id: str,
        user_id: str,
        entry: CatalogEntry,
        latency_ms: float,
        outcome: ToolCallOutcome,
        error_class: str | None,
        message: str | None,
    ) -> None:
        """One call that reached its server: a usage row (queued) and the call's metrics."""
        self._metrics.tool_call_ended(outcome, self._transports[entry.connection_id], latency_ms / 1000)
        self._usage.record(
            UsageRecord(
                team_id=team_id,
                user_id=user_id,
                connection_id=entry.connection_id,
                tool_name=entry.tool.name,
                latency_ms=latency_ms,
                success=outcome == "ok",
                error_class=error_class,
                error_message=message[:USAGE_MESSAGE_MAX_CHARS] if message else None,
                created_at=datetime.now(UTC),
                server=self._servers.get(entry.connection_id),
            )
        )

    async def _catalog(self, team_id: str, user_id: str) -> _Catalog:
        key = (team_id, user_id)
        cached = self._catalogs.get(key)
        if cached is not None:
            return cached
        epoch = self._catalog_epoch
        connections = await self._store.list_connections(team_id, user_id)
        entries: dict[str, CatalogEntry] = {}
        taken: set[str] = set()
        for connection in connections:
            self._transports[connection.id] = connection.transport
            self._servers[connection.id] = server_key(connection.card_id, connection.url, connection.command)
            approval = self._card_approvals.get(connection.card_id or "", "writes")
            prefs = connection.tool_prefs
            for tool in sorted(connection.tools, key=lambda t: t.name):
                if tool.name in prefs.off:  # switched off: neither offered nor callable
                    continue
                name = function_name(connection.name, tool.name, taken)
                taken.add(name)
                entries[name] = CatalogEntry(
                    name=name,
                    connection_id=connection.id,
                    connection_name=connection.name,
                    tool=tool,
                    approval=approval,
                    always_allowed=prefs.allows(tool),
                )
        catalog = _Catalog(entries)
        if self._catalogs_trusted and epoch == self._catalog_epoch:
            self._catalogs[key] = catalog
        return catalog

    def _invalidate(self, team_id: str, user_id: str) -> None:
        self._catalog_epoch += 1
        self._catalogs.pop((team_id, user_id), None)

    def _forget(self, connection_id: uuid.UUID) -> None:
        self._validators.forget(connection_id)
        self._call_openers.pop(connection_id, None)

    def _opener(
        self,
        team_id: str,
        user_id: str,
        connection_id: uuid.UUID,
        known: Connection | None = None,
        checked: PolicyVerdict | None = None,
    ) -> SpecFactory:
        """How the pool opens this connection's session: its row (``known``, or read now), its
        secrets, and the network policy (unless ``checked`` covers it: one check per operation)."""

        async def open_spec() -> SessionSpec:
            connection = known or await self._store.get_connection(team_id, user_id, connection_id)
            self._owners[connection_id] = (team_id, user_id)
            secrets: Mapping[str, str] = {}
            if self._secrets is not None and connection.credential_ref:
                try:
                    secrets = await self._secrets.get(team_id, user_id, connection.credential_ref)
                except errors.CredentialError as exc:  # the source knows the ref, not the name
                    raise exc.for_connection(connection.name) from exc
            spec = session_spec(connection, secrets, self._settings)
            self._secret_forms[connection_id] = spec.secret_values
            await self._check_policy(NetworkTargets.of(connection), checked)
            if self._oauth is not None and self._oauth.signs_in(connection, spec):
                provider = self._oauth.session_auth(connection, secrets)
                self._providers[connection_id] = provider
                spec = spec.model_copy(update={"http_auth": provider})
            return spec

        return open_spec

    async def _check_policy(self, targets: NetworkTargets, checked: PolicyVerdict | None) -> PolicyVerdict:
        """The network policy on a remote URL or a stdio server's endpoints, unless ``checked``
        already judged exactly these; the verdict, to hand along.

        Raises:
            PolicyError: an address is refused.
        """
        if checked is None or not checked.covers(targets):
            checked = await judge_targets(targets, self._settings.mcp_allowed_hosts)
            checked.raise_for_refusal()
        return checked
