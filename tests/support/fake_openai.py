"""A scripted OpenAI-compatible Chat Completions server, so the real ``openai`` client runs in tests.

    async with fake_openai() as llm:                       # 127.0.0.1, any free port
        client = AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url)
        llm.call_tools(("toy__echo", {"text": "hi"}))      # next answer: one tool call
        llm.reply("Done.")                                 # the answer after that: text
        ...
        llm.requests[1]["messages"][-1]                    # what the client sent (the tool result)

Answers are served in the order they were queued; a request with nothing queued gets a 500
naming the problem, so a test that under-scripts fails loudly instead of hanging. ``fail``
queues an HTTP error in OpenAI's error shape, ``raw`` a 200 with any body (an endpoint that is
not OpenAI-compatible) and ``stall`` an answer that never comes (for timeouts). Requests with
another API key get a 401, and requests with more than 128 tools a 400 (the real API's
``array_above_max_length``), as the real service does.

Every answer carries a ``usage`` as OpenAI's does: ``prompt_tokens`` estimated from the
request (a token per 4 characters of its messages and tools), ``completion_tokens`` from the
answer, ``total_tokens`` their sum; ``served_usage`` lists what each answer said.
``reports_usage = False`` leaves it out, as some OpenAI-compatible servers do.

``refuses`` plays servers that lack part of the API; each refusal is an HTTP 400 sent before
the script is consulted (the request is still recorded):

* ``"tool_choice"``: any request with ``tool_choice`` gets vLLM's answer when it runs without
  ``--enable-auto-tool-choice`` (``"auto" tool choice requires …``; other values get
  ``tool_choice is not supported``);
* ``"parallel_tool_calls"``: any request with it gets ``Unrecognized request argument
  supplied: parallel_tool_calls``;
* ``"tools"``: any request with tools gets vLLM's answer (a server with no tool calling at all);
* ``"stream"`` / ``"stream_options"``: a request with it gets ``Unrecognized request argument
  supplied: …`` (servers without streaming, or without usage in streams).

A request with ``"stream": true`` is answered as OpenAI streams: server-sent events, each a
``chat.completion.chunk`` — the role first, the text ``stream_chunk_chars`` characters at a
time, each tool call as its id and name then its arguments in pieces (by ``index``), the
``finish_reason``, then, when ``stream_options.include_usage`` was asked for, a chunk with no
choices and the ``usage``, and ``data: [DONE]``. ``stream_options`` without ``stream`` is the
real API's 400. ``cut`` queues an answer whose stream breaks off half-way (the connection
closes without ``[DONE]``).

``answer_with(responder)`` serves every request the queue does not cover with
``responder(request_body)``, an assistant message made by ``text_answer`` or ``tool_answer``:
a model scripted per request, for many turns in flight at once (bench/scale.py), where one
queue shared by all of them could not say which answer goes to which turn.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

__all__ = ["FakeOpenAI", "Responder", "fake_openai", "text_answer", "tool_answer"]

API_KEY = "sk-test-fake-openai"
_RAW = "__raw_body__"
MAX_TOOLS = 128
"""OpenAI refuses a request with more tools than this."""
CHARS_PER_TOKEN = 4
"""OpenAI's rule of thumb for English text; enough for counts that grow with the request."""
VLLM_NO_AUTO_TOOL_CHOICE = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)
REFUSABLE = frozenset({"tool_choice", "parallel_tool_calls", "tools", "stream", "stream_options"})
_CUT = "__cut__"
_CALL_IDS = itertools.count(1)

Responder = Callable[[dict[str, Any]], dict[str, Any]]
"""Makes the assistant message that answers one request body."""


def text_answer(content: str) -> dict[str, Any]:
    """An assistant message with text only (the end of a turn)."""
    return {"role": "assistant", "content": content}


def tool_answer(*calls: tuple[str, dict[str, Any] | str], content: str | None = None) -> dict[str, Any]:
    """An assistant message calling tools; a ``str`` argument is sent as-is (even if not JSON)."""
    tool_calls = [
        {
            "id": f"call_{next(_CALL_IDS)}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in calls
    ]
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


class FakeOpenAI:
    """The script, the recorded requests and the server's address."""

    def __init__(self, *, refuses: Iterable[str] = ()) -> None:
        self.base_url = ""
        self.api_key = API_KEY
        self.requests: list[dict[str, Any]] = []
        self.refuses = set(refuses)
        if not self.refuses <= REFUSABLE:
            raise ValueError(f"fake_openai can refuse only {sorted(REFUSABLE)}")
        self.reports_usage = True
        self.served_usage: list[dict[str, int]] = []
        self.stream_chunk_chars = 7
        self.streamed: list[bool] = []
        """Per answer served: whether it was streamed."""
        self._script: deque[tuple[int, dict[str, Any] | None]] = deque()
        self._responder: Responder | None = None
        self._drained = asyncio.Event()

    def reply(self, content: str) -> None:
        """Queue an assistant answer with text only (the end of a turn)."""
        self._script.append((200, text_answer(content)))

    def call_tools(self, *calls: tuple[str, dict[str, Any] | str], content: str | None = None) -> None:
        """Queue an assistant answer calling tools; a ``str`` argument is sent as-is (even if not JSON)."""
        self._script.append((200, tool_answer(*calls, content=content)))

    def answer_with(self, responder: Responder | None) -> None:
        """Answer each request the queue leaves unanswered with ``responder(body)`` (None: stop)."""
        self._responder = responder

    def fail(self, status: int, message: str = "scripted failure") -> None:
        """Queue an HTTP error in OpenAI's error format."""
        self._script.append((status, {"error": {"message": message, "type": "server_error", "code": None}}))

    def raw(self, body: str | dict[str, Any] | list[Any], *, content_type: str = "application/json") -> None:
        """Queue an HTTP 200 whose body is exactly ``body`` (a broken or off-spec endpoint)."""
        text = body if isinstance(body, str) else json.dumps(body)
        self._script.append((200, {_RAW: text, "content_type": content_type}))

    def cut(self, content: str) -> None:
        """Queue a text answer whose stream stops half-way, connection closed (a broken stream)."""
        self._script.append((200, {"role": "assistant", "content": content, _CUT: True}))

    def stall(self) -> None:
        """Queue an answer that never comes: the client's timeout must end the wait."""
        self._script.append((0, None))

    @property
    def pending(self) -> int:
        """Queued answers not served yet."""
        return len(self._script)

    async def drained(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued answer has been served (at most ``timeout_s``)."""
        if self._script:
            self._drained.clear()
            await asyncio.wait_for(self._drained.wait(), timeout_s)

    async def _completions(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            error = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}
            return web.json_response(error, status=401)
        body = await request.json()
        self.requests.append(body)
        tools = body.get("tools") or []
        if len(tools) > MAX_TOOLS:  # checked before the script: the real API refuses first
            message = (
                f"Invalid 'tools': array too long. Expected an array with maximum length {MAX_TOOLS}, "
                f"but got an array with length {len(tools)} instead."
            )
            error = {"message": message, "type": "invalid_request_error", "param": "tools"}
            return web.json_response({"error": {**error, "code": "array_above_max_length"}}, status=400)
        refusal = self._refusal(body)
        if refusal is not None:
            return web.json_response({"error": refusal}, status=400)
        if self._script:
            status, payload = self._script.popleft()
        elif self._responder is not None:
            status, payload = 200, self._responder(body)
        else:
            error = {"error": {"message": "fake_openai: no answer scripted for this request", "type": "test"}}
            return web.json_response(error, status=500)
        if not self._script:
            self._drained.set()
        if payload is None:
            await asyncio.Event().wait()  # stalled until the client gives up and the server closes
        if status != 200:
            return web.json_response(payload, status=status)
        if payload is not None and _RAW in payload:
            return web.Response(text=payload[_RAW], content_type=payload["content_type"])
        assert payload is not None
        cut = bool(payload.pop(_CUT, False))
        self.streamed.append(body.get("stream") is True)
        if body.get("stream") is True:
            return await self._stream(request, body, payload, cut=cut)
        finish = "tool_calls" if payload and payload.get("tool_calls") else "stop"
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": payload, "finish_reason": finish, "logprobs": None}],
        }
        if self.reports_usage:
            answer["usage"] = _usage(body, payload)
            self.served_usage.append(answer["usage"])
        return web.json_response(answer)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], payload: dict[str, Any], *, cut: bool
    ) -> web.StreamResponse:
        """``payload`` as OpenAI streams it (see the module docstring)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": body.get("model", "fake"),
        }

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            await response.write(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        text, size = payload.get("content") or "", max(1, self.stream_chunk_chars)
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        for n, piece in enumerate(pieces):
            if cut and n >= len(pieces) // 2:
                assert request.transport is not None
                request.transport.close()  # no [DONE], no end of the chunked body
                return response
            await send({"content": piece})
        for index, call in enumerate(payload.get("tool_calls") or []):
            function, arguments = call["function"], call["function"]["arguments"]
            head = {"index": index, "id": call["id"], "type": "function"}
            await send({"tool_calls": [{**head, "function": {"name": function["name"], "arguments": ""}}]})
            for i in range(0, len(arguments), size):
                await send(
                    {"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + size]}}]}
                )
        await send({}, "tool_calls" if payload.get("tool_calls") else "stop")
        options = body.get("stream_options") or {}
        if self.reports_usage and isinstance(options, dict) and options.get("include_usage"):
            usage = _usage(body, payload)
            self.served_usage.append(usage)
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _refusal(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The error a server lacking the parameters in ``refuses`` answers, if any."""
        if "tools" in self.refuses and body.get("tools"):
            return _bad_request(VLLM_NO_AUTO_TOOL_CHOICE)
        if "tool_choice" in self.refuses and "tool_choice" in body:
            if body["tool_choice"] == "auto":
                return _bad_request(VLLM_NO_AUTO_TOOL_CHOICE)
            return _bad_request("tool_choice is not supported by this server", param="tool_choice")
        for name in ("parallel_tool_calls", "stream", "stream_options"):
            if name in self.refuses and name in body:
                return _bad_request(f"Unrecognized request argument supplied: {name}")
        if "stream_options" in body and body.get("stream") is not True:
            return _bad_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        return None


def _bad_request(message: str, *, param: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": "BadRequestError", "param": param, "code": 400}


def _usage(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, int]:
    """OpenAI's ``usage`` object, with counts estimated from the request and the answer."""
    asked = json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", []))
    prompt = max(1, len(asked) // CHARS_PER_TOKEN)
    said = (answer.get("content") or "") + json.dumps(answer.get("tool_calls") or "")
    completion = max(1, len(said) // CHARS_PER_TOKEN)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@asynccontextmanager
async def fake_openai(*, refuses: Iterable[str] = ()) -> AsyncIterator[FakeOpenAI]:
    """Serve a ``FakeOpenAI`` (refusing the parameters in ``refuses``, see the module docstring)
    on 127.0.0.1 (any free port) for the duration of the block."""
    fake = FakeOpenAI(refuses=refuses)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake._completions)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()
