"""The browser's side of an OAuth sign-in: ``GET /oauth/callback`` and the client metadata.

    add_oauth_routes(web_app, SignInPages(services, client))   # HTTP mode: beside /slack/events
    runner = await start_sign_in_listener(web_app, port)       # Socket Mode: its own small listener

The authorization server sends the person's browser back to ``/oauth/callback?code=…&state=…``
(or ``error=access_denied``). The route hands the query to ``ConnectionService
.complete_sign_in`` — which finds the pending sign-in by its single-use state, on whichever
process it lands — and answers a small HTML page; the person then hears in a DM from the bot
that the connection is ready (or what went wrong), and their Home tab is refreshed.

``/oauth/client-metadata.json`` is the bot's Client ID Metadata Document: an authorization
server that supports them fetches it to learn who the bot is (404 when the redirect URL is not
public https, since then no server could fetch it).

What never leaves here: the code, the state and any token. The page shows only escaped text
of the bot's own (the connection's name, ``SignInError``'s words); the log says which
connection signed in, never the query. aiohttp's access log would print the request line and
the ``Referer`` (both may carry the code or state), so :class:`NoQueryStrings` drops every
query string from its lines.
"""

from __future__ import annotations

import html
import logging
import re
import traceback
from pathlib import PurePath
from urllib.parse import urlsplit

from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts, views
from bot.home import Home
from bot.workspaces import Workspaces
from mcp_core import errors
from mcp_core.connection_service import SignInDone
from mcp_core.oauth import CALLBACK_PATH, CLIENT_METADATA_PATH
from mcp_core.security import LOOPBACK_HOSTS
from mcp_core.services import Services

logger = logging.getLogger(__name__)

__all__ = [
    "LISTENER_HOST_LOCAL",
    "LISTENER_HOST_PUBLIC",
    "LISTENER_SHUTDOWN_TIMEOUT_S",
    "NoQueryStrings",
    "SignInPages",
    "add_oauth_routes",
    "listener_host",
    "redirect_problem",
    "start_sign_in_listener",
]

LISTENER_HOST_LOCAL = "127.0.0.1"
LISTENER_HOST_PUBLIC = "0.0.0.0"
LISTENER_SHUTDOWN_TIMEOUT_S = 0.5
"""A callback still in flight at SIGTERM gets this long: the process must exit within ~1 s."""
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the page's own URL holds the code
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1>{heading}</h1><p>{detail}</p></body></html>
"""
_QUERY = re.compile(r"\?[^\s\"]*")


class NoQueryStrings(logging.Filter):
    """Cuts query strings out of log lines (aiohttp's access log: request line, Referer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?…", message), None
        return True


logging.getLogger("aiohttp.access").addFilter(NoQueryStrings())


def redirect_problem(url: str) -> str | None:
    """Why ``OAUTH_REDIRECT_URL`` cannot work (None: it can): authorization servers send
    codes only to https, plain http only to this machine."""
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").lower()
    except ValueError:
        host = ""
    if parts.scheme not in ("https", "http") or not host:
        return f"OAUTH_REDIRECT_URL {url!r} is not an absolute URL such as https://bot.example.com/oauth/callback"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return (
            f"OAUTH_REDIRECT_URL {url!r} must use https: sign-in codes travel in it "
            "(plain http only for localhost)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"OAUTH_REDIRECT_URL {url!r} must not carry a user, query or fragment"
    return None


def listener_host(redirect_url: str) -> str:
    """Where Socket Mode's listener binds.

    With the default redirect (``http://localhost:<OAUTH_PORT>/oauth/callback``) only a browser
    on this machine is ever sent there, so the listener binds loopback only and nothing else
    can reach it. With ``OAUTH_REDIRECT_URL`` naming another host, a reverse proxy, tunnel or
    platform router forwards that URL to the listener, and it often sits in another network
    namespace (a container's), where loopback is unreachable: the listener binds every
    interface. It serves only these two routes, and a callback does nothing without a state
    the bot made within the last 10 minutes.
    """
    host = (urlsplit(redirect_url).hostname or "").lower()
    return LISTENER_HOST_LOCAL if host in LOOPBACK_HOSTS else LISTENER_HOST_PUBLIC


class SignInPages:
    """The two routes' handlers, on one bot's services and Slack client."""

    def __init__(
        self, services: Services, client: AsyncWebClient, *, workspaces: Workspaces | None = None
    ) -> None:
        """``workspaces``: a distributed app's (the callback is no Slack request: the DM and
        the Home are sent with the person's workspace's token)."""
        self._workspaces = workspaces
        self._services = services
        self._client = client
        self._home = Home(services.store, client)

    async def callback(self, request: web.Request) -> web.Response:
        """Finish the sign-in the query belongs to; the page says how it went, Slack says more."""
        try:
            done = await self._services.connections.complete_sign_in(dict(request.query))
        except errors.SignInError as exc:
            logger.info("a sign-in callback was not completed: %s", exc)
            return _page(texts.PAGE_NOT_SIGNED_IN, str(exc), status=400)
        except errors.McpCoreError as exc:  # the store or the secret store failed; safe words
            logger.warning("a sign-in callback failed: %s", exc)
            return _page(texts.PAGE_NOT_SIGNED_IN, str(exc), status=503)
        except Exception as exc:  # boundary: the page must answer; the trace could hold a token
            logger.error("a sign-in callback failed unexpectedly: %s", _where(exc))
            return _page(texts.PAGE_NOT_SIGNED_IN, texts.PAGE_UNEXPECTED, status=500)
        if self._workspaces is not None:
            async with self._workspaces.acting_for(done.connection.team_id):
                await self._tell(done)
        else:
            await self._tell(done)
        connection = done.connection
        if done.error is None:
            return _page(texts.PAGE_CONNECTED, texts.page_connected(connection.name, len(connection.tools)))
        if isinstance(done.error, errors.SignInRequiredError):  # e.g. it wants a wider scope
            return _page(texts.PAGE_OPEN_FAILED, texts.page_sign_in_again(connection.name))
        return _page(texts.PAGE_OPEN_FAILED, str(done.error))

    async def _tell(self, done: SignInDone) -> None:
        """A DM to the person who signed in, then their Home tab; best effort (the page has
        already said the essentials)."""
        connection = done.connection
        text, blocks = views.connect_reply(connection, done.error, again=True)
        try:
            await self._client.chat_postMessage(channel=connection.user_id, text=text, blocks=blocks)
        except SlackApiError as exc:
            error = exc.response.get("error")
            logger.warning("could not DM %s after a sign-in: %s", connection.user_id, error)
        await self._home.publish(
            connection.team_id, connection.user_id, sign_in_links=views.sign_in_links(connection, done.error)
        )

    async def client_metadata(self, _: web.Request) -> web.Response:
        document = self._services.oauth.client_metadata_document()
        if document is None:
            raise web.HTTPNotFound(text="No client metadata: OAUTH_REDIRECT_URL is not a public https URL.")
        return web.json_response(document, headers={"Cache-Control": "max-age=300"})


def add_oauth_routes(web_app: web.Application, pages: SignInPages) -> None:
    """Both routes, GET only: a HEAD (a link checker's) must not spend a sign-in."""
    web_app.router.add_get(CALLBACK_PATH, pages.callback, allow_head=False)
    web_app.router.add_get(CLIENT_METADATA_PATH, pages.client_metadata, allow_head=False)


async def start_sign_in_listener(
    web_app: web.Application, port: int, host: str = LISTENER_HOST_LOCAL
) -> web.AppRunner | None:
    """Serve ``web_app`` on ``host:port`` (Socket Mode, where no other web server runs).
    A port that cannot be bound is one log line and None: the bot works on without sign-ins
    (and without what else ``web_app`` serves: Socket Mode's ``/healthz`` and ``/metrics``)."""
    runner = web.AppRunner(web_app, shutdown_timeout=LISTENER_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        logger.warning(
            "OAuth sign-in callbacks will not work: cannot listen on %s:%d (OAUTH_PORT): %s. "
            "Set OAUTH_PORT to a free port and restart (/healthz and /metrics are served there too).",
            host,
            port,
            exc.strerror or type(exc).__name__,
        )
        return None
    logger.info("serving OAuth sign-in callbacks on http://%s:%d%s", host, port, CALLBACK_PATH)
    return runner


def _page(heading: str, detail: str, *, status: int = 200) -> web.Response:
    body = _PAGE.format(
        title=html.escape(texts.PAGE_TITLE), heading=html.escape(heading), detail=html.escape(detail)
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=_PAGE_HEADERS)


def _where(exc: BaseException) -> str:
    """The exception's type and the line that raised it: enough to find the bug, without its
    message or locals (they could hold a token)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {PurePath(last.filename).name}:{last.lineno}"
