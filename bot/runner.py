"""Start the bot in Socket Mode or HTTP mode and shut it down cleanly on SIGINT/SIGTERM.

HTTP mode serves Slack at ``POST /slack/events``, a health check at ``GET /healthz``
(200 when the database answers and Slack accepted the bot token, 503 otherwise), Prometheus
metrics at ``GET /metrics`` (both ``bot.monitoring``) and the OAuth sign-in routes
(``bot.oauth_web``: ``/oauth/callback``, ``/oauth/client-metadata.json``); sign-ins come back
to ``OAUTH_REDIRECT_URL``, else to this port's own callback. Socket Mode serves the sign-in
routes, ``/healthz`` and ``/metrics`` on a small listener of their own on ``OAUTH_PORT``,
started and stopped with the bot (a port in use is one log line: the bot works on, without
sign-ins or metrics). Both modes time each Slack request from arrival to its ack.
Shutdown closes every MCP session (reaping stdio children) and flushes usage rows before the
process exits.

Starting, in both modes: ``auth.test`` checks SLACK_BOT_TOKEN first. Slack refusing a token
(``invalid_auth``, ``token_revoked``…) is :class:`SlackRefused`: the bot stops and says which
variable and where to get a good one, since no retry can help. Slack not answering (connection
refused, timeout, 5xx, ``ratelimited``) is :class:`SlackUnreachable`: one log line, then a retry
after 1, 2, 4… up to 60 s. HTTP mode serves meanwhile (``/healthz`` says ``"slack":
"unreachable"``); Socket Mode cannot work without Slack, so it waits, and then opens its
connection the same way (``apps.connections.open`` with SLACK_APP_TOKEN, then the WebSocket).

Stopping: SIGINT/SIGTERM cancel the task running the bot wherever it waits (connecting,
retrying, serving), so the process exits within about a second in every state — once agent
turns in progress had their chance: the first signal drains (``TurnJournal.drain``): no new
turn starts (``bot.middleware`` answers their events 503, or leaves them unacknowledged in
Socket Mode, so Slack delivers them again elsewhere; Socket Mode also closes its connection
first, so Slack sends it no more envelopes), running turns get TURN_DRAIN_S to end,
and those that did not are cancelled and released for another process's sweeper, or closed
in their threads by this one on SQLite (``bot.takeover``). With no turn running it stops at
once; a second signal stops it at once too.

Interrupted turns: every process runs the turn journal's sweeper, which closes turns whose
process died (their lease ran out, or their process on this host is gone) in their threads.

Size (~420 lines): both modes' start-up, retry and shutdown orders are read side by side here;
they share the token checks, the health state and the stop handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot._edge import SlackEdge
from bot._respond import SharedSession
from bot.app import create_app
from bot.distribution import INSTALL_PATH, Distribution, add_install_routes
from bot.monitoring import SlackHealth, add_monitoring_routes
from bot.oauth_web import (
    SignInPages,
    add_oauth_routes,
    listener_host,
    redirect_problem,
    start_sign_in_listener,
)
from bot.takeover import interrupted_turns
from bot.workspaces import WorkspaceClient
from mcp_core.errors import McpCoreError
from mcp_core.metrics import Metrics
from mcp_core.oauth import default_redirect_url
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings
from mcp_core.turn_journal import TurnJournal
from mcp_core.workspace_purge import WorkspacePurger
from run_cards import BUILTIN_DIR, CardCatalog, load_cards

logger = logging.getLogger(__name__)

__all__ = [
    "BotIdentity",
    "SlackHealth",
    "SlackRefused",
    "SlackUnreachable",
    "check_bot_token",
    "http_app",
    "load_run_cards",
    "run_bot",
    "sign_in_app",
    "slack_client",
]

T = TypeVar("T")

SLACK_API_TIMEOUT_S = 15
SLACK_CHECK_TIMEOUT_S = 10.0
"""One start-up call (auth.test, apps.connections.open); a failure is retried with back-off."""
SOCKET_CONNECT_TIMEOUT_S = 20.0
"""Opening the WebSocket once apps.connections.open gave its URL."""
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
"""Back-off between attempts to reach Slack: 1, 2, 4… seconds, at most this."""
SOCKET_CLOSE_TIMEOUT_S = 1.0
"""Closing the WebSocket politely; past this the process exits anyway."""
HTTP_SHUTDOWN_TIMEOUT_S = 2.0
"""Requests still in flight at SIGTERM get this long (Slack wants its ack within 3 s anyway)."""
EVENT_MEMORY_S = 3600.0
"""Slack retries an event for about 5 minutes; remembering ids for an hour is plenty."""
EVENT_PURGE_INTERVAL_S = 600.0

REFUSED_TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
    }
)
"""Slack's answers that mean "this token will never work"; anything else may pass."""
WHERE_TO_GET = {
    "SLACK_BOT_TOKEN": "https://api.slack.com/apps → your app → OAuth & Permissions → "
    "Bot User OAuth Token (xoxb-…; reinstall the app if it was revoked)",
    "SLACK_APP_TOKEN": "https://api.slack.com/apps → your app → Basic Information → "
    "App-Level Tokens (xapp-…, with the scope connections:write)",
}


class SlackRefused(Exception):
    """Slack refused a token: retrying cannot help. The message names the variable and where
    to get a working token, never the token itself."""

    def __init__(self, variable: str, error: str) -> None:
        self.variable, self.error = variable, error
        super().__init__(
            f"Slack refused {variable} ({error}). Get a valid one at {WHERE_TO_GET[variable]} "
            f"and set {variable} in .env or the environment."
        )


class SlackUnreachable(Exception):
    """Slack did not answer, or answered "not now" (timeout, connection error, 5xx,
    ratelimited); the message is the reason, on one line."""


@dataclass(frozen=True)
class BotIdentity:
    """Who SLACK_BOT_TOKEN is, as auth.test says."""

    team: str
    team_id: str
    user: str
    user_id: str

    def __str__(self) -> str:
        return f"bot user @{self.user} ({self.user_id}) in {self.team} ({self.team_id})"


def slack_client(settings: Settings, *, retries: bool = True) -> AsyncWebClient:
    """The Web API client of SLACK_BOT_TOKEN (and SLACK_API_URL), every call bounded in time.

    ``retries=False`` is for start-up checks, which retry with their own back-off (and one
    log line per attempt) instead of slack_sdk's immediate retry of a failed connection.
    """
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs = {"base_url": settings.slack_api_url} if settings.slack_api_url else {}
    if not retries:
        return AsyncWebClient(token=token, timeout=SLACK_API_TIMEOUT_S, retry_handlers=[], **kwargs)
    # A distributed app's client: each call with the current workspace's token (bot.workspaces).
    kind = WorkspaceClient if settings.multi_workspace else AsyncWebClient
    client = kind(token=token, timeout=SLACK_API_TIMEOUT_S, **kwargs)
    # A 429 means Slack did nothing, so one retry after Retry-After is safe; without it a busy
    # workspace could lose an agent's answer (chat.update is rate-limited per app).
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    return client


async def _start_up_call(variable: str, call: Awaitable[Any]) -> Any:
    """One start-up Web API call made with ``variable``'s token, within SLACK_CHECK_TIMEOUT_S.

    Raises:
        SlackRefused: Slack refused the token.
        SlackUnreachable: anything else that went wrong.
    """
    try:
        async with asyncio.timeout(SLACK_CHECK_TIMEOUT_S):
            return await call
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if error in REFUSED_TOKEN_ERRORS:
            raise SlackRefused(variable, error) from None
        raise SlackUnreachable(error or f"HTTP {exc.response.status_code}") from None
    except TimeoutError:
        raise SlackUnreachable(f"no answer within {SLACK_CHECK_TIMEOUT_S:g} s") from None
    except (aiohttp.ClientError, OSError, SlackClientError, ValueError) as exc:
        raise SlackUnreachable(" ".join(f"{type(exc).__name__}: {exc}".split())) from None


async def check_bot_token(client: AsyncWebClient) -> BotIdentity:
    """Ask Slack (auth.test) who the client's token is.

    Raises:
        SlackRefused: Slack refused SLACK_BOT_TOKEN.
        SlackUnreachable: Slack did not answer within SLACK_CHECK_TIMEOUT_S, or not usefully.
    """
    answer = await _start_up_call("SLACK_BOT_TOKEN", client.auth_test())
    return BotIdentity(
        team=str(answer.get("team", "")),
        team_id=str(answer.get("team_id", "")),
        user=str(answer.get("user", "")),
        user_id=str(answer.get("user_id", "")),
    )


async def _retrying(
    what: str, attempt: Callable[[], Awaitable[T]], *, failed: SlackUnreachable | None = None
) -> T:
    """``attempt()`` until it succeeds: each SlackUnreachable is one log line, then a back-off.
    ``failed`` is the failure of an attempt already made.

    Raises:
        SlackRefused: as soon as an attempt raises it.
    """
    delay = RETRY_FIRST_S
    while True:
        if failed is not None:
            logger.warning("%s failed (%s); retrying in %g s", what, failed, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        try:
            return await attempt()
        except SlackUnreachable as exc:
            failed = exc


def _accepted(health: SlackHealth, identity: BotIdentity) -> None:
    health.ok = True
    logger.info("Slack accepted SLACK_BOT_TOKEN: %s", identity)


async def _confirm_bot_token(
    client: AsyncWebClient, health: SlackHealth, *, failed: SlackUnreachable | None = None
) -> None:
    """auth.test until Slack answers (see ``_retrying``)."""
    check = _retrying("Checking SLACK_BOT_TOKEN with Slack", lambda: check_bot_token(client), failed=failed)
    _accepted(health, await check)


def load_run_cards(settings: Settings) -> CardCatalog:
    """The run cards: the built-in ones and RUN_CARDS_DIR's, read once at start."""
    return load_cards(BUILTIN_DIR, settings.run_cards_dir)


def http_app(services: Services, cards: CardCatalog, *, slack: SlackHealth | None = None) -> web.Application:
    """The aiohttp application of HTTP mode (also what tests serve on a real port).

    ``slack`` is what ``/healthz`` reports about Slack (``run_bot`` passes it; without it the
    health check is about the database only).

    Raises:
        ValueError: without a signing secret (HTTP mode cannot tell Slack's requests apart).
    """
    settings = services.settings
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    responses = SharedSession()
    client = slack_client(settings)
    distribution = Distribution.of(services, client)
    app = create_app(
        services,
        client=client,
        signing_secret=secret,
        responses=responses,
        cards=cards,
        distribution=distribution,
    )
    # Not Bolt's own app.web_app(): every request passes the edge's strict checks first.
    web_app = web.Application()
    edge = SlackEdge(app, secret or "", acked=services.metrics.slack_acked)
    web_app.router.add_post("/slack/events", edge.handle)
    if distribution is not None:
        add_install_routes(web_app, app)
    workspaces = distribution.workspaces if distribution is not None else None
    add_oauth_routes(web_app, SignInPages(services, client, workspaces=workspaces))
    add_monitoring_routes(web_app, services, slack=slack)

    async def close_responses(_: web.Application) -> None:
        await responses.aclose()

    web_app.on_cleanup.append(close_responses)
    return web_app


def sign_in_app(
    services: Services,
    client: AsyncWebClient,
    *,
    slack: SlackHealth | None = None,
    app: Any = None,
    distribution: Distribution | None = None,
) -> web.Application:
    """Socket Mode's listener application: the OAuth sign-in routes, ``/healthz`` and
    ``/metrics``, and a distributed app's install routes (``app``'s OAuth flow)."""
    web_app = web.Application()
    if distribution is not None and app is not None:
        add_install_routes(web_app, app)
    workspaces = distribution.workspaces if distribution is not None else None
    add_oauth_routes(web_app, SignInPages(services, client, workspaces=workspaces))
    add_monitoring_routes(web_app, services, slack=slack)
    return web_app


class _TimedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, each request timed from its arrival to the ack sent (Bolt
    hands back the ack as soon as a listener calls ``ack()``; the listener runs on after)."""

    def __init__(self, app: Any, app_token: str, *, metrics: Metrics, logger: logging.Logger) -> None:
        super().__init__(app, app_token, logger=logger)
        self._metrics = metrics

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        started = time.perf_counter()
        try:
            await super().handle(client, req)
        finally:
            self._metrics.slack_acked(time.perf_counter() - started)


async def _purge_events(services: Services) -> None:
    """Forget processed Slack event ids once no retry can arrive any more."""
    while True:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=EVENT_MEMORY_S)
            removed = await services.store.purge_events(cutoff)
            logger.debug("forgot %d processed Slack event ids", removed)
        except McpCoreError as exc:
            logger.warning("could not purge processed Slack events: %s", exc)
        await asyncio.sleep(EVENT_PURGE_INTERVAL_S)


def _one_line(record: logging.LogRecord) -> bool:
    """slack_sdk's Socket Mode client logs each failed (re)connect with a traceback, and Web API
    errors over several lines: keep the reason, on one line."""
    record.msg = " ".join(record.getMessage().split())
    record.args = None
    record.exc_info = record.exc_text = None
    return True


_socket_mode_logger = logging.getLogger(f"{__name__}.socket_mode")
_socket_mode_logger.addFilter(_one_line)


async def _connect_socket_mode(
    handler: AsyncSocketModeHandler, checks: AsyncWebClient, app_token: str
) -> None:
    """One attempt: a WebSocket URL from apps.connections.open, then the WebSocket itself.

    Raises:
        SlackRefused: Slack refused SLACK_APP_TOKEN.
        SlackUnreachable: either step failed or took too long.
    """
    answer = await _start_up_call("SLACK_APP_TOKEN", checks.apps_connections_open(app_token=app_token))
    handler.client.wss_uri = answer["url"]
    try:
        async with asyncio.timeout(SOCKET_CONNECT_TIMEOUT_S):
            await handler.connect_async()
    except TimeoutError:
        raise SlackUnreachable(f"no WebSocket connection within {SOCKET_CONNECT_TIMEOUT_S:g} s") from None


async def _close_socket_mode(handler: AsyncSocketModeHandler) -> None:
    """Close the connection within SOCKET_CLOSE_TIMEOUT_S, whatever state it is in."""
    try:
        async with asyncio.timeout(SOCKET_CLOSE_TIMEOUT_S):
            await handler.close_async()
    except Exception as exc:  # boundary: shutting down, nothing more to do than say so
        logger.info("the Socket Mode connection did not close cleanly (%s)", type(exc).__name__)
    with contextlib.suppress(Exception):  # a close cut short leaves its HTTP session open
        await handler.client.aiohttp_client_session.close()


def _socket_mode_drain(
    handler: AsyncSocketModeHandler, turns: TurnJournal, grace_s: float
) -> Callable[[], Awaitable[None]]:
    """SIGTERM in Socket Mode: the connection closes first, then the turns drain.

    Slack sends each envelope to one of the app's open connections, picked arbitrarily, and an
    unacked event's retries too: a draining process that kept its connection would keep getting
    its share of new events, refuse each, and an event whose retries all landed here would be
    lost. Closed, it gets nothing more; envelopes it had received but not acked are delivered
    again on another process's connection. Turn events already in flight here are refused
    (``draining`` is set before the close), so they are not acked either."""

    async def drain() -> None:
        turns.draining = True
        await _close_socket_mode(handler)
        logger.info("closed the Socket Mode connection: Slack delivers to the app's other connections")
        await turns.drain(grace_s)

    return drain


class _Stopper:
    """SIGINT/SIGTERM cancel the task running the bot, wherever it is waiting."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.drain: Callable[[], Awaitable[None]] | None = None
        """Run before the task is cancelled (set once there are turns to drain)."""
        self._draining: asyncio.Task[None] | None = None
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            self._loop.add_signal_handler(sig, self._stop, sig)

    def _stop(self, sig: signal.Signals) -> None:
        assert self._task is not None
        if self.requested:
            if self._draining is not None and not self._draining.done():
                logger.info("%s: stopping now", sig.name)
                self._draining.cancel()
                self._task.cancel()
                return
            logger.info("%s: already stopping", sig.name)
            return
        self.requested = True
        logger.info("%s: stopping", sig.name)
        if self.drain is None:
            self._task.cancel()
            return
        self._draining = self._loop.create_task(self._drain_then_stop(self.drain), name="drain")

    async def _drain_then_stop(self, drain: Callable[[], Awaitable[None]]) -> None:
        assert self._task is not None
        try:
            await drain()
        except Exception:  # boundary: a failed drain must not keep the process up
            logger.exception("draining the running turns failed")
        finally:
            self._task.cancel()

    def remove(self) -> None:
        for sig in self.SIGNALS:
            self._loop.remove_signal_handler(sig)


async def run_bot(settings: Settings, *, http: bool, port: int, host: str = "0.0.0.0") -> None:
    """Run until SIGINT/SIGTERM, which stop it within about a second in every state.

    Raises:
        SlackRefused: Slack refused SLACK_BOT_TOKEN or (Socket Mode) SLACK_APP_TOKEN, at start
            or, for a bot token first checked while Slack was unreachable, later.
    """
    stopper = _Stopper()
    try:
        await _run(settings, http=http, port=port, host=host, stopper=stopper)
    except asyncio.CancelledError:
        if not stopper.requested:
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    finally:
        stopper.remove()


async def _run(
    settings: Settings, *, http: bool, port: int, host: str, stopper: _Stopper | None = None
) -> None:
    checks = slack_client(settings, retries=False)
    health = SlackHealth()
    background: list[asyncio.Task[None]] = []
    services: Services | None = None
    runner: web.AppRunner | None = None
    sign_ins: web.AppRunner | None = None
    responses = SharedSession()
    handler: AsyncSocketModeHandler | None = None
    purger: WorkspacePurger | None = None
    try:
        if settings.multi_workspace:  # no token of its own: each workspace's is checked on use
            health.ok = True
            logger.info("a distributed app: each workspace installs it at %s", INSTALL_PATH)
        elif http:
            try:  # refused: stop before anything is created; unreachable: serve, keep trying
                _accepted(health, await check_bot_token(checks))
            except SlackUnreachable as exc:
                background.append(asyncio.create_task(_confirm_bot_token(checks, health, failed=exc)))
        else:
            await _confirm_bot_token(checks, health)
        cards = load_run_cards(settings)  # a broken card stops the start before the database is touched
        redirect = default_redirect_url(settings, port if http else None)
        if settings.oauth_redirect_url and (problem := redirect_problem(settings.oauth_redirect_url)):
            logger.warning("OAuth sign-ins will fail: %s", problem)
        services = await build_services(settings, oauth_redirect_url=redirect)
        sweeper_client = slack_client(settings)
        distribution = Distribution.of(services, sweeper_client)
        if distribution is not None:
            purger = WorkspacePurger(services.store, services.connections)
            purger.start()
        if services.turns is not None:
            turns = services.turns
            closer = interrupted_turns(
                sweeper_client,
                services.metrics,
                sessions=settings.slack_agent_sessions,
                registry=services.registry,
                journal=turns,
            )
            if distribution is not None:  # each turn closed with its own workspace's token
                closer = distribution.workspaces.per_turn(closer)
            turns.start_sweeping(closer)
            if stopper is not None:
                stopper.drain = lambda: turns.drain(settings.turn_drain_s)
        if http:
            web_app = http_app(services, cards, slack=health)
            runner = web.AppRunner(web_app, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            logger.info("serving Slack on http://%s:%d/slack/events", host, port)
        else:
            assert settings.slack_app_token is not None
            app_token = settings.slack_app_token.get_secret_value()
            client = slack_client(settings)
            socket_distribution = Distribution.of(services, client)
            app = create_app(
                services,
                client=client,
                signing_secret=None,
                responses=responses,
                cards=cards,
                distribution=socket_distribution,
            )
            listener = sign_in_app(services, client, slack=health, app=app, distribution=socket_distribution)
            sign_ins = await start_sign_in_listener(listener, settings.oauth_port, listener_host(redirect))
            handler = _TimedSocketModeHandler(
                app, app_token, metrics=services.metrics, logger=_socket_mode_logger
            )
            await _retrying(
                "Connecting to Slack over Socket Mode",
                lambda: _connect_socket_mode(handler, checks, app_token),
            )
            logger.info("connected to Slack over Socket Mode")
            if stopper is not None and services.turns is not None:
                stopper.drain = _socket_mode_drain(handler, services.turns, settings.turn_drain_s)
        # Everything imported and built so far lives as long as the process: keep it out of the
        # collector, whose full passes over ~170k start-up objects otherwise stall acks ~80 ms.
        gc.freeze()
        background.append(asyncio.create_task(_purge_events(services), name="purge-slack-events"))
        await asyncio.gather(*background)  # forever, unless a late auth.test is refused
    finally:
        logger.info("shutting down")
        # The process exits next: freezing spares its exit a full collection (~0.6 s measured
        # when stopped before the freeze above, e.g. while connecting).
        gc.freeze()
        for task in background:
            task.cancel()
        if handler is not None and not handler.client.closed:
            await _close_socket_mode(handler)
        if runner is not None:
            await runner.cleanup()
        if sign_ins is not None:
            await sign_ins.cleanup()
        await responses.aclose()
        if purger is not None:
            await purger.aclose()
        if services is not None:
            await services.aclose()
