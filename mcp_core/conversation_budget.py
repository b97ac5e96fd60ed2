"""What of a conversation fits the model's input budget, and how many tokens text costs.

A long thread, or a turn whose tools returned a lot, would otherwise grow every request until
the provider refuses it (HTTP 400, "context length exceeded") and the person is told to try
again — which cannot help. Before each request the history is fitted to
``AGENT_MAX_INPUT_TOKENS`` minus what the tools array costs, in this order:

1. tool results of earlier rounds are cut, biggest first, to a head and a note saying how much
   was cut (the newest round's results are what the model is answering from);
2. the oldest thread messages are dropped (the newest one, the question, always stays);
3. the newest round's results are cut, each to its share of what is left;
4. a question too long on its own is cut to its head.

An assistant message that called tools is never dropped apart from its results, so the
conversation stays valid for the API. A cut is made once and kept in the history, so later
rounds send the same bytes (prompt caching) rather than re-cutting differently.

Counting: there is no tokenizer for every OpenAI-compatible model, and tiktoken downloads its
vocabularies at first use (which a locked-down deployment cannot, and which would put a network
fetch on the hot path). So ``TokenCounter`` estimates from characters — ASCII at
``ASCII_CHARS_PER_TOKEN``, other characters a token each, which over-counts English a little,
the safe side — and calibrates itself from what the endpoint reports: each answer's
``usage.prompt_tokens`` against the estimate of the request it answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ASCII_CHARS_PER_TOKEN", "TokenCounter", "fit_history"]

ASCII_CHARS_PER_TOKEN = 3.5
"""English prose is about 4 characters a token, JSON and code about 3."""
MESSAGE_OVERHEAD_TOKENS = 4
"""Each message's role and separators."""
CUT_HEAD_CHARS = 1000
"""What an earlier tool result keeps when it is cut."""
MIN_HEAD_CHARS = 200
"""The least a newest-round result or the question keeps."""
NOTE_TOKENS = MESSAGE_OVERHEAD_TOKENS + 30
"""Room a cut's note takes (``cut_note``), counted before cutting to a share."""
RATIO_BOUNDS = (0.25, 4.0)
"""A calibration outside these is a server's odd report, not the tokenizer."""


def cut_note(removed: int) -> str:
    return f"\n[…{removed:,} more characters cut to fit the conversation into the model's input budget]"


@dataclass
class TokenCounter:
    """Token estimates for one endpoint, calibrated by its own usage reports."""

    ratio: float = 1.0
    """Reported prompt tokens per estimated token, smoothed."""
    _observed: int = field(default=0, repr=False)

    def text(self, text: str) -> int:
        return round(_raw(text) * self.ratio)

    def message(self, message: Mapping[str, Any]) -> int:
        return round(_raw_message(message) * self.ratio)

    def chars(self, count: int) -> int:
        """Tokens of ``count`` characters of JSON-ish ASCII (the tools array)."""
        return round(count / ASCII_CHARS_PER_TOKEN * self.ratio)

    def observe(self, estimated_raw: float, reported: object) -> None:
        """Calibrate from one request: its raw estimate and the ``prompt_tokens`` reported."""
        if not isinstance(reported, int) or isinstance(reported, bool) or reported <= 0 or estimated_raw <= 0:
            return
        low, high = RATIO_BOUNDS
        ratio = min(max(reported / estimated_raw, low), high)
        self._observed += 1
        self.ratio = ratio if self._observed == 1 else (self.ratio + ratio) / 2

    @staticmethod
    def raw_request(messages: Sequence[Mapping[str, Any]], tools_chars: int) -> float:
        """A request's uncalibrated estimate, to hand to ``observe`` with its answer's usage."""
        return sum(_raw_message(m) for m in messages) + tools_chars / ASCII_CHARS_PER_TOKEN


def fit_history(
    history: list[dict[str, Any]], *, budget: int, tools_tokens: int, counter: TokenCounter
) -> list[dict[str, Any]]:
    """``history`` (system message first) fitted to ``budget`` tokens beside the tools; the
    same list when it fits already (the usual case costs one pass of length sums)."""
    room = budget - tools_tokens
    costs = [counter.message(m) for m in history]
    total = sum(costs)
    if total <= room:
        return history
    fitted = [dict(m) for m in history]
    last_round = _last_round_start(fitted)

    def cut(index: int, keep: int) -> None:
        nonlocal total
        content = fitted[index].get("content")
        if not isinstance(content, str) or len(content) <= keep:
            return
        fitted[index]["content"] = content[:keep] + cut_note(len(content) - keep)
        new_cost = counter.message(fitted[index])
        total += new_cost - costs[index]
        costs[index] = new_cost

    earlier = [i for i in range(last_round) if fitted[i].get("role") == "tool"]
    for index in sorted(earlier, key=lambda i: -costs[i]):  # 1. earlier results, biggest first
        if total <= room:
            break
        cut(index, CUT_HEAD_CHARS)
    question = _question_index(fitted)
    dropped: set[int] = set()
    for index in range(1, len(fitted)):  # 2. the oldest thread messages
        if total <= room:
            break
        if index == question or fitted[index].get("role") not in ("user", "assistant"):
            continue
        if fitted[index].get("tool_calls") or index >= last_round:
            continue
        dropped.add(index)
        total -= costs[index]
    newest = [i for i in range(last_round, len(fitted)) if fitted[i].get("role") == "tool"]
    if total > room and newest:  # 3. the newest results, each to its share
        share = max(room - (total - sum(costs[i] for i in newest)), 0) // len(newest)
        for index in newest:
            cut(index, max(MIN_HEAD_CHARS, _chars_for(share - NOTE_TOKENS, counter)))
    if total > room and question is not None:  # 4. the question itself
        over = total - room
        content = str(fitted[question].get("content") or "")
        cut(question, max(MIN_HEAD_CHARS, len(content) - _chars_for(over + NOTE_TOKENS, counter)))
    return [m for i, m in enumerate(fitted) if i not in dropped]


def _raw(text: str) -> float:
    ascii_chars = len(text.encode("ascii", "ignore")) if not text.isascii() else len(text)
    return ascii_chars / ASCII_CHARS_PER_TOKEN + (len(text) - ascii_chars)


def _raw_message(message: Mapping[str, Any]) -> float:
    content = message.get("content")
    cost = MESSAGE_OVERHEAD_TOKENS + (_raw(content) if isinstance(content, str) else 0)
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        cost += _raw(str(function.get("name") or "")) + _raw(str(function.get("arguments") or "")) + 4
    return cost


def _chars_for(tokens: int, counter: TokenCounter) -> int:
    return int(tokens / max(counter.ratio, 1e-6) * ASCII_CHARS_PER_TOKEN)


def _last_round_start(history: Sequence[Mapping[str, Any]]) -> int:
    """Index of the newest assistant message that called tools (its results follow it), or the
    end when the turn has made no call yet."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].get("role") == "assistant" and history[index].get("tool_calls"):
            return index
    return len(history)


def _question_index(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The newest user message: what the turn answers."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].get("role") == "user":
            return index
    return None
