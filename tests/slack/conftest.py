"""The bot served like production, driven through Slack's wire protocol.

``slack`` is a :class:`SlackDriver` for a bot built with ``build_services`` on a fresh SQLite
file and served by ``http_app`` on a real loopback port, its Web API client pointed at
``fake`` (a :class:`~tests.support.fake_slack.FakeSlack`). Every request is signed like Slack
signs it; assertions read what the fake received::

    async def test_x(slack: SlackDriver, fake: FakeSlack) -> None:
        reply = await slack.command("list")            # POST /slack/events, signed
        [post] = await slack.replies(reply)            # what the bot sent to the response_url

Bolt answers the HTTP request as soon as a listener acks and finishes the listener in a task
of its own; :func:`listeners_done` waits (with a deadline) until every such task has ended,
so a test can assert that something did *not* happen without sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from bot.runner import http_app, load_run_cards
from mcp_core.models import Connection
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings
from tests.support.fake_slack import (
    FORM,
    JSON,
    TEAM_ID,
    WAIT_S,
    FakeSlack,
    block_actions_body,
    event_body,
    post_signed,
    slash_command_body,
    view_submission_body,
)
from tests.support.registry import make_settings

__all__ = [
    "SECRET",
    "TEAM",
    "USER",
    "USER_B",
    "Reply",
    "SlackDriver",
    "listeners_done",
    "serve",
    "slack_settings",
]

SECRET = "slack-signing-secret-for-tests"
TEAM = TEAM_ID
USER, USER_B = "U0ALICE", "U0BOB"
CONNECT_CALLBACK = "mcp_connect_submit"
_LISTENER_TASK = "run_ack_function_asynchronously"  # Bolt's name for a listener running after its ack


def slack_settings(tmp_path: Path, fake: FakeSlack, **overrides: Any) -> Settings:
    """Test settings (SQLite in ``tmp_path``, loopback MCP hosts, short timeouts) plus Slack.
    Agent answers edit one progress message unless ``slack_streaming=True`` (the product's
    default; tests/slack/test_agent_streamed.py)."""
    values = {
        "slack_streaming": False,
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": SECRET,
        "slack_api_url": fake.base_url,
    }
    return make_settings(tmp_path, **(values | overrides))


def _qualname(task: asyncio.Task[Any]) -> str:
    """The task's coroutine name; a task closing an async generator runs an ``athrow``
    awaitable, which has none."""
    return getattr(task.get_coro(), "__qualname__", "")


async def listeners_done(timeout_s: float = WAIT_S) -> None:
    """Wait until every listener Bolt is still running after its ack has finished."""
    with anyio.fail_after(timeout_s):
        while pending := [
            task for task in asyncio.all_tasks() if not task.done() and _LISTENER_TASK in _qualname(task)
        ]:
            await asyncio.wait(pending)


@asynccontextmanager
async def serve(services: Services) -> AsyncIterator[str]:
    """``http_app(services)`` on 127.0.0.1, any free port; yields the Slack endpoint URL."""
    runner = web.AppRunner(http_app(services, load_run_cards(services.settings)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        await listeners_done()
    finally:
        await runner.cleanup()


@dataclass
class Reply:
    """The HTTP answer to one signed request, and the response_url the request carried."""

    status: int
    headers: dict[str, str]
    text: str
    response_url: str = ""
    trigger_id: str = ""

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class SlackDriver:
    """Sends what Slack sends, signed, to one running bot."""

    url: str
    fake: FakeSlack
    services: Services
    _names: Iterator[int] = field(default_factory=itertools.count)

    def _response_url(self) -> str:
        return self.fake.response_url(f"r{next(self._names)}")

    async def _post(self, body: str, content_type: str, response_url: str = "", **kwargs: Any) -> Reply:
        status, headers, text = await post_signed(self.url, body, content_type, SECRET, **kwargs)
        return Reply(status, headers, text, response_url)

    async def command(self, text: str, *, user: str = USER, channel: str = "C_TEST") -> Reply:
        """``/mcp <text>`` from ``user`` in ``channel``."""
        response_url, trigger_id = self._response_url(), f"trigger-{next(self._names)}"
        body = slash_command_body(
            text,
            user_id=user,
            team_id=TEAM,
            channel_id=channel,
            response_url=response_url,
            trigger_id=trigger_id,
        )
        reply = await self._post(body, FORM, response_url)
        reply.trigger_id = trigger_id
        return reply

    async def click(self, action_id: str, value: str, *, user: str = USER, in_home: bool = False) -> Reply:
        """A button: in an ephemeral message in C_TEST (with a response_url), or on the Home tab."""
        if in_home:
            body = block_actions_body(
                action_id, value, user_id=user, team_id=TEAM, view={"id": "V_HOME", "type": "home"}
            )
            return await self._post(body, FORM)
        response_url = self._response_url()
        body = block_actions_body(
            action_id, value, user_id=user, team_id=TEAM, channel_id="C_TEST", response_url=response_url
        )
        return await self._post(body, FORM, response_url)

    async def submit_connect(
        self,
        *,
        name: str,
        url: str,
        token: str = "",
        user: str = USER,
        metadata: dict[str, Any] | None = None,
    ) -> Reply:
        """Submit the connect form as Slack sends it (``private_metadata`` defaults to C_TEST)."""
        state = {"name": {"value": name}, "url": {"value": url}, "bearer_token": {"value": token}}
        body = view_submission_body(
            CONNECT_CALLBACK,
            state,
            user_id=user,
            team_id=TEAM,
            private_metadata=json.dumps(metadata if metadata is not None else {"channel": "C_TEST"}),
        )
        return await self._post(body, FORM)

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> Reply:
        headers = {"x-slack-retry-num": str(retry_num), "x-slack-retry-reason": "http_timeout"}
        return await self._post(
            event_body(event, team_id=TEAM, event_id=event_id),
            JSON,
            extra_headers=headers if retry_num is not None else None,
        )

    async def replies(self, reply: Reply, count: int = 1) -> list[dict[str, Any]]:
        """The JSON bodies the bot POSTed to the request's response_url (at least ``count``)."""
        path = reply.response_url.split(str(self.fake.port), 1)[1]
        return [call["body"] for call in await self.fake.await_for(path, count)]

    async def reply_text(self, reply: Reply) -> str:
        """The text of the single message sent to the request's response_url, blocks included."""
        await listeners_done()
        bodies = await self.replies(reply)
        assert len(bodies) == 1, bodies
        return message_text(bodies[0])

    async def connections(self, user: str = USER) -> list[Connection]:
        return await self.services.store.list_connections(TEAM, user)

    async def connect(self, name: str, url: str, *, token: str = "", user: str = USER) -> Connection:
        """The whole connect flow (submit the form, let the bot finish); the stored connection."""
        reply = await self.submit_connect(name=name, url=url, token=token, user=user)
        assert (reply.status, reply.text) == (200, ""), reply
        await listeners_done()
        connection = await self.services.store.find_connection(TEAM, user, name)
        assert connection is not None, f"{name} was not stored"
        return connection


def message_text(body: dict[str, Any]) -> str:
    """A message's text and every text inside its blocks (or view), as one string."""
    return "\n".join([str(body.get("text") or ""), *_texts(body.get("blocks") or body.get("view") or [])])


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        return found + [t for value in node.values() if not isinstance(value, str) for t in _texts(value)]
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


@pytest.fixture
def free_url() -> str:
    """An MCP URL on a loopback port where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Services]:
    """The real composition root on a fresh SQLite file (credentials in the local backend)."""
    built = await build_services(slack_settings(tmp_path, fake))
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
async def slack(services: Services, fake: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve(services) as url:
        yield SlackDriver(url, fake, services)
