"""Tool calls that run as MCP tasks (2025-11-25, SEP-1686): call now, poll, fetch the result.

A tool whose server marks it ``execution.taskSupport: "required"`` refuses a plain call
("requires task augmentation"); ``"optional"`` tools run as tasks too when the server says it
takes task-augmented ``tools/call`` (``capabilities.tasks.requests.tools.call``), so a long
job reports its status and can be cancelled like one. The flow:

* ``tools/call`` with ``task: {ttl}`` → ``CreateTaskResult`` (a server may still answer with
  the result itself: then that is the result).
* ``tasks/get`` every ``pollInterval`` (clamped to [POLL_MIN_S, POLL_MAX_S]: a hostile server
  can neither make the bot spin nor stall it) until the task ends or needs input; each status
  is reported (``on_task``), scrubbed and cut short.
* ``tasks/result`` for the payload: it blocks until the task is terminal and carries the
  server's queued questions (elicitation with ``related-task``), which the session's
  elicitation handler answers as for any call.
* Cancelled by the caller (Stop, the task's deadline) → ``tasks/cancel``, shielded and
  bounded, then the cancellation goes on.

mcp 2.3.0 keeps the 2025-11-25 task types but validates every ``tools/call`` answer as a
``CallToolResult``, which a ``CreateTaskResult`` is not; so the creating request alone goes
through the session's dispatcher (``_send_raw``), stamped like any request of the session.
``tasks/*`` go through the public ``send_request``. The test on server-everything's task tool
fails loudly if a new SDK moves that seam.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from mcp_core.call_events import TaskHook

logger = logging.getLogger(__name__)

__all__ = ["call_as_task", "cancel_task", "follow_task", "takes_tasks"]

TASK_TTL_MS = 60 * 60 * 1000
"""How long we ask the server to keep the task and its result (it may keep it shorter)."""
POLL_MIN_S = 0.25
POLL_MAX_S = 10.0
CANCEL_TIMEOUT_S = 5.0
STATUS_CHARS = 200
MAX_TASK_ID_CHARS = 200
"""A task id is the server's word: kept with the turn, so bounded."""
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def takes_tasks(client: Client, task_support: str | None) -> bool:
    """Whether to call this tool as a task: the server requires it, or allows it and says it
    takes task-augmented calls. Only on 2025-11-25 sessions (2026-07-28 moved tasks out of
    the core protocol into an extension)."""
    if task_support not in ("required", "optional") or client.protocol_version != "2025-11-25":
        return False
    if task_support == "required":
        return True
    tasks = client.server_capabilities.tasks
    return tasks is not None and tasks.requests is not None and tasks.requests.tools is not None


async def call_as_task(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    *,
    request_timeout_s: float,
    scrub: Callable[[str], str],
    on_task: TaskHook | None = None,
    progress_callback: Any = None,
) -> types.CallToolResult:
    """Run ``tool`` as a task to its end; each request is bounded by ``request_timeout_s``,
    the whole by the caller's cancel scope (which cancels the task on the server).

    Raises:
        MCPError: the server refused a request (the caller turns it into an error result).
    """
    session = client.session
    params = types.CallToolRequestParams(
        name=tool, arguments=arguments, task=types.TaskMetadata(ttl=TASK_TTL_MS)
    )
    raw = await _send_raw(session, types.CallToolRequest(params=params), request_timeout_s, progress_callback)
    if "task" not in raw:  # the server answered at once
        return types.CallToolResult.model_validate(raw)
    task = types.CreateTaskResult.model_validate(raw).task
    return await _see_through(client, task, request_timeout_s, scrub, on_task, cancel_on_exit=True)


async def follow_task(
    client: Client,
    task_id: str,
    *,
    request_timeout_s: float,
    scrub: Callable[[str], str],
    on_task: TaskHook | None = None,
) -> types.CallToolResult:
    """Follow task ``task_id``, created by another session (a process that was restarted), to its
    end: the same polling and result as ``call_as_task``. A cancelled follow leaves the task
    running (whoever follows it next gets it); ``cancel_task`` ends it on the server.

    Raises:
        MCPError: the server refused a request (an unknown task: its store forgot it, or it
            was bound to the session that is gone).
    """
    if not 0 < len(task_id) <= MAX_TASK_ID_CHARS:
        raise ValueError("the task id is empty or too long")
    task = await client.session.send_request(
        types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)),
        types.GetTaskResult,
        request_read_timeout_seconds=request_timeout_s,
    )
    if task.task_id != task_id:
        raise ValueError("the server answered tasks/get about another task")
    return await _see_through(client, task, request_timeout_s, scrub, on_task, cancel_on_exit=False)


async def cancel_task(client: Client, task_id: str) -> None:
    """``tasks/cancel``, shielded and bounded; never raises (already ended, or the session is gone)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
        await _cancel(client.session, task_id)


async def _see_through(
    client: Client,
    task: types.Task,
    request_timeout_s: float,
    scrub: Callable[[str], str],
    on_task: TaskHook | None,
    *,
    cancel_on_exit: bool,
) -> types.CallToolResult:
    """Poll ``task`` until it ends or needs input, then fetch its result."""
    session = client.session
    task_id = task.task_id
    if not 0 < len(task_id) <= MAX_TASK_ID_CHARS:
        raise ValueError("the server's task id is empty or too long")
    try:
        await _heard(on_task, task, scrub)
        status, said = task.status, task.status_message
        while status not in TERMINAL and status != "input_required":
            await anyio.sleep(_interval(task.poll_interval))
            task = await session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)),
                types.GetTaskResult,
                request_read_timeout_seconds=request_timeout_s,
            )
            if task.task_id != task_id:
                raise ValueError("the server answered tasks/get about another task")
            if (task.status, task.status_message) != (status, said):
                status, said = task.status, task.status_message
                await _heard(on_task, task, scrub)
        # Blocks until the task is terminal (answering its questions meanwhile): its own time
        # is the task's, bounded by the caller's scope, not by one request's timeout.
        return await session.send_request(
            types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id)),
            types.CallToolResult,
            request_read_timeout_seconds=None,
        )
    except BaseException:
        if cancel_on_exit:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
                await _cancel(session, task_id)
        raise


async def _send_raw(
    session: Any, request: types.CallToolRequest, timeout_s: float, progress_callback: Any
) -> dict[str, Any]:
    """``tools/call`` sent as ``ClientSession.send_request`` sends it, minus its result check.
    Its progress token stays the task's for the task's life (the server's notifications)."""
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict[str, Any] = {"timeout": timeout_s}
    if progress_callback is not None:
        opts["on_progress"] = progress_callback
    session._stamp(data, opts)
    return await session._dispatcher.send_raw_request(data["method"], data.get("params"), opts)


async def _cancel(session: Any, task_id: str) -> None:
    try:
        await session.send_request(
            types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id)),
            types.CancelTaskResult,
            request_read_timeout_seconds=CANCEL_TIMEOUT_S,
        )
        logger.info("cancelled task %s on the server", task_id[:64])
    except Exception as exc:  # boundary: already ended, or the session is gone
        logger.info("could not cancel task %s: %s", task_id[:64], type(exc).__name__)


async def _heard(on_task: TaskHook | None, task: types.Task, scrub: Callable[[str], str]) -> None:
    if on_task is None:
        return
    said = " ".join(scrub(task.status_message).split())[:STATUS_CHARS] if task.status_message else None
    await on_task(task.task_id, task.status, said)


def _interval(poll_interval_ms: int | None) -> float:
    if poll_interval_ms is None or poll_interval_ms <= 0:
        return 1.0
    return min(max(poll_interval_ms / 1000, POLL_MIN_S), POLL_MAX_S)
