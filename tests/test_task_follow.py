"""Following an MCP task (2025-11-25) that a session of another process created: the process
that takes a turn over gets the task's result on a session of its own.

`tests/servers/task_keeper.py` keeps its tasks per caller (its `Authorization` header), not
per session, as servers with a durable task store do: a task created by a raw client that then
went away is followed through the pool to its result, or cancelled on the server once it runs
past the task deadline. The real npm server-everything keeps tasks per session: following one
from a new session is refused, and said so. Nothing is ever sent as a new call.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest

from mcp_core import errors
from mcp_core.connections import ConnectionPool
from tests.support.pool import WAIT_S, http_spec, opener, text_of
from tests.support.servers import (
    RunningServer,
    start_npm_http_server,
    start_task_keeper,
    start_task_keeper_sync,
)

pytestmark = pytest.mark.anyio
pytest_plugins = ["tests.support.pool_fixtures"]

AUTH = "Bearer follow-me"


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[dict[str, Any], str]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
        return (json.loads(raw) if raw else {}), response.headers.get("mcp-session-id", "")


def create_task(url: str, *, topic: str, seconds: float, auth: str = AUTH) -> str:
    """A task made the way a bot process that then died made it: its own session, then gone."""
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "gone", "version": "1"},
    }
    _, session = _post(
        url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, {"Authorization": auth}
    )
    headers = {"Authorization": auth, "Mcp-Session-Id": session}
    _post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    params = {"name": "research", "arguments": {"topic": topic, "seconds": seconds}, "task": {"ttl": 60000}}
    created, _ = _post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}, headers)
    return created["result"]["task"]["taskId"]


def task_status(server: RunningServer, task_id: str, auth: str = AUTH) -> str:
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    }
    _, session = _post(
        server.url,
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"Authorization": auth},
    )
    got, _ = _post(
        server.url,
        {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": task_id}},
        {"Authorization": auth, "Mcp-Session-Id": session},
    )
    return got["result"]["status"]


def started(server: RunningServer) -> int:
    with urllib.request.urlopen(f"{server.base_url}/calls", timeout=5) as response:
        return int(json.load(response).get("research", 0))


async def test_a_task_created_by_a_session_that_is_gone_is_followed_to_its_result(
    pool: ConnectionPool,
) -> None:
    async with start_task_keeper() as server:
        task_id = await anyio.to_thread.run_sync(
            lambda: create_task(server.url, topic="tide pools", seconds=1.0)
        )
        spec = http_spec(server.url, name="keeper", headers={"Authorization": AUTH})
        heard: list[tuple[str, str | None]] = []

        async def on_task(got: str, status: str, message: str | None) -> None:
            assert got == task_id
            heard.append((status, message))

        with anyio.fail_after(WAIT_S):
            result = await pool.follow_task(
                spec.connection_id, opener(spec), "research", task_id, on_task=on_task
            )
        runs = await anyio.to_thread.run_sync(started, server)

    assert not result.is_error
    assert text_of(result) == "Report on tide pools"
    assert heard[0] == ("working", "Researching...")
    assert heard[-1][0] == "completed"
    assert runs == 1  # followed, never called again


async def test_a_task_of_another_caller_is_not_found(pool: ConnectionPool) -> None:
    async with start_task_keeper() as server:
        task_id = await anyio.to_thread.run_sync(lambda: create_task(server.url, topic="x", seconds=5.0))
        spec = http_spec(server.url, name="keeper", headers={"Authorization": "Bearer someone-else"})
        with anyio.fail_after(WAIT_S), pytest.raises(errors.McpServerError) as raised:
            await pool.follow_task(spec.connection_id, opener(spec), "research", task_id)

    assert "Task not found" in str(raised.value)
    assert str(raised.value).startswith("keeper: the server answered error -32602")


async def test_a_followed_task_past_the_deadline_is_cancelled_on_the_server(pools: Any) -> None:
    pool = pools(task_timeout_s=1.0)
    async with start_task_keeper() as server:
        task_id = await anyio.to_thread.run_sync(lambda: create_task(server.url, topic="x", seconds=60.0))
        spec = http_spec(server.url, name="keeper", headers={"Authorization": AUTH})
        with anyio.fail_after(WAIT_S), pytest.raises(errors.ServerTimeoutError) as raised:
            await pool.follow_task(spec.connection_id, opener(spec), "research", task_id)
        status = await anyio.to_thread.run_sync(task_status, server, task_id)

    assert "ran as a task for longer than 1 s, so it was cancelled on the server" in str(raised.value)
    assert status == "cancelled"


async def test_a_follow_cancelled_from_outside_leaves_the_task_running(pool: ConnectionPool) -> None:
    async with start_task_keeper() as server:
        task_id = await anyio.to_thread.run_sync(lambda: create_task(server.url, topic="x", seconds=60.0))
        spec = http_spec(server.url, name="keeper", headers={"Authorization": AUTH})
        with anyio.move_on_after(1.0):  # this process shuts down: the next one follows it
            await pool.follow_task(spec.connection_id, opener(spec), "research", task_id)
        status = await anyio.to_thread.run_sync(task_status, server, task_id)

    assert status == "working"


@pytest.mark.npm
async def test_a_server_that_keeps_tasks_per_session_refuses_the_follow_and_it_is_said(
    pool: ConnectionPool,
) -> None:
    async with start_npm_http_server("server-everything", "streamableHttp") as server:
        spec = http_spec(server.url, mode="auto", name="everything")
        with anyio.fail_after(WAIT_S), pytest.raises(errors.McpServerError) as raised:
            await pool.follow_task(
                spec.connection_id, opener(spec), "simulate-research-query", "no-such-task"
            )
        alive = pool.is_live(spec.connection_id)
        await pool.discard(spec.connection_id)

    assert str(raised.value).startswith("everything: the server answered error")
    assert alive  # a refusal is the server's answer, not a broken session


def test_the_task_keeper_refuses_a_plain_call_and_a_request_without_its_session() -> None:
    with start_task_keeper_sync() as server:
        hello = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        init, session = _post(
            server.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, {}
        )
        params = {"name": "research", "arguments": {"topic": "x", "seconds": 0}}
        plain, _ = _post(
            server.url,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params},
            {"Mcp-Session-Id": session},
        )
        with pytest.raises(urllib.error.HTTPError) as unknown:
            _post(server.url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, {"Mcp-Session-Id": "nope"})
        runs = started(server)

    assert init["result"]["protocolVersion"] == "2025-11-25"
    assert plain["error"]["message"] == "Tool research requires task augmentation"
    assert unknown.value.code == 404
    assert runs == 0
