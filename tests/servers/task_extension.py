"""An MCP server (mcp SDK `MCPServer`, protocol 2026-07-28) that runs a tool as a task of the
Tasks extension `io.modelcontextprotocol/tasks`, as its specification describes.

Run as a script (tests start it as a subprocess):

    python tests/servers/task_extension.py [--transport stdio|http] [--port N]

Tools: `research(topic, seconds)` (read-only). Called by a client that declares the extension in
its per-request capabilities, it answers `resultType: "task"` (a `CreateTaskResult`) at once and
completes after `seconds` with the text "Report on <topic>"; a client that does not declare it
gets JSON-RPC error -32021 (missing required client capability). `tasks/get` answers the task
(with `result` once completed), `tasks/cancel` acknowledges with an empty result and cancels,
an unknown task is error -32602. `survey(topic)` runs as a task that soon needs input: its
`tasks/get` shows `input_required` with one elicitation (key `q1`, a `kind` field); the answer
sent with `tasks/update` completes it with "Survey of <kind> <topic>" (or "Survey declined" /
"Survey cancelled"); answers to unknown or answered keys are ignored. `echo(text)` is plain.

Tasks are kept in the process, not per session (2026-07-28 has no sessions): a client that
restarted follows its task by id. Over HTTP, `GET /calls` answers `{"research": N, "cancelled":
M, "answers": K}` so a test can prove a task was created once and cancelled on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolRequestParams, RequestParams, ToolAnnotations
from pydantic import ConfigDict, Field

EXTENSION = "io.modelcontextprotocol/tasks"
MISSING_CAPABILITY = -32021
INVALID_PARAMS = -32602
POLL_INTERVAL_MS = 300
COUNTS: Counter[str] = Counter()


class TaskParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    task_id: str = Field(alias="taskId")


QUESTION = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Which kind of kelp?",
        "requestedSchema": {
            "type": "object",
            "properties": {"kind": {"type": "string", "title": "Kind"}},
            "required": ["kind"],
        },
    },
}


ENDED = {"decline": "declined", "cancel": "cancelled"}


ENDED = {"decline": "declined", "cancel": "cancelled"}


class Task:
    def __init__(self, topic: str, seconds: float, *, asks: bool = False) -> None:
        self.task_id = secrets.token_hex(12)
        self.status = "working"
        self.message: str | None = "Researching..."
        self.created = self.updated = _stamp()
        self.result: dict[str, Any] | None = None
        self.asked: dict[str, Any] = {}
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        run = self._survey(topic) if asks else self._run(topic, seconds)
        self.runner = asyncio.get_running_loop().create_task(run)

    async def _run(self, topic: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._complete(f"Report on {topic}")

    async def _survey(self, topic: str) -> None:
        """Asks one question (key q1), then completes with what the answer said."""
        await asyncio.sleep(0.2)
        self.asked = {"q1": QUESTION}
        self.status, self.message, self.updated = "input_required", "Waiting for an answer", _stamp()
        answer = await self.answers.get()
        self.asked = {}
        self.status, self.message, self.updated = "working", "Surveying...", _stamp()
        await asyncio.sleep(0.2)
        kind = (answer.get("content") or {}).get("kind")
        said = (
            f"Survey of {kind} {topic}"
            if answer.get("action") == "accept"
            else f"Survey {ENDED.get(str(answer.get('action')), 'failed')}"
        )
        self._complete(said)

    def _complete(self, text: str) -> None:
        self.result = {"content": [{"type": "text", "text": text}], "isError": False}
        self.status, self.message, self.updated = "completed", "Done", _stamp()

    def wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created,
            "lastUpdatedAt": self.updated,
            "ttlMs": 3_600_000,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.message is not None:
            data["statusMessage"] = self.message
        if self.status == "completed":
            data["result"] = self.result
        if self.status == "input_required":
            data["inputRequests"] = self.asked
        return data


TASKS: dict[str, Task] = {}


class Tasks(Extension):
    identifier = EXTENSION

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self.get),
            MethodBinding("tasks/cancel", TaskParams, self.cancel),
            MethodBinding("tasks/update", TaskParams, self.update),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in ("research", "survey"):
            return await call_next(ctx)
        if not _declares_extension(ctx):
            raise MCPError(MISSING_CAPABILITY, "Missing required client capability")
        arguments = params.arguments or {}
        topic = str(arguments.get("topic", ""))
        task = Task(topic, float(arguments.get("seconds", 0)), asks=params.name == "survey")
        TASKS[task.task_id] = task
        COUNTS[params.name] += 1
        return {"resultType": "task", **task.wire()}

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        return {"resultType": "complete", **_task(params).wire()}

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = _task(params)
        if task.status == "working":
            task.runner.cancel()
            task.status, task.message, task.updated = "cancelled", "Cancelled by the client", _stamp()
            COUNTS["cancelled"] += 1
        return {}

    async def update(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = _task(params)
        responses = (params.model_extra or {}).get("inputResponses") or {}
        for key, answer in responses.items():
            if key in task.asked:  # unknown or already answered keys are ignored
                COUNTS["answers"] += 1
                task.answers.put_nowait(answer)
        return {}


def _task(params: TaskParams) -> Task:
    task = TASKS.get(params.task_id)
    if task is None:
        raise MCPError(INVALID_PARAMS, "Task not found")
    return task


def _declares_extension(ctx: ServerRequestContext[Any, Any]) -> bool:
    meta = ctx.params.get("_meta") if isinstance(ctx.params, dict) else None
    declared = (meta or {}).get("io.modelcontextprotocol/clientCapabilities") or {}
    return EXTENSION in (declared.get("extensions") or {})


def build_server() -> MCPServer:
    mcp = MCPServer("task-extension", version="1.0", log_level="WARNING", extensions=[Tasks()])

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def research(topic: str, seconds: float) -> str:
        """Research a topic for the given number of seconds (runs as a task)."""
        raise RuntimeError("served by the tasks extension")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def survey(topic: str) -> str:
        """Survey a topic; asks which kind first (runs as a task)."""
        raise RuntimeError("served by the tasks extension")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return mcp


async def _calls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = json.dumps(dict(COUNTS)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    mcp = build_server()
    if args.transport == "stdio":
        print("task-extension server starting", file=sys.stderr)
        mcp.run("stdio")
        return
    app = mcp.streamable_http_app()

    async def gate(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/calls":
            await _calls(scope, receive, send)
            return
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(gate, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    main()
