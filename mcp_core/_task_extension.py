"""Tool calls its server runs as tasks of the 2026-07-28 Tasks extension
(``io.modelcontextprotocol/tasks``): declared on every request, resolved when a server uses it.

On 2026-07-28 tasks left the core protocol. A client declares the extension in its per-request
capabilities (the SDK does, for the ``ClientExtension`` given to ``Client``), and the *server*
decides per call whether to answer with a task: a ``CreateTaskResult`` (``resultType:
"task"``) instead of the ``CallToolResult``. The SDK hands that shape to this extension's claim,
whose resolver finishes the call:

* ``tasks/get`` every ``pollIntervalMs`` (clamped as in ``mcp_core._tasks``) until the task is
  terminal; each status is reported to the call's ``on_task`` (scrubbed, cut short). The
  completed task carries the result inline; a failed one its JSON-RPC error; a cancelled one
  nothing.
* A task that needs input (``input_required``): each new elicitation of its ``inputRequests``
  is asked of the person as any mid-call question is (``mcp_core._mid_call``; keys already
  answered are not asked again) and the answers sent with ``tasks/update``. A task that asks
  for something else (sampling, roots), too much, or when nobody can answer (followed after a
  restart) is cancelled, and the call answers an error saying so.
* Cancelled by the caller (Stop, the task's deadline) → ``tasks/cancel``, shielded and bounded.

The resolver runs inside ``Client.call_tool``, in the caller's task, so what the pool knows
about the call (its hooks, its deadline) travels in a context variable (``TaskCall``). The
first sign of a task pushes the call's deadline out to the task deadline, as for a 2025-11-25
task. ``follow`` is the same loop for a task another process created (after a restart).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from pydantic import ConfigDict, Field

from mcp_core._tasks import CANCEL_TIMEOUT_S, MAX_TASK_ID_CHARS, STATUS_CHARS, TERMINAL, _interval
from mcp_core.call_events import TaskHook

logger = logging.getLogger(__name__)

__all__ = ["EXTENSION", "TaskCall", "TasksExtension", "follow", "offers_tasks"]

EXTENSION = "io.modelcontextprotocol/tasks"
MAX_INPUT_REQUESTS = 20
"""Questions one task may ask in all (a hostile server cannot keep the person busy forever)."""


class _Task(types.Result):
    """The Task fields both shapes share (the extension's names: ``ttlMs``, ``pollIntervalMs``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId", min_length=1, max_length=MAX_TASK_ID_CHARS)
    status: Literal["working", "input_required", "completed", "failed", "cancelled"]
    status_message: str | None = Field(default=None, alias="statusMessage")
    poll_interval_ms: int | None = Field(default=None, alias="pollIntervalMs")


class CreatedTask(_Task):
    """``CreateTaskResult``: the answer to ``tools/call`` when the server made a task."""

    result_type: Literal["task"] = Field(alias="resultType")


class DetailedTask(_Task):
    """``tasks/get``'s answer: the task, with its result, error or input requests inline."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = Field(default=None, alias="inputRequests")


class _TaskParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class _GetTask(types.Request[_TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: _TaskParams


class _CancelTask(types.Request[_TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: _TaskParams


class _UpdateParams(_TaskParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


class _UpdateTask(types.Request[_UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: _UpdateParams


@dataclass
class TaskCall:
    """What the pool knows about the call in flight, for the resolver (``CURRENT``)."""

    scrub: Callable[[str], str]
    on_task: TaskHook | None = None
    became_task: Callable[[], None] | None = None
    """Called once when the server answers with a task: the call's deadline becomes the task's."""
    elicit: Callable[[Any], Awaitable[types.ElicitResult]] | None = None
    """Asks the call's surface one of the task's questions (the session's mid-call routing)."""
    task_id: str | None = field(default=None, init=False)


CURRENT: contextvars.ContextVar[TaskCall | None] = contextvars.ContextVar("mcp_task_call", default=None)


class TasksExtension(ClientExtension):
    """The extension as the SDK takes it: advertised on 2026-07-28 requests, one claim."""

    identifier = EXTENSION

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=_resolve)]


def offers_tasks(client: Client) -> bool:
    """Whether the server said (``server/discover``) it speaks the extension."""
    extensions = client.server_capabilities.extensions if client.protocol_version == "2026-07-28" else None
    return bool(extensions) and EXTENSION in extensions


async def _resolve(created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
    call = CURRENT.get() or TaskCall(scrub=lambda text: text)
    call.task_id = created.task_id
    if call.became_task is not None:
        call.became_task()
    return await _see_through(ctx.session, created, call, ctx.read_timeout_seconds, cancel_on_exit=True)


async def follow(
    client: Client,
    task_id: str,
    *,
    request_timeout_s: float,
    scrub: Callable[[str], str],
    on_task: TaskHook | None,
) -> types.CallToolResult:
    """Follow the extension task ``task_id``, which another process's call created, to its end;
    a cancelled follow leaves it running (``cancel`` ends it).

    Raises:
        MCPError: the server refused (an unknown task).
    """
    session = client.session
    task = await _get(session, task_id, request_timeout_s)
    call = TaskCall(scrub=scrub, on_task=on_task)
    return await _see_through(session, task, call, request_timeout_s, cancel_on_exit=False)


async def cancel(client: Client, task_id: str) -> None:
    """``tasks/cancel``, shielded and bounded; never raises."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
        await _cancel(client.session, task_id)


async def _see_through(
    session: ClientSession, task: _Task, call: TaskCall, timeout_s: float | None, *, cancel_on_exit: bool
) -> types.CallToolResult:
    task_id = task.task_id
    answered: set[str] = set()
    try:
        await _heard(call, task)
        said = (task.status, task.status_message)
        while not isinstance(task, DetailedTask) or task.status not in TERMINAL:
            if isinstance(task, DetailedTask) and task.status == "input_required":
                asked = {k: v for k, v in (task.input_requests or {}).items() if k not in answered}
                if asked:
                    responses = await _answers(asked, call)
                    if responses is None:
                        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
                            await _cancel(session, task_id)
                        return _error(
                            "The server asked for input in the middle of the task that I cannot give "
                            "here, so the task was cancelled."
                        )
                    await _update(session, task_id, responses, timeout_s)
                    answered |= asked.keys()
                    if len(answered) > MAX_INPUT_REQUESTS:
                        raise ValueError("the server keeps asking for input")
            elif task.status in TERMINAL:  # created already ended: its payload comes with tasks/get
                task = await _get(session, task_id, timeout_s)
                continue
            await anyio.sleep(_interval(task.poll_interval_ms))
            task = await _get(session, task_id, timeout_s)
            if (task.status, task.status_message) != said:
                said = (task.status, task.status_message)
                await _heard(call, task)
        return _outcome(task, call.scrub)
    except BaseException:
        if cancel_on_exit:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
                await _cancel(session, task_id)
        raise


async def _answers(asked: dict[str, Any], call: TaskCall) -> dict[str, Any] | None:
    """The person's answers to the task's questions (elicitations, asked as any mid-call
    question is), or None when it asks something else (sampling, roots) or nobody can answer
    (a task followed after a restart)."""
    if call.elicit is None or len(asked) > MAX_INPUT_REQUESTS:
        return None
    responses: dict[str, Any] = {}
    for key, request in asked.items():
        if not isinstance(request, dict) or request.get("method") != "elicitation/create" or len(key) > 200:
            return None
        answer = await call.elicit(request.get("params") or {})
        responses[key] = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
    return responses


def _outcome(task: DetailedTask, scrub: Callable[[str], str]) -> types.CallToolResult:
    if task.status == "completed":
        if task.result is None:
            return _error("The server said the task completed but sent no result.")
        return types.CallToolResult.model_validate(task.result)
    if task.status == "failed":
        error = task.error or {}
        message = scrub(str(error.get("message", "no reason given")))[:500]
        return _error(f"The task failed on the server (error {error.get('code', '?')}): {message}")
    return _error("The server cancelled the task.")


async def _get(session: ClientSession, task_id: str, timeout_s: float | None) -> DetailedTask:
    task = await session.send_request(
        _GetTask(params=_TaskParams(task_id=task_id)), DetailedTask, request_read_timeout_seconds=timeout_s
    )
    if task.task_id != task_id:
        raise ValueError("the server answered tasks/get about another task")
    return task


async def _update(
    session: ClientSession, task_id: str, responses: dict[str, Any], timeout_s: float | None
) -> None:
    await session.send_request(
        _UpdateTask(params=_UpdateParams(task_id=task_id, input_responses=responses)),
        types.EmptyResult,
        request_read_timeout_seconds=timeout_s,
    )


async def _cancel(session: ClientSession, task_id: str) -> None:
    try:
        await session.send_request(
            _CancelTask(params=_TaskParams(task_id=task_id)),
            types.EmptyResult,
            request_read_timeout_seconds=CANCEL_TIMEOUT_S,
        )
        logger.info("cancelled task %s on the server", task_id[:64])
    except (MCPError, Exception) as exc:  # boundary: already ended, or the session is gone
        logger.info("could not cancel task %s: %s", task_id[:64], type(exc).__name__)


async def _heard(call: TaskCall, task: _Task) -> None:
    if call.on_task is None:
        return
    said = " ".join(call.scrub(task.status_message).split())[:STATUS_CHARS] if task.status_message else None
    await call.on_task(task.task_id, task.status, said)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
