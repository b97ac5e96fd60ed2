"""The fake's Socket Mode behaves like Slack's with several connections: up to ten per app, each
envelope to one of them, acks within the deadline, events delivered again when nobody acked.

Driven by plain WebSocket clients (which ack only when a test says so), and once by two Bolt
handlers sharing one app token as two processes would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fake_slack import (
    TEAM_ID,
    FakeSlack,
    app_mention_event,
    event_callback,
    slash_command,
)
from tests.support.fake_socket_mode import MAX_CONNECTIONS

pytestmark = pytest.mark.anyio

WAIT_S = 5.0
ACK_S = 0.3
"""The fake's ack deadline in these tests (Slack's is 3 s)."""


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        running.socket_mode.ack_timeout_s = ACK_S
        running.socket_mode.retry_delays_s = (0.0, 0.1, 0.1)
        yield running


class Client:
    """One raw Socket Mode connection: what it received, and acks sent on request."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        return [m for m in self.received if "envelope_id" in m]

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))

    async def ack(self, envelope_id: str) -> None:
        await self.ws.send_str(json.dumps({"envelope_id": envelope_id}))

    async def hello(self) -> dict[str, Any]:
        await until(lambda: self.received)
        return self.received[0]


@asynccontextmanager
async def clients(fake: FakeSlack, count: int) -> AsyncIterator[list[Client]]:
    """``count`` connections opened one after another (numbered 1…count by the fake)."""
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as session:
        tasks: list[asyncio.Task[None]] = []
        opened: list[Client] = []
        try:
            for _ in range(count):
                ws = await stack.enter_async_context(session.ws_connect(fake.ws_url))
                client = Client(ws)
                tasks.append(asyncio.create_task(client.read()))
                await client.hello()
                opened.append(client)
            yield opened
        finally:
            for client in opened:
                await client.ws.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def event(n: int = 0) -> dict[str, Any]:
    return event_callback(app_mention_event(f"question {n}", user_id="U1"), team_id=TEAM_ID)


async def until(check: Any, timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` (state another task or the fake's thread changes) until it holds."""
    with anyio.fail_after(timeout_s):
        while not check():  # noqa: ASYNC110 (no event to wait on across the fake's thread)
            await anyio.sleep(0.01)


async def test_envelopes_are_spread_over_the_open_connections_one_delivery_each(fake: FakeSlack) -> None:
    async with clients(fake, 3) as (a, b, c):
        ids = [await fake.apush_envelope("events_api", event(n)) for n in range(6)]
        await until(lambda: sum(len(x.envelopes) for x in (a, b, c)) == 6)
        for x in (a, b, c):
            for envelope in x.envelopes:
                await x.ack(envelope["envelope_id"])
        await until(lambda: not fake.socket_mode.unacked())

    assert [x.received[0]["num_connections"] for x in (a, b, c)] == [1, 2, 3]
    assert [len(x.envelopes) for x in (a, b, c)] == [2, 2, 2]
    assert [len(fake.socket_mode.delivered(i)) for i in ids] == [1] * 6
    assert all(ack.in_time for ack in fake.socket_mode.ack_log)


async def test_a_test_may_pick_the_connection_slack_delivers_to(fake: FakeSlack) -> None:
    async with clients(fake, 2) as (a, b):
        [first, second] = await fake.await_connections(2)
        envelope_id = await fake.apush_envelope("events_api", event(), connection=second)
        await until(lambda: b.envelopes)
        await b.ack(envelope_id)
        await fake.await_ack(envelope_id)

    assert [d.connection for d in fake.socket_mode.delivered(envelope_id)] == [second]
    assert not a.envelopes
    assert first == 1


async def test_an_eleventh_connection_is_told_too_many_websockets_and_closed(fake: FakeSlack) -> None:
    async with clients(fake, MAX_CONNECTIONS) as opened, aiohttp.ClientSession() as session:
        async with session.ws_connect(fake.ws_url) as extra:
            refusal = await extra.receive_json(timeout=WAIT_S)
            closing = await extra.receive(timeout=WAIT_S)
        still_open = len(fake.socket_mode.open_connections())

    assert refusal["type"] == "disconnect"
    assert refusal["reason"] == "too_many_websockets"
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert opened[-1].received[0]["num_connections"] == MAX_CONNECTIONS
    assert still_open == MAX_CONNECTIONS
    assert fake.socket_mode.refused_connections == 1


async def test_an_event_not_acked_in_time_is_delivered_again_to_the_next_connection(fake: FakeSlack) -> None:
    async with clients(fake, 2) as (a, b):
        envelope_id = await fake.apush_envelope("events_api", event())
        await until(lambda: b.envelopes)  # a let its deadline pass
        await b.ack(envelope_id)
        await fake.await_ack(envelope_id)
        await anyio.sleep(ACK_S * 2)  # no third delivery once acked

    [first] = a.envelopes
    [again] = b.envelopes
    assert (first["retry_attempt"], first["retry_reason"]) == (0, "")
    assert (again["retry_attempt"], again["retry_reason"]) == (1, "timeout")
    assert again["envelope_id"] == envelope_id
    assert again["payload"]["event_id"] == first["payload"]["event_id"]
    assert [d.connection for d in fake.socket_mode.delivered(envelope_id)] == [1, 2]
    assert fake.socket_mode.given_up == []


async def test_an_event_sent_to_a_connection_that_closes_before_acking_goes_to_another(
    fake: FakeSlack,
) -> None:
    async with clients(fake, 2) as (a, b):
        envelope_id = await fake.apush_envelope("events_api", event())
        await until(lambda: a.envelopes)
        await a.ws.close()  # the process died holding it
        await until(lambda: b.envelopes)
        await b.ack(envelope_id)
        await fake.await_ack(envelope_id)

    assert [d.connection for d in fake.socket_mode.delivered(envelope_id)] == [1, 2]
    assert b.envelopes[0]["retry_attempt"] == 1


async def test_an_event_nobody_acks_is_given_up_after_slacks_retries(fake: FakeSlack) -> None:
    async with clients(fake, 1) as (a,):
        envelope_id = await fake.apush_envelope("events_api", event())
        await until(lambda: envelope_id in fake.socket_mode.given_up)

    assert [e["retry_attempt"] for e in a.envelopes] == [0, 1, 2, 3]
    assert fake.socket_mode.unacked() == [envelope_id]


async def test_an_ack_after_the_deadline_does_not_stop_the_next_delivery(fake: FakeSlack) -> None:
    fake.socket_mode.retry_delays_s = (0.5,)
    async with clients(fake, 1) as (a,):
        envelope_id = await fake.apush_envelope("events_api", event())
        await until(lambda: a.envelopes)
        await anyio.sleep(ACK_S + 0.1)
        await a.ack(envelope_id)  # too late: Slack already counts the delivery as failed
        await until(lambda: len(a.envelopes) == 2)
        await a.ack(envelope_id)
        await until(lambda: len(fake.socket_mode.ack_log) == 2)

    assert [ack.in_time for ack in fake.socket_mode.ack_log] == [False, True]
    assert a.envelopes[1]["retry_attempt"] == 1


async def test_a_command_not_acked_in_time_expires_and_is_not_delivered_again(fake: FakeSlack) -> None:
    async with clients(fake, 2) as (a, b):
        command = slash_command("list", user_id="U1", team_id=TEAM_ID)
        envelope_id = await fake.apush_envelope("slash_commands", command)
        await until(lambda: envelope_id in fake.socket_mode.expired)
        await anyio.sleep(ACK_S)

    assert len(a.envelopes) == 1
    assert not b.envelopes


async def test_two_bolt_handlers_on_one_app_token_each_ack_their_share(fake: FakeSlack) -> None:
    handled: list[str] = []

    def process(name: str) -> AsyncSocketModeHandler:
        app = AsyncApp(client=AsyncWebClient(token="xoxb-test", base_url=fake.base_url), signing_secret="x")

        @app.command("/mcp")
        async def mcp(ack: AsyncAck) -> None:
            handled.append(name)
            await ack("ok")

        return AsyncSocketModeHandler(app, "xapp-test")

    handlers = [process("one"), process("two")]
    try:
        for handler in handlers:
            await handler.connect_async()
        await fake.await_connections(2)
        ids = [
            await fake.apush_envelope("slash_commands", slash_command(str(n), user_id="U1", team_id=TEAM_ID))
            for n in range(4)
        ]
        acks = [await fake.await_ack(i) for i in ids]
    finally:
        for handler in handlers:
            await handler.close_async()

    assert all(ack["payload"] == {"text": "ok"} for ack in acks)
    assert sorted(handled) == ["one", "one", "two", "two"]
    assert {a.connection for a in fake.socket_mode.ack_log} == {1, 2}
    assert all(a.in_time for a in fake.socket_mode.ack_log)
