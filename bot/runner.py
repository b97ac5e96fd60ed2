"""Start the bot in Socket Mode or HTTP mode and shut it down cleanly on SIGINT/SIGTERM.

HTTP mode serves Slack at ``POST /slack/events`` and a health check at ``GET /healthz``
(200 when the database answers, 503 otherwise). Shutdown closes every MCP session (reaping
stdio children) and flushes usage rows before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from datetime import UTC, datetime, timedelta

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot._edge import SlackEdge
from bot._respond import SharedSession
from bot.app import create_app
from mcp_core.errors import McpCoreError
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings
from run_cards import BUILTIN_DIR, CardCatalog, load_cards

logger = logging.getLogger(__name__)

__all__ = ["http_app", "run_bot", "sync_cards"]

SLACK_API_TIMEOUT_S = 15
HEALTH_TIMEOUT_S = 2.0
EVENT_MEMORY_S = 3600.0
"""Slack retries an event for about 5 minutes; remembering ids for an hour is plenty."""
EVENT_PURGE_INTERVAL_S = 600.0


def _client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs = {"base_url": settings.slack_api_url} if settings.slack_api_url else {}
    client = AsyncWebClient(token=token, timeout=SLACK_API_TIMEOUT_S, **kwargs)
    # A 429 means Slack did nothing, so one retry after Retry-After is safe; without it a busy
    # workspace could lose an agent's answer (chat.update is rate-limited per app).
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    return client


async def sync_cards(services: Services, catalog: CardCatalog) -> None:
    """Write the catalog to the run-cards table; a failure is logged, the bot still starts."""
    try:
        await services.store.sync_run_cards(catalog.to_store_rows())
    except Exception as exc:  # boundary: the cards still work from memory
        logger.warning("could not sync run cards to the store: %s", exc)


def http_app(services: Services, catalog: CardCatalog | None = None) -> web.Application:
    """The aiohttp application of HTTP mode (also what tests serve on a real port).

    Raises:
        ValueError: without a signing secret (HTTP mode cannot tell Slack's requests apart).
    """
    settings = services.settings
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    responses = SharedSession()
    cards = catalog if catalog is not None else load_cards(BUILTIN_DIR, settings.run_cards_dir)
    app = create_app(
        services, client=_client(settings), signing_secret=secret, responses=responses, catalog=cards
    )
    # Not Bolt's own app.web_app(): every request passes the edge's strict checks first.
    web_app = web.Application()
    web_app.router.add_post("/slack/events", SlackEdge(app, secret or "").handle)

    async def sync_on_startup(_: web.Application) -> None:
        await sync_cards(services, cards)

    web_app.on_startup.append(sync_on_startup)

    async def close_responses(_: web.Application) -> None:
        await responses.aclose()

    web_app.on_cleanup.append(close_responses)

    async def healthz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(services.store.healthcheck(), HEALTH_TIMEOUT_S)
        except Exception:  # boundary: any failure means unhealthy
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        return web.json_response({"ok": True, "live_sessions": services.pool.live_count})

    web_app.router.add_get("/healthz", healthz)
    return web_app


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


async def run_bot(settings: Settings, *, http: bool, port: int, host: str = "0.0.0.0") -> None:
    """Run until SIGINT/SIGTERM."""
    services = await build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    responses = SharedSession()
    handler: AsyncSocketModeHandler | None = None
    try:
        if http:
            runner = web.AppRunner(http_app(services))
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            logger.info("serving Slack on http://%s:%d/slack/events", host, port)
        else:
            assert settings.slack_app_token is not None
            cards = load_cards(BUILTIN_DIR, settings.run_cards_dir)
            await sync_cards(services, cards)
            app = create_app(
                services, client=_client(settings), signing_secret=None, responses=responses, catalog=cards
            )
            handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
            await handler.connect_async()
            logger.info("connected to Slack over Socket Mode")
        # Everything imported and built so far lives as long as the process: keep it out of the
        # collector, whose full passes over ~170k start-up objects otherwise stall acks ~80 ms.
        gc.freeze()
        purger = asyncio.create_task(_purge_events(services), name="purge-slack-events")
        await stop.wait()
        purger.cancel()
    finally:
        logger.info("shutting down")
        if handler is not None:
            with contextlib.suppress(Exception):
                await handler.close_async()
        if runner is not None:
            await runner.cleanup()
        await responses.aclose()
        await services.aclose()
