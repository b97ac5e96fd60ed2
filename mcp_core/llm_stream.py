"""Reading a streamed chat completion: the model's text as it comes, its tool calls when complete.

With ``stream=True`` the answer arrives as chunks: text deltas, tool calls in pieces (an id and
a name first, then their arguments a few characters at a time, by ``index``), a last chunk
with the ``usage`` when ``stream_options.include_usage`` was asked for. ``read_stream`` puts
them back together into the same shape a non-streamed ``message`` has, so the agent's loop
reads both alike.

The chunks are the model's output, so hostile: any field may be missing or of another type,
and a runaway answer is capped (``MAX_TEXT_CHARS``, ``MAX_CALLS``, ``MAX_ARGUMENT_CHARS``)
instead of filling memory.

Text reaches the surface through ``TextRelay``, in pieces that end at whitespace: the asker's
secrets are redacted from each piece, and a secret never spans two pieces (it has no
whitespace in it), so a piece-by-piece redaction is as good as one over the whole text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StreamedCall", "StreamedMessage", "TextRelay", "read_stream"]

MAX_TEXT_CHARS = 200_000
"""Text kept of one streamed answer; the rest is dropped (Slack shows far less anyway)."""
MAX_CALLS = 128
"""Tool calls kept of one answer (as many as tools may be offered)."""
MAX_ARGUMENT_CHARS = 1_000_000
"""Arguments kept of one call; longer ones are cut, fail to parse and run nothing."""
HELD_BACK_CHARS = 8_192
"""A piece without whitespace is sent once it is this long (no secret is)."""


@dataclass
class StreamedFunction:
    name: str = ""
    arguments: str = ""


@dataclass
class StreamedCall:
    """One tool call, put together from its pieces (shaped like the SDK's, for ``_parse_call``)."""

    id: str = ""
    function: StreamedFunction = field(default_factory=StreamedFunction)


@dataclass
class StreamedMessage:
    """The whole answer: its text, its tool calls (None when it made none) and its usage."""

    content: str = ""
    tool_calls: list[StreamedCall] | None = None
    usage: Any = None
    seen: bool = False
    """Whether any chunk came at all (an endpoint that ignores ``stream`` sends none)."""


class TextRelay:
    """Hands text to ``send`` in redacted pieces that end at whitespace (see the module docstring)."""

    def __init__(self, send: Callable[[str], Awaitable[None]], redact: Callable[[str], str]) -> None:
        self._send = send
        self._redact = redact
        self._held = ""
        self.sent = False
        """Whether any text went out."""

    async def feed(self, text: str) -> None:
        self._held += text
        cut = max(self._held.rfind(" "), self._held.rfind("\n"), self._held.rfind("\t"))
        if cut < 0 and len(self._held) < HELD_BACK_CHARS:
            return
        cut = cut + 1 if cut >= 0 else len(self._held)
        piece, self._held = self._held[:cut], self._held[cut:]
        await self._out(piece)

    async def flush(self) -> None:
        piece, self._held = self._held, ""
        await self._out(piece)

    async def _out(self, piece: str) -> None:
        if piece:
            self.sent = True
            await self._send(self._redact(piece))


async def read_stream(chunks: AsyncIterator[Any], relay: TextRelay | None) -> StreamedMessage:
    """The streamed answer put together; its text also goes to ``relay`` as it arrives
    (flushed at the end, so the surface has all of it before the tool calls run)."""
    message = StreamedMessage()
    calls: dict[int, StreamedCall] = {}
    async for chunk in chunks:
        message.seen = True
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            message.usage = usage
        choices = getattr(chunk, "choices", None)
        if not isinstance(choices, list) or not choices:
            continue
        delta = getattr(choices[0], "delta", None)
        text = getattr(delta, "content", None)
        if isinstance(text, str) and text and len(message.content) < MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - len(message.content)]
            message.content += text
            if relay is not None:
                await relay.feed(text)
        pieces = getattr(delta, "tool_calls", None)
        for piece in pieces if isinstance(pieces, list) else ():
            _add_piece(calls, piece)
    if relay is not None:
        await relay.flush()
    if calls:
        message.tool_calls = [calls[index] for index in sorted(calls)]
    return message


def _add_piece(calls: dict[int, StreamedCall], piece: Any) -> None:
    index = getattr(piece, "index", None)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return
    call = calls.get(index)
    if call is None:
        if len(calls) >= MAX_CALLS:
            return
        call = calls[index] = StreamedCall()
    call_id = getattr(piece, "id", None)
    if isinstance(call_id, str) and call_id and not call.id:
        call.id = call_id[:256]
    function = getattr(piece, "function", None)
    name = getattr(function, "name", None)
    if isinstance(name, str) and name and len(call.function.name) < 256:
        call.function.name += name
    arguments = getattr(function, "arguments", None)
    if isinstance(arguments, str) and len(call.function.arguments) < MAX_ARGUMENT_CHARS:
        call.function.arguments += arguments[: MAX_ARGUMENT_CHARS - len(call.function.arguments)]
