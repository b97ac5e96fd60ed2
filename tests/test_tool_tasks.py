"""Tools the server runs as MCP tasks (2025-11-25): server-everything's `simulate-research-query`
(taskSupport "required"), a real npm server over stdio and streamable HTTP, through the pool.

A plain call of it is refused by the server ("requires task augmentation"); as a task it is
created, polled at the server's interval with each status heard, and its result fetched. A
stopped call or one past the task deadline is cancelled on the server too.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_core import _tasks, errors
from mcp_core.call_events import CallEvents
from mcp_core.connections import ConnectionPool
from mcp_core.elicitation import ElicitAnswer, ElicitRequest, FormRequest
from mcp_core.models import SessionSpec
from tests.support.pool import WAIT_S, http_spec, opener, stdio_spec, text_of
from tests.support.servers import npm_stdio_params, start_npm_http_server

pytestmark = [pytest.mark.anyio, pytest.mark.npm]
pytest_plugins = ["tests.support.pool_fixtures"]

RESEARCH = "simulate-research-query"
TASK_S = 20.0
"""The research tool takes ~4 s (four stages of one second)."""


def everything() -> SessionSpec:
    params = npm_stdio_params("server-everything", "stdio")
    return stdio_spec(params.command, *params.args, name="everything", mode="auto")


class Heard:
    """What a call's ``on_task`` heard, in order."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str, str | None]] = []
        self.created = anyio.Event()

    async def __call__(self, task_id: str, status: str, message: str | None) -> None:
        self.said.append((task_id, status, message))
        self.created.set()


async def research(
    pool: ConnectionPool, spec: SessionSpec, heard: Heard, **args: Any
) -> types.CallToolResult:
    return await pool.call_tool(
        spec.connection_id,
        opener(spec),
        RESEARCH,
        {"topic": "tide pools", **args},
        events=CallEvents(on_task=heard),
        task_support="required",
    )


async def task_status(pool: ConnectionPool, spec: SessionSpec, task_id: str) -> str:
    """Asked on the same session, as the server scopes its tasks."""
    client = pool._live[spec.connection_id].client
    assert client is not None
    got = await client.session.send_request(
        types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)), types.GetTaskResult
    )
    return got.status


async def test_a_plain_call_of_a_task_only_tool_is_refused_by_the_server(pool: ConnectionPool) -> None:
    spec = everything()
    with anyio.fail_after(WAIT_S):
        result = await pool.call_tool(spec.connection_id, opener(spec), RESEARCH, {"topic": "x"})

    assert result.is_error
    assert "requires task augmentation" in text_of(result)


async def test_a_task_tool_runs_as_a_task_and_each_status_is_heard(pool: ConnectionPool) -> None:
    spec = everything()
    heard = Heard()

    with anyio.fail_after(TASK_S):
        result = await research(pool, spec, heard)

    assert not result.is_error
    assert "# Research Report: tide pools" in text_of(result)
    ids = {task_id for task_id, _, _ in heard.said}
    assert len(ids) == 1
    statuses = [(status, message) for _, status, message in heard.said]
    assert statuses[0] == ("working", "Gathering sources...")
    assert ("working", "Analyzing content...") in statuses
    assert statuses[-1][0] == "completed"
    assert pool.is_live(spec.connection_id)


async def test_a_stopped_task_call_is_cancelled_on_the_server(pool: ConnectionPool) -> None:
    spec = everything()
    heard = Heard()

    async with anyio.create_task_group() as tg:
        tg.start_soon(research, pool, spec, heard)
        with anyio.fail_after(WAIT_S):
            await heard.created.wait()
        tg.cancel_scope.cancel()  # the person pressed Stop
    [(task_id, _, _)] = heard.said[:1]
    with anyio.fail_after(WAIT_S):
        status = await task_status(pool, spec, task_id)

    assert status == "cancelled"
    assert pool.is_live(spec.connection_id)  # the session goes on for the next call


async def test_a_task_past_its_deadline_is_cancelled_and_said_so(pools: Any) -> None:
    pool = pools(task_timeout_s=1.5)
    spec = everything()
    heard = Heard()

    with anyio.fail_after(TASK_S), pytest.raises(errors.ServerTimeoutError) as raised:
        await research(pool, spec, heard)
    task_id = heard.said[0][0]
    with anyio.fail_after(WAIT_S):
        status = await task_status(pool, spec, task_id)

    assert "ran as a task for longer than 1.5 s" in str(raised.value)
    assert "cancelled on the server" in str(raised.value)
    assert status == "cancelled"


async def test_a_task_tool_runs_as_a_task_over_streamable_http(pool: ConnectionPool) -> None:
    heard = Heard()
    async with start_npm_http_server("server-everything", "streamableHttp") as server:
        spec = http_spec(server.url, mode="auto", name="everything")
        with anyio.fail_after(TASK_S):
            result = await research(pool, spec, heard)
        await pool.discard(spec.connection_id)

    assert "# Research Report: tide pools" in text_of(result)
    assert heard.said[-1][1] == "completed"


async def test_tools_without_task_support_are_called_plainly(pool: ConnectionPool) -> None:
    spec = everything()
    heard = Heard()
    with anyio.fail_after(WAIT_S):
        result = await pool.call_tool(
            spec.connection_id,
            opener(spec),
            "echo",
            {"message": "plain"},
            events=CallEvents(on_task=heard),
            task_support="forbidden",
        )

    assert "plain" in text_of(result)
    assert heard.said == []


@pytest.mark.parametrize(
    ("interval_ms", "seconds"), [(None, 1.0), (0, 1.0), (-5, 1.0), (1, 0.25), (1000, 1.0), (10**9, 10.0)]
)
def test_a_servers_poll_interval_is_kept_within_bounds(interval_ms: int | None, seconds: float) -> None:
    assert _tasks._interval(interval_ms) == seconds


async def test_a_task_that_needs_input_asks_the_person_through_tasks_result_and_goes_on(
    pool: ConnectionPool,
) -> None:
    """server-everything's ambiguous query: `input_required`, then its question arrives with
    `tasks/result` (related-task), is asked of the call's surface, and the answer is used."""
    asked: list[ElicitRequest] = []

    async def answer(request: ElicitRequest) -> ElicitAnswer:
        asked.append(request)
        return ElicitAnswer("accept", {"interpretation": "snake"})

    spec = everything()
    heard = Heard()
    events = CallEvents(on_task=heard, on_elicit=answer, surface="C1/1.0")
    with anyio.fail_after(TASK_S):
        result = await pool.call_tool(
            spec.connection_id,
            opener(spec),
            RESEARCH,
            {"topic": "python", "ambiguous": True},
            events=events,
            task_support="required",
        )

    [question] = asked
    assert isinstance(question, FormRequest)
    assert [c.value for c in question.fields[0].choices] == ["programming", "snake", "comedy"]
    assert "input_required" in [status for _, status, _ in heard.said]
    assert "# Research Report: python (snake)" in text_of(result)
