"""Tools a server runs as tasks of the 2026-07-28 Tasks extension (`io.modelcontextprotocol/tasks`),
through the pool, against `tests/servers/task_extension.py` (the mcp SDK's `MCPServer` with the
extension, over stdio and streamable HTTP).

Every 2026-07-28 request declares the extension; the server decides to answer `research` with a
task, which is polled at its interval with each status heard and its result read from the
completed task. Stop and the task deadline cancel it on the server; another process (a new
pool) follows it by id after a restart. A 2025-11-25 session never declares it, so the server
refuses rather than hand it a task.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import anyio
import pytest

from mcp_core import errors
from mcp_core.call_events import CallEvents
from mcp_core.connections import ConnectionPool
from mcp_core.elicitation import ElicitAnswer, ElicitRequest, FormRequest
from mcp_core.models import SessionSpec
from tests.support.pool import WAIT_S, http_spec, opener, stdio_spec, text_of
from tests.support.servers import REPO, TASK_EXTENSION, RunningServer, start_task_extension

pytestmark = pytest.mark.anyio
pytest_plugins = ["tests.support.pool_fixtures"]


class Heard:
    def __init__(self) -> None:
        self.said: list[tuple[str, str, str | None]] = []
        self.created = anyio.Event()

    async def __call__(self, task_id: str, status: str, message: str | None) -> None:
        self.said.append((task_id, status, message))
        self.created.set()


def stdio(mode: str = "auto") -> SessionSpec:
    return stdio_spec(sys.executable, str(TASK_EXTENSION), name="ext", mode=mode)


def counts(server: RunningServer) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.base_url}/calls", timeout=5) as response:
        return json.load(response)


async def research(
    pool: ConnectionPool, spec: SessionSpec, heard: Heard | None = None, seconds: float = 1
) -> Any:
    events = CallEvents(on_task=heard) if heard is not None else None
    arguments = {"topic": "kelp", "seconds": seconds}
    return await pool.call_tool(spec.connection_id, opener(spec), "research", arguments, events=events)


async def test_a_task_the_server_chose_to_make_is_polled_to_its_result_with_each_status_heard(
    pool: ConnectionPool,
) -> None:
    spec = stdio()
    heard = Heard()
    with anyio.fail_after(WAIT_S):
        result = await research(pool, spec, heard)
        plain = await pool.call_tool(spec.connection_id, opener(spec), "echo", {"text": "plain"})
    version = pool._live[spec.connection_id].client.protocol_version  # type: ignore[union-attr]

    assert version == "2026-07-28"
    assert text_of(result) == "Report on kelp"
    assert not result.is_error
    assert [(status, message) for _, status, message in heard.said] == [
        ("working", "Researching..."),
        ("completed", "Done"),
    ]
    assert text_of(plain) == "plain"


async def test_a_2025_session_never_declares_the_extension_so_no_task_is_made(pool: ConnectionPool) -> None:
    spec = stdio(mode="legacy")
    heard = Heard()
    with anyio.fail_after(WAIT_S):
        result = await research(pool, spec, heard)

    assert result.is_error
    assert "-32021" in text_of(result)
    assert heard.said == []


async def test_a_stopped_call_cancels_its_task_on_the_server(pool: ConnectionPool) -> None:
    heard = Heard()
    async with start_task_extension() as server:
        spec = http_spec(server.url, mode="auto", name="ext")
        async with anyio.create_task_group() as tg:
            tg.start_soon(research, pool, spec, heard, 60)
            with anyio.fail_after(WAIT_S):
                await heard.created.wait()
            tg.cancel_scope.cancel()  # Stop
        seen = await anyio.to_thread.run_sync(counts, server)
        await pool.discard(spec.connection_id)

    assert seen == {"research": 1, "cancelled": 1}


async def test_a_task_past_its_deadline_is_cancelled_on_the_server_and_said_so(pools: Any) -> None:
    pool = pools(task_timeout_s=1.0)
    async with start_task_extension() as server:
        spec = http_spec(server.url, mode="auto", name="ext", call_timeout_s=0.5)
        with anyio.fail_after(WAIT_S), pytest.raises(errors.ServerTimeoutError) as raised:
            await research(pool, spec, Heard(), seconds=60)
        seen = await anyio.to_thread.run_sync(counts, server)
        await pool.discard(spec.connection_id)

    assert "ran as a task for longer than 1 s, so it was cancelled on the server" in str(raised.value)
    assert seen == {"research": 1, "cancelled": 1}


async def test_a_call_turned_task_outlives_its_call_timeout(pool: ConnectionPool) -> None:
    """The call's own timeout (0.5 s here) bounds the request that creates the task; the task
    then has the task deadline."""
    async with start_task_extension() as server:
        spec = http_spec(server.url, mode="auto", name="ext", call_timeout_s=0.5)
        with anyio.fail_after(WAIT_S):
            result = await research(pool, spec, Heard(), seconds=1.5)
        await pool.discard(spec.connection_id)

    assert text_of(result) == "Report on kelp"


DIES_MID_TASK = """
import os, sys, anyio
from mcp_core.call_events import CallEvents
from mcp_core.connections import ConnectionPool
from mcp_core.elicitation import ElicitAnswer, ElicitRequest, FormRequest
from tests.support.pool import http_spec, opener

async def main():
    spec = http_spec(sys.argv[1], mode="auto", name="ext")

    async def on_task(task_id, status, message):
        print(task_id, flush=True)
        os._exit(0)  # dies here: no tasks/cancel, no goodbye

    await ConnectionPool().call_tool(
        spec.connection_id, opener(spec), "research", {"topic": "kelp", "seconds": 2},
        events=CallEvents(on_task=on_task),
    )

anyio.run(main)
"""


def task_of_a_process_that_died(url: str) -> str:
    """A real process calls research, hears its task id, and dies at once."""
    done = subprocess.run(
        [sys.executable, "-c", DIES_MID_TASK, url], capture_output=True, timeout=WAIT_S, cwd=REPO, check=True
    )
    return done.stdout.decode().strip()


async def test_another_process_follows_the_task_by_id_after_a_restart(pool: ConnectionPool) -> None:
    async with start_task_extension() as server:
        task_id = await anyio.to_thread.run_sync(task_of_a_process_that_died, server.url)
        spec = http_spec(server.url, mode="auto", name="ext")
        with anyio.fail_after(WAIT_S):
            result = await pool.follow_task(spec.connection_id, opener(spec), "research", task_id)
            with pytest.raises(errors.McpServerError) as unknown:
                await pool.follow_task(spec.connection_id, opener(spec), "research", "no-such-task")
        seen = await anyio.to_thread.run_sync(counts, server)
        await pool.discard(spec.connection_id)

    assert text_of(result) == "Report on kelp"
    assert seen == {"research": 1}
    assert "Task not found" in str(unknown.value)


async def test_a_task_that_needs_input_asks_the_person_and_goes_on_with_the_answer(
    pool: ConnectionPool,
) -> None:
    asked: list[ElicitRequest] = []

    async def answer(request: ElicitRequest) -> ElicitAnswer:
        asked.append(request)
        return ElicitAnswer("accept", {"kind": "giant"})

    heard = Heard()
    async with start_task_extension() as server:
        spec = http_spec(server.url, mode="auto", name="ext")
        events = CallEvents(on_task=heard, on_elicit=answer, surface="C1/1.0")
        with anyio.fail_after(WAIT_S):
            result = await pool.call_tool(
                spec.connection_id, opener(spec), "survey", {"topic": "kelp"}, events=events
            )
        seen = await anyio.to_thread.run_sync(counts, server)
        await pool.discard(spec.connection_id)

    assert text_of(result) == "Survey of giant kelp"
    [question] = asked
    assert isinstance(question, FormRequest)
    assert question.message == "Which kind of kelp?"
    assert [f.name for f in question.fields] == ["kind"]
    assert ("input_required", "Waiting for an answer") in [(s, m) for _, s, m in heard.said]
    assert seen == {"survey": 1, "answers": 1}  # asked once, though polled while it waited


async def test_a_task_question_nobody_can_show_is_answered_cancel(pool: ConnectionPool) -> None:
    spec = stdio()
    with anyio.fail_after(WAIT_S):
        result = await pool.call_tool(
            spec.connection_id, opener(spec), "survey", {"topic": "kelp"}, events=CallEvents(on_task=Heard())
        )

    assert text_of(result) == "Survey cancelled"
