"""What an operator's tools read: ``GET /healthz`` and ``GET /metrics``, in both modes.

    add_monitoring_routes(web_app, services, slack=health)

HTTP mode serves them on ``PORT`` beside ``/slack/events``; Socket Mode on its sign-in listener
(``OAUTH_PORT``, ``bot.oauth_web``), the one web server it runs.

``/healthz``: 200 and ``{"ok": true, "live_sessions": N, "slack": "ok"}`` when the database
answers within HEALTH_TIMEOUT_S and Slack has accepted the bot token; 503 otherwise, saying
which (``"database": "unreachable"``, ``"slack": "unreachable"``).

``/metrics``: the Prometheus text exposition of this bot's metrics (``mcp_core.metrics``):
counts and durations with bounded labels, never a team, user, connection or tool name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from mcp_core.services import Services

__all__ = ["HEALTH_PATH", "HEALTH_TIMEOUT_S", "METRICS_PATH", "SlackHealth", "add_monitoring_routes"]

HEALTH_TIMEOUT_S = 2.0
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"


@dataclass
class SlackHealth:
    """Whether Slack has accepted the bot token yet (``/healthz`` reports it)."""

    ok: bool = False


def add_monitoring_routes(web_app: web.Application, services: Services, *, slack: SlackHealth | None) -> None:
    """``/healthz`` and ``/metrics`` on ``web_app``. ``slack``: what ``/healthz`` says about
    Slack (None: the health check is about the database only)."""

    async def healthz(_: web.Request) -> web.Response:
        report: dict[str, object] = {"ok": True, "live_sessions": services.pool.live_count}
        try:
            await asyncio.wait_for(services.store.healthcheck(), HEALTH_TIMEOUT_S)
        except Exception:  # boundary: any failure means unhealthy
            report = {"ok": False, "database": "unreachable"}
        if slack is not None:
            report["slack"] = "ok" if slack.ok else "unreachable"
            report["ok"] = report["ok"] and slack.ok
        return web.json_response(report, status=200 if report["ok"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = services.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    web_app.router.add_get(HEALTH_PATH, healthz)
    web_app.router.add_get(METRICS_PATH, metrics)
