"""Reading an OpenAI-compatible server's refusal of a request parameter it does not support.

Self-hosted servers (vLLM, Ollama, llama.cpp, LiteLLM proxies) speak chat completions and
tools without all of OpenAI's parameters, and say so with an HTTP 400 whose message names the
parameter: vLLM started without ``--enable-auto-tool-choice`` answers ``"auto" tool choice
requires --enable-auto-tool-choice and --tool-call-parser to be set``, others ``tool_choice is
not supported`` or ``Unrecognized request argument supplied: parallel_tool_calls``. The agent
asks again without the parameter and never sends it to that endpoint again.

The provider's words are only searched here, never shown: they may echo anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import openai

__all__ = ["OPTIONAL_PARAMETERS", "mentions", "refused_parameter"]

OPTIONAL_PARAMETERS = frozenset({"tool_choice", "stream", "stream_options"})
"""What the agent sends that a request can do without (tools still work without
``tool_choice``; an answer read whole instead of streamed is still the answer)."""


def refused_parameter(exc: openai.APIStatusError, sent: Iterable[str]) -> str | None:
    """The parameter of ``sent`` that an HTTP 400 names, or None when it refused something else."""
    if exc.status_code != 400:
        return None
    # The longest name first: a refusal of "stream_options" also mentions "stream".
    return next((name for name in sorted(sent, key=lambda n: (-len(n), n)) if mentions(exc, name)), None)


def mentions(exc: openai.APIStatusError, parameter: str) -> bool:
    """Whether the error names ``parameter``: as the error's ``param``, or in its message,
    with underscores or spaces (``tool_choice`` / vLLM's "tool choice")."""
    if exc.param == parameter:
        return True
    text = f"{exc.message} {exc.body}".lower()
    return parameter in text or parameter.replace("_", " ") in text
