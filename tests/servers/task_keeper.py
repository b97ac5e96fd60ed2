"""An MCP server over streamable HTTP whose tasks outlive the session that created them.

Run as a script (tests start it as a subprocess):

    python tests/servers/task_keeper.py [--port N]

It speaks protocol 2025-11-25 only, as plain JSON-RPC over POST (`application/json` answers,
which streamable HTTP allows; GET is 405: no server-initiated stream). One tool, `research(topic,
seconds)`, with `execution.taskSupport: "required"`: a plain call is refused, a task-augmented
one is created at once and completes after `seconds` with the text "Report on <topic>".

Tasks are kept in the process, bound to the caller's `Authorization` header (the spec's
"authorization context"), not to the MCP session: a client that lost its session (its process
was restarted) opens a new one and still gets `tasks/get` and `tasks/result` of its task, as
servers with a durable task store do. An unknown task (or another caller's) is JSON-RPC error
-32602. The SDK has no server side for these tasks, hence raw JSON-RPC here.

Prints exactly one line `LISTENING http://127.0.0.1:<port>` to stdout before serving; `/mcp` is
the endpoint; `GET /calls` answers `{"research": N}`, the tasks started, so a test can prove a
task ran exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROTOCOL = "2025-11-25"
POLL_INTERVAL_MS = 300
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
RELATED_TASK = "io.modelcontextprotocol/related-task"
STARTED: Counter[str] = Counter()
TOOL = {
    "name": "research",
    "description": "Research a topic for the given number of seconds (runs as a task).",
    "inputSchema": {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "seconds": {"type": "number"}},
        "required": ["topic", "seconds"],
    },
    "annotations": {"readOnlyHint": True},
    "execution": {"taskSupport": "required"},
}


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Task:
    task_id: str
    owner: str
    ttl: int | None
    status: str = "working"
    message: str | None = "Researching..."
    created: str = field(default_factory=lambda: _stamp())
    updated: str = field(default_factory=lambda: _stamp())
    result: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None

    def wire(self) -> dict[str, Any]:
        data = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created,
            "lastUpdatedAt": self.updated,
            "ttl": self.ttl,
            "pollInterval": POLL_INTERVAL_MS,
        }
        if self.message is not None:
            data["statusMessage"] = self.message
        return data

    def end(self, status: str, message: str | None, result: dict[str, Any] | None) -> None:
        if self.done.is_set():
            return
        self.status, self.message, self.result, self.updated = status, message, result, _stamp()
        self.done.set()


class Keeper:
    """The server: its sessions and its tasks (which are not the sessions')."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.tasks: dict[str, Task] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/calls":
            await _respond(send, 200, dict(STARTED))
            return
        if scope["path"] != "/mcp":
            await _respond(send, 404, {"error": "not found"})
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        session = headers.get("mcp-session-id")
        if scope["method"] == "DELETE":
            self.sessions.discard(session or "")
            await _respond(send, 200, {})
            return
        if scope["method"] != "POST":
            await _respond(send, 405, {"error": "only POST"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        method = request.get("method")
        if method == "initialize":
            session = secrets.token_hex(8)
            self.sessions.add(session)
        elif session not in self.sessions:
            await _respond(send, 404, {"error": "unknown session"})
            return
        if "id" not in request:  # a notification
            await _respond(send, 202, None, session)
            return
        try:
            result = await self.answer(method, request.get("params") or {}, headers.get("authorization", ""))
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        except RpcError as exc:
            error = {"code": exc.code, "message": str(exc)}
            reply = {"jsonrpc": "2.0", "id": request["id"], "error": error}
        await _respond(send, 200, reply, session)

    async def answer(self, method: str, params: dict[str, Any], caller: str) -> dict[str, Any]:
        if method == "initialize":
            return {
                "protocolVersion": PROTOCOL,
                "capabilities": {
                    "tools": {},
                    "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}},
                },
                "serverInfo": {"name": "task-keeper", "version": "1.0"},
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": [TOOL]}
        if method == "tools/call":
            return self.call(params, caller)
        if method in ("tasks/get", "tasks/result", "tasks/cancel"):
            task = self.tasks.get(str(params.get("taskId")))
            if task is None or task.owner != caller:
                raise RpcError(INVALID_PARAMS, "Failed to retrieve task: Task not found")
            if method == "tasks/get":
                return task.wire()
            if method == "tasks/cancel":
                if task.done.is_set():
                    raise RpcError(INVALID_PARAMS, f"Cannot cancel task: already {task.status}")
                if task.runner is not None:
                    task.runner.cancel()
                task.end("cancelled", "Cancelled by the client", None)
                return task.wire()
            await task.done.wait()
            if task.result is None:
                raise RpcError(INVALID_PARAMS, f"Task {task.status}: no result")
            return {**task.result, "_meta": {RELATED_TASK: {"taskId": task.task_id}}}
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")

    def call(self, params: dict[str, Any], caller: str) -> dict[str, Any]:
        if params.get("name") != "research":
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {params.get('name')}")
        if not isinstance(params.get("task"), dict):
            raise RpcError(INVALID_PARAMS, "Tool research requires task augmentation")
        arguments = params.get("arguments") or {}
        topic, seconds = str(arguments.get("topic", "")), float(arguments.get("seconds", 0))
        ttl = params["task"].get("ttl")
        task = Task(secrets.token_hex(12), caller, ttl if isinstance(ttl, int) else None)
        self.tasks[task.task_id] = task
        STARTED["research"] += 1
        task.runner = asyncio.create_task(_research(task, topic, seconds))
        return {"task": task.wire()}


async def _research(task: Task, topic: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    report = {"content": [{"type": "text", "text": f"Report on {topic}"}], "isError": False}
    task.end("completed", "Done", report)


async def _respond(send: Send, status: int, body: Any, session: str | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if session:
        headers.append((b"mcp-session-id", session.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(Keeper(), log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
