"""The agent loop: an OpenAI-compatible model answers a person using that person's own tools.

Independent of Slack: it takes the conversation, the user's tool catalog, a function that calls
a tool *as that user* (``ToolRegistry.call`` bound to the verified team and user) and two
callbacks — ``on_progress`` (a tool started or ended, for a progress message) and
``ask_approval`` (may this call that changes things run? True, False, or why it could not be
asked, which the model reads). The surface decides how to show progress and how to ask.

Rules, from what users of other Slack+MCP bots ran into:

- Several tool calls per model answer and several rounds per turn, up to ``max_steps`` rounds;
  then the model must answer with what it has (``tool_choice="none"``, or no tools offered at
  all where the endpoint refuses ``tool_choice``).
- Tool failures are data for the model, never exceptions out of the loop: an MCP error, an
  unknown tool, arguments that are not JSON, a Deny click all come back as the tool's result.
- Approval is structural, not a prompt instruction: a call that ``needs_approval`` runs only
  after ``ask_approval`` says yes, and with no way to ask it is refused.
- Read-only calls run at the same time, calls that may write keep the model's order: the
  model's calls are walked in order, consecutive ones whose tool the server marks read-only
  and that need no approval run concurrently (at most ``parallel_calls`` at once); a call that
  may write or asks first waits for them, runs alone, and the walk goes on after it. Writes
  often depend on order, and approvals are asked one at a time. Results go back to the model
  in the model's order whatever order they finished in, and one call failing never stops the
  others.
- A tool call is never retried by the loop (it may have run). Model requests may be retried by
  the OpenAI client (``max_retries``): they change nothing.
- Secrets never reach the model: tool results are already scrubbed by the registry, and the
  model sees tool names, descriptions, schemas and results only. What the model writes back is
  passed through ``redact`` all the same (the asker's secrets), in case something slipped by.
- Words of other people are instructions the asker never gave: when the conversation holds
  any (``others_wrote``), every call of the turn asks the asker first, whatever the policy.
- Never more than ``max_tools`` tools in one request (OpenAI refuses more than 128). Above
  ``preselect_above`` tools the request offers those that rank best against what the person
  asked, plus ``find_tools``, which offers the model's own search's matches from the next round
  on (``mcp_core.tool_selection``). A catalog tool the model names without it being offered
  runs all the same, through the same argument and approval checks: it is the person's tool.
- Requests stay lean: tool definitions are compact (``mcp_core.tool_specs``) and the same bytes
  in every round and turn while the catalog is unchanged (prompt caching); before each request
  the history is fitted to ``max_input_tokens`` (``mcp_core.conversation_budget``: earlier big
  tool results are cut first), with estimates calibrated by the endpoint's reported usage.
- Servers that speak OpenAI's protocol without all of it: an endpoint that refuses
  ``tool_choice`` (HTTP 400 naming it, as vLLM without ``--enable-auto-tool-choice`` does) is
  asked again without it, and this agent never sends it there again (``mcp_core.llm_compat``).
  ``parallel_tool_calls`` is never sent: OpenAI's default is already on, and servers that
  lack it refuse the parameter.
- What each turn cost is reported, not stored: ``AgentReply.usage`` (rounds, the tokens the
  API's ``usage`` reported, tool calls) and ``on_usage``, called once when a turn ends, also
  one that failed after some rounds (those tokens were spent).
- Streamed where the surface can show it (``on_text``): the model is read with ``stream``
  on (``mcp_core.llm_stream``), its text handed on in redacted pieces as it comes; an endpoint
  that refuses ``stream`` or ``stream_options`` is read whole from then on.
- A person can stop a turn (``stop``): what is in flight is cancelled — the SDK tells the
  servers — nothing else starts, and the answer says how far it got. A cancelled call is not
  retried: it may have run.
- The model's output is hostile too: an answer that is not a chat completion, a choice without
  a message, a tool call without an id are all an ``LlmError`` or a failed call, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from mcp_core import errors, llm_compat, tool_selection, tool_specs
from mcp_core.conversation_budget import TokenCounter, fit_history
from mcp_core.llm_stream import TextRelay, read_stream
from mcp_core.metrics import Metrics
from mcp_core.models import ApprovalPolicy, CatalogEntry, ToolResult, TurnUsage
from mcp_core.rich_results import Attachment
from mcp_core.settings import (
    MAX_AGENT_STEPS,
    MAX_AGENT_TOOLS,
    MAX_INPUT_TOKENS,
    PARALLEL_CALLS,
    TOOL_PRESELECT_ABOVE,
)
from mcp_core.tool_catalog import without_optional_nulls
from mcp_core.turn_checkpoint import Checkpoint, CheckpointCall, EndedCall, Resume

__all__ = [
    "MAX_STEPS",
    "SYSTEM_PROMPT",
    "Agent",
    "AgentReply",
    "ApprovalPolicy",
    "ToolCall",
    "ToolProgress",
    "ToolRunner",
    "TurnUsage",
    "approval_rule",
    "needs_approval",
]

logger = logging.getLogger(__name__)

MAX_STEPS = MAX_AGENT_STEPS
SYSTEM_PROMPT = (
    "You are a helpful assistant in Slack. You can use the tools of the person you are talking "
    "to; they come from MCP servers that person connected. Use them when they help, several if "
    "needed, and say briefly what you did. If a tool fails or a call is denied, say so and "
    "suggest what to try. Never ask for passwords or tokens: the person connects servers with "
    "`/mcp connect`. Answer in Slack mrkdwn, concisely."
)

EMPTY_ANSWER = "(The model gave no answer. Try rephrasing the question.)"
NOT_A_COMPLETION = (
    "The language model endpoint answered with something that is not an OpenAI-compatible chat "
    "completion. Ask an admin to check OPENAI_BASE_URL and OPENAI_MODEL."
)
STOPPED = "Stopped."
STREAM_BROKEN = "The language model stopped answering mid-way. Try again in a moment."
TOOLS_REFUSED = (
    "The language model endpoint refuses requests with tools (a vLLM server needs "
    "--enable-auto-tool-choice and --tool-call-parser). Ask an admin to enable tool calling there."
)

Message = Mapping[str, Any]
ToolRunner = Callable[["ToolCall"], Awaitable[ToolResult]]
"""Runs one call as the asking user; it gets the whole call, so a surface can tie what the
server says mid-call (progress, questions) to that call's display."""


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for; ``entry`` is None when the name is not in the catalog."""

    id: str
    name: str
    arguments: dict[str, Any]
    entry: CatalogEntry | None


@dataclass(frozen=True)
class ToolProgress:
    """A call's state for the progress display: ``pending`` as soon as the model asked for it,
    ``running`` once it is sent, then how it ended (``stopped``: the person stopped the turn
    before it ended, or before it started)."""

    call: ToolCall
    state: Literal["pending", "running", "done", "failed", "denied", "stopped"]
    result: ToolResult | None = None
    error: errors.McpCoreError | None = None
    """Why a failed call failed, when the registry raised (a ``SignInRequiredError`` makes
    the Slack layer show a sign-in button in the thread)."""
    note: str | None = None
    """While ``running``: what the server last said about its progress ("2 of 4 — indexing"),
    for the call's line or task card."""
    task_id: str | None = None
    """While ``running``: the id of the MCP task the server runs the call as (kept with the
    turn, so a takeover can say the call may still be running on the server)."""


@dataclass
class AgentReply:
    """The turn's answer and what happened on the way."""

    text: str
    steps: int
    calls: list[ToolProgress] = field(default_factory=list)
    usage: TurnUsage = field(default_factory=lambda: TurnUsage(model=""))
    """What the turn cost: its rounds, the tokens the API reported, the tool calls made."""
    streamed: bool = False
    """Whether ``text`` already went out through ``on_text``, whole; when False the surface
    shows ``text`` itself (an empty answer's apology, a stop, no streaming)."""
    stopped: bool = False
    """The person stopped the turn: ``text`` says how far it got."""
    asked: int = 0
    """Tool calls the model asked for (``find_tools`` searches aside)."""
    ran: int = 0
    """Of those, the ones sent to their server that ended (with a result or an error)."""
    round_calls: list[ToolCall] = field(default_factory=list, init=False, repr=False)
    """The current round's calls, in the model's order (what a stop ends, if still open)..."""
    round_ended: dict[int, ToolProgress] = field(default_factory=dict, init=False, repr=False)
    """...and how those that ended did, by ``id()`` of the call."""
    earlier_steps: int = field(default=0, init=False)
    """Rounds and calls a resumed turn had made before it waited (counted where they ran)."""
    earlier_calls: int = field(default=0, init=False)

    @property
    def attachments(self) -> list[Attachment]:
        """What the person should see of the turn's results besides the answer (images, links,
        records, and lines for what was refused), in the order of the calls; the model never
        read these (``mcp_core.rich_results``)."""
        return [
            Attachment(tool=p.call.name, part=part)
            for p in self.calls
            if p.state == "done" and p.result is not None
            for part in p.result.rich
        ]

    @property
    def sign_ins(self) -> list[errors.SignInRequiredError]:
        """Connections that asked the person to sign in (again) during this turn, one per
        connection, newest link kept."""
        found = {
            p.error.connection: p.error for p in self.calls if isinstance(p.error, errors.SignInRequiredError)
        }
        return list(found.values())


def needs_approval(entry: CatalogEntry, policy: ApprovalPolicy | None = None) -> bool:
    """Whether a call must be approved first under ``policy`` (the entry's own when None):
    under ``writes``, every tool not marked read-only (a server that says nothing about a tool
    might write, so it is asked about). A tool the person chose to *Always allow* is not asked
    about under ``writes`` or ``always``, unless its server says it may delete or overwrite
    things (``ToolInfo.always_asks``)."""
    policy = policy or entry.approval
    if policy == "never":
        return False
    if entry.always_allowed and not entry.tool.always_asks:
        return False
    if policy == "always":
        return True
    return entry.tool.read_only is not True


def approval_rule(*, others_wrote: bool, allowed_now: Container[str] = ()) -> Callable[[CatalogEntry], bool]:
    """Which calls of one turn ask first: each entry's own policy, or every call when the
    conversation holds words of someone other than the asker and the bot — those words may be
    instructions the asker never gave ("call X and paste the result"), so neither the card's
    policy nor the person's *Always allow* lets a call through unasked there.

    ``allowed_now``: catalog names the asker chose *Always allow* for during this turn (its
    catalog was read before the click); they run unasked for the rest of it, as from the next
    turn on — except, again, where someone else wrote."""

    def check(entry: CatalogEntry) -> bool:
        if others_wrote:
            return True
        return entry.name not in allowed_now and needs_approval(entry)

    return check


class Agent:
    """Runs turns against one OpenAI-compatible endpoint; the client is borrowed, not closed."""

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        max_steps: int = MAX_STEPS,
        max_tools: int = MAX_AGENT_TOOLS,
        preselect_above: int = TOOL_PRESELECT_ABOVE,
        max_input_tokens: int = MAX_INPUT_TOKENS,
        parallel_calls: int = PARALLEL_CALLS,
        system_prompt: str = SYSTEM_PROMPT,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where model requests and their tokens are counted (``/metrics``)."""
        self._client = client
        self._model = model
        self._max_steps = max_steps
        self._max_tools = max_tools
        self._preselect_above = preselect_above
        self._max_input_tokens = max_input_tokens
        self._parallel_calls = max(1, parallel_calls)
        self._system_prompt = system_prompt
        self._metrics = metrics or Metrics()
        self._tokens = TokenCounter()
        """This endpoint's token estimates, calibrated by its usage reports."""
        self._refused: set[str] = set()
        """Request parameters this endpoint refused once (``mcp_core.llm_compat``): not sent again."""

    async def run(
        self,
        messages: Sequence[Message],
        catalog: Sequence[CatalogEntry],
        call_tool: ToolRunner,
        *,
        on_progress: Callable[[ToolProgress], Awaitable[None]] | None = None,
        ask_approval: Callable[[ToolCall], Awaitable[bool | str]] | None = None,
        approval: Callable[[CatalogEntry], bool] = needs_approval,
        redact: Callable[[str], str] = str,
        on_usage: Callable[[TurnUsage], None] | None = None,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        stop: asyncio.Event | None = None,
        on_wait: Callable[[Checkpoint], Awaitable[None]] | None = None,
        resume: Resume | None = None,
        on_round: Callable[[Checkpoint], None] | None = None,
    ) -> AgentReply:
        """Answer the conversation ``messages`` (``role``/``content`` dicts, oldest first).

        ``call_tool(call)`` runs a catalog tool as the asking user. ``approval``
        says which entries need ``ask_approval`` first. ``redact`` cleans the answer's text.
        ``on_usage`` gets the turn's ``TurnUsage`` once it ends, answered or not, when the
        model answered at least once (it must not block: it is called from a ``finally``).

        ``on_text``: the model is read streamed, and its text goes here as it comes, redacted,
        in pieces that end at whitespace — every round's, also words written before tool
        calls. ``AgentReply.streamed`` says whether the answer went out whole that way.

        ``stop``: once set, the turn ends at once: calls in flight are cancelled (the SDK tells
        their servers, ``notifications/cancelled``), none starts, the model is not asked
        again, and the reply says how far it got ("Stopped — ran 2 of 3 tools.").

        ``on_wait``: given where the turn stands (``mcp_core.turn_checkpoint``) just before
        each ``ask_approval``, so that the question can be answered on another process;
        ``resume``: go on from such a checkpoint with the person's answer instead of starting
        (``messages`` is then not read). A resumed turn's ``on_usage`` counts its own rounds.
        ``on_round``: given where the turn stands each time a model answer's calls are about to
        run (the conversation so far and each call's exact arguments), to keep with the turn;
        it must not block.

        Raises:
            LlmError: the model could not be reached or refused the request.
        """
        reply = AgentReply(text="", steps=0, usage=TurnUsage(model=self._model))
        relay = TextRelay(on_text, redact) if on_text is not None else None
        hooks = _Hooks(call_tool, on_progress, ask_approval, approval, on_wait, on_round)
        turn = asyncio.ensure_future(self._turn(reply, messages, catalog, hooks, redact, relay, resume))
        try:
            if stop is None:
                return await turn
            if await _first_of(turn, stop):
                return turn.result()
            await _cancelled(turn)
            return await _stopped(reply, on_progress)
        except BaseException:
            turn.cancel()  # our own caller gave up: the turn must not run on, unowned
            raise
        finally:
            rounds = reply.steps - reply.earlier_steps
            counts = {"rounds": rounds, "tool_calls": len(reply.calls) - reply.earlier_calls}
            reply.usage = reply.usage.model_copy(update=counts)
            if on_usage is not None and rounds:
                on_usage(reply.usage)

    async def _turn(
        self,
        reply: AgentReply,
        messages: Sequence[Message],
        catalog: Sequence[CatalogEntry],
        hooks: _Hooks,
        redact: Callable[[str], str],
        relay: TextRelay | None,
        resume: Resume | None,
    ) -> AgentReply:
        by_name = {entry.name: entry for entry in catalog}
        history: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt}]
        restored: _Round | None = None
        if resume is None:
            query = tool_selection.conversation_query(messages)
            chosen = tool_selection.preselect(
                catalog, query, max_tools=self._max_tools, above=self._preselect_above
            )
            offered, searching = chosen.offered, chosen.searching
            history += [dict(message) for message in messages]
        else:
            checkpoint = resume.checkpoint
            offered = [by_name[name] for name in checkpoint.offered if name in by_name]
            searching = checkpoint.searching
            history += [dict(message) for message in checkpoint.history]
            restored = _restored(reply, checkpoint, resume.answer, by_name)
        search = [tool_selection.find_tools_spec(len(catalog))] if searching else []
        tools = tool_specs.function_specs(offered) + search
        tools_chars = tool_specs.array_chars(tools)
        while True:
            if restored is not None:
                round_, restored = restored, None
            else:
                allow_tools = bool(tools) and reply.steps < self._max_steps
                history = fit_history(
                    history,
                    budget=self._max_input_tokens,
                    tools_tokens=self._tokens.chars(tools_chars),
                    counter=self._tokens,
                )
                estimate = TokenCounter.raw_request(history, tools_chars)
                if relay is not None:
                    relay.sent = False
                message, tokens = await self._timed_complete(
                    history, tools, allow_tools=allow_tools, relay=relay
                )
                if tokens is not None and (allow_tools or "tool_choice" not in self._refused):
                    self._tokens.observe(estimate, tokens[0])  # tools were sent, as estimated
                reply.steps += 1
                reply.usage = reply.usage.plus(tokens)
                tool_calls = (message.tool_calls or []) if allow_tools else []
                if not tool_calls:
                    reply.text = redact(_text(message.content)) or EMPTY_ANSWER
                    reply.streamed = relay is not None and relay.sent and reply.text != EMPTY_ANSWER
                    reply.usage = reply.usage.model_copy(update={"answered": True})
                    return reply
                calls = [_parse_call(raw, index, by_name) for index, raw in enumerate(tool_calls)]
                history.append(
                    {
                        "role": "assistant",
                        "content": _text(message.content) or None,
                        "tool_calls": [call.wire() for call in calls],
                    }
                )
                round_ = _Round(calls)
                for index, call in enumerate(calls):
                    if searching and call.name == tool_selection.FIND_TOOLS:
                        room = self._max_tools - len(tools) - len(round_.added)
                        found = _find_tools(call, catalog, [*offered, *round_.added], room)
                        round_.added += found.added
                        round_.answers[index] = found.text
                    else:
                        round_.runs.append(index)
                if hooks.on_round is not None and round_.runs:
                    hooks.on_round(_checkpoint(reply, history, round_, [*offered, *round_.added], searching))
            checkpoint_of = functools.partial(
                _checkpoint, reply, history, round_, [*offered, *round_.added], searching
            )
            await self._play(reply, round_, hooks, checkpoint_of)
            # In the order of the model's calls, whatever order they finished in.
            history += [
                {"role": "tool", "tool_call_id": call.id, "content": answer}
                for call, answer in zip(round_.calls, round_.answers, strict=True)
            ]
            if round_.added:  # appended, so the tools array's start stays as it was (prompt caching)
                offered = [*offered, *round_.added]
                tools = [*tools, *tool_specs.function_specs(round_.added)]
                tools_chars = tool_specs.array_chars(tools)

    async def _play(
        self,
        reply: AgentReply,
        round_: _Round,
        hooks: _Hooks,
        checkpoint_of: Callable[[ToolCall], Checkpoint],
    ) -> None:
        """Run the round's calls of the person's tools (from the waiting one on, when the
        round was restored) and put what the model reads of each into ``round_.answers``."""
        on_progress = hooks.on_progress

        async def sent(call: ToolCall) -> ToolResult:
            try:
                result = await hooks.call_tool(call)
            except errors.McpCoreError:
                reply.ran += 1
                raise
            reply.ran += 1
            return result

        async def ask(call: ToolCall) -> bool | str:
            if hooks.on_wait is not None:
                await hooks.on_wait(checkpoint_of(call))
            return await hooks.ask_approval(call) if hooks.ask_approval is not None else False

        ask_approval = ask if hooks.ask_approval is not None else None

        async def run_one(call: _ParsedCall, answered: bool | str | None = None) -> ToolProgress:
            progress = await self._run_call(call, sent, on_progress, ask_approval, hooks.approval, answered)
            reply.round_ended[id(call)] = progress
            if on_progress is not None:  # every call, run or not, is in the tool summary
                await on_progress(progress)
            return progress

        running = [round_.calls[index] for index in round_.runs]
        ended = list(round_.ended)
        if round_.answer is None:
            reply.asked += len(running)
        reply.round_calls = running
        reply.round_ended = {id(p.call): p for p in ended}
        rest = running[len(ended) :]
        if on_progress is not None:
            for call in rest:
                await on_progress(ToolProgress(call, "pending"))
        if round_.answer is not None and rest:  # the restored round's waiting call, answered
            ended.append(await run_one(rest[0], round_.answer))
            rest = rest[1:]
        ran = ended + await self._run_calls(rest, run_one, hooks.approval)
        reply.round_calls, reply.round_ended = [], {}
        for index, progress in zip(round_.runs, ran, strict=True):
            reply.calls.append(progress)
            restored = round_.restored_answers.get(index)
            round_.answers[index] = restored if restored is not None else _for_model(progress)

    async def _run_calls(
        self,
        calls: Sequence[_ParsedCall],
        run_one: Callable[[_ParsedCall], Awaitable[ToolProgress]],
        approval: Callable[[CatalogEntry], bool],
    ) -> list[ToolProgress]:
        """Run the calls of one model answer: consecutive read-only calls that need no
        approval together (at most ``parallel_calls`` at once), every other call alone, after
        the ones before it ended. The results come back in the calls' order."""
        done: list[ToolProgress] = []
        batch: list[_ParsedCall] = []
        for call in calls:
            entry = call.entry
            if entry is not None and entry.tool.read_only is True and not approval(entry):
                batch.append(call)
                continue
            done += await self._run_together(batch, run_one)
            batch = []
            done.append(await run_one(call))
        return done + await self._run_together(batch, run_one)

    async def _run_together(
        self, calls: Sequence[_ParsedCall], run_one: Callable[[_ParsedCall], Awaitable[ToolProgress]]
    ) -> list[ToolProgress]:
        """Run ``calls`` concurrently, bounded. Failed calls are results already; should a call
        raise all the same (a progress callback failing), the others still run to their end,
        since a started tool call may have done its work, and the first exception is raised."""
        if len(calls) <= 1 or self._parallel_calls == 1:
            return [await run_one(call) for call in calls]
        slots = asyncio.Semaphore(self._parallel_calls)

        async def bounded(call: _ParsedCall) -> ToolProgress:
            async with slots:
                return await run_one(call)

        ended = await asyncio.gather(*(bounded(call) for call in calls), return_exceptions=True)
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in ended if isinstance(outcome, ToolProgress)]

    async def _run_call(
        self,
        call: _ParsedCall,
        call_tool: ToolRunner,
        on_progress: Callable[[ToolProgress], Awaitable[None]] | None,
        ask_approval: Callable[[ToolCall], Awaitable[bool | str]] | None,
        approval: Callable[[CatalogEntry], bool],
        answered: bool | str | None = None,
    ) -> ToolProgress:
        """One call: checked, asked about where ``approval`` says so (unless ``answered``
        already: a resumed turn's waiting call), then sent."""
        entry = call.entry
        if entry is None:
            return ToolProgress(call, "failed", _error(f"There is no tool named “{call.name[:64]}”."))
        if not call.arguments_ok:
            return ToolProgress(
                call, "failed", _error("The arguments were not a JSON object; nothing was run.")
            )
        answer: bool | str = True
        if answered is not None:
            answer = answered
        elif approval(entry):
            answer = await ask_approval(call) if ask_approval is not None else False
        if answer is not True:
            why = answer if isinstance(answer, str) else "The person denied this call; it was not run."
            return ToolProgress(call, "denied", _error(why))
        if on_progress is not None:
            await on_progress(ToolProgress(call, "running"))
        try:
            result = await call_tool(call)
        except errors.SignInRequiredError as exc:
            text = f"{exc.connection} needs the person to sign in again; a Sign in button is shown to them."
            return ToolProgress(call, "failed", _error(text), exc)
        except errors.McpCoreError as exc:  # tool failures are data for the model
            return ToolProgress(call, "failed", _error(str(exc)), exc)
        return ToolProgress(call, "failed" if result.is_error else "done", result)

    def _tool_parameters(self, tools: list[dict[str, Any]], *, allow_tools: bool) -> dict[str, Any]:
        """``tools`` and ``tool_choice`` for one request. Once offered, tools stay declared and
        ``"none"`` stops further calls; where ``tool_choice`` was refused, the last round
        offers no tools instead (and any call in its answer is ignored)."""
        if not tools:
            return {}
        if "tool_choice" in self._refused:
            return {"tools": tools} if allow_tools else {}
        return {"tools": tools, "tool_choice": "auto" if allow_tools else "none"}

    def _stream_parameters(self) -> dict[str, Any]:
        """``stream`` (and the usage in its last chunk), unless this endpoint refused them."""
        if "stream" in self._refused:
            return {}
        if "stream_options" in self._refused:
            return {"stream": True}
        return {"stream": True, "stream_options": {"include_usage": True}}

    async def _timed_complete(
        self,
        history: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        allow_tools: bool,
        relay: TextRelay | None,
    ) -> tuple[Any, tuple[int, int] | None]:
        """``_complete``, counted and timed for ``/metrics`` (a stop's cancellation is not a
        request that ended: not counted)."""
        started = time.perf_counter()
        try:
            message, tokens = await self._complete(history, tools, allow_tools=allow_tools, relay=relay)
        except errors.LlmError:
            self._metrics.model_request_ended(self._model, "failed", time.perf_counter() - started)
            raise
        self._metrics.model_request_ended(self._model, "ok", time.perf_counter() - started, tokens)
        return message, tokens

    async def _complete(
        self,
        history: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        allow_tools: bool,
        relay: TextRelay | None = None,
    ) -> tuple[Any, tuple[int, int] | None]:
        """The model's message, and the prompt and completion tokens its ``usage`` reported;
        read streamed when there is a ``relay`` for its text (where the endpoint streams).

        Raises:
            LlmError: as ``run`` says.
        """
        while True:  # each pass leaves out one more refused parameter, so this ends
            extra = self._tool_parameters(tools, allow_tools=allow_tools)
            if relay is not None:
                extra |= self._stream_parameters()
            try:
                response = await self._client.chat.completions.create(
                    model=self._model,
                    messages=history,  # type: ignore[arg-type]
                    **extra,
                )
                if extra.get("stream"):
                    return await _read_streamed(response, relay)
                break
            except openai.APIResponseValidationError:
                raise errors.LlmError(NOT_A_COMPLETION) from None
            except openai.BadRequestError as exc:
                refused = llm_compat.refused_parameter(exc, extra.keys() & llm_compat.OPTIONAL_PARAMETERS)
                if refused is None:
                    tools_refused = "tools" in extra and llm_compat.mentions(exc, "tool_choice")
                    text = TOOLS_REFUSED if tools_refused else None
                    raise errors.LlmError(text or _llm_failure(exc)) from None
                logger.warning("the model endpoint refused %s; asking again without it from now on", refused)
                self._refused.add(refused)
            except openai.OpenAIError as exc:
                raise errors.LlmError(_llm_failure(exc)) from None
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise errors.LlmError(NOT_A_COMPLETION)
        if not choices:
            raise errors.LlmError("The language model returned no answer. Try again in a moment.")
        message = getattr(choices[0], "message", None)
        if message is None or not hasattr(message, "content"):
            raise errors.LlmError(NOT_A_COMPLETION)
        tool_calls = getattr(message, "tool_calls", None)
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise errors.LlmError(NOT_A_COMPLETION)
        if relay is not None:  # the endpoint does not stream: the text goes out whole
            await relay.feed(_text(message.content))
            await relay.flush()
        return message, _tokens(getattr(response, "usage", None))


async def _read_streamed(stream: Any, relay: TextRelay | None) -> tuple[Any, tuple[int, int] | None]:
    """A streamed answer read to its end (closed however the reading ends, also on a stop).

    Raises:
        LlmError: the stream broke off, or was not a stream of chat completion chunks.
    """
    if not hasattr(stream, "__aiter__"):
        raise errors.LlmError(NOT_A_COMPLETION)
    try:
        message = await read_stream(stream, relay)
    except (openai.APIConnectionError, ValueError):  # cut off (timeouts too), or not JSON
        raise errors.LlmError(STREAM_BROKEN) from None
    except openai.OpenAIError as exc:  # an error event in the stream
        raise errors.LlmError(_llm_failure(exc)) from None
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            await close()
    if not message.seen:
        raise errors.LlmError(NOT_A_COMPLETION)
    return message, _tokens(message.usage)


async def _first_of(turn: asyncio.Future[AgentReply], stop: asyncio.Event) -> bool:
    """Wait for the turn or the stop, whichever comes first: True when the turn ended."""
    if stop.is_set():
        return False
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({turn, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return turn.done()


async def _cancelled(turn: asyncio.Future[AgentReply]) -> None:
    """Cancel the turn and wait until it has unwound (its tool calls' servers told)."""
    turn.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await turn
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError  # our own caller is cancelling us too


async def _stopped(
    reply: AgentReply, on_progress: Callable[[ToolProgress], Awaitable[None]] | None
) -> AgentReply:
    """The stopped turn's reply: its open calls marked stopped, and how far it got."""
    for call in reply.round_calls:
        ended = reply.round_ended.get(id(call))
        reply.calls.append(ended or ToolProgress(call, "stopped"))
        if ended is None and on_progress is not None:
            try:
                await on_progress(reply.calls[-1])
            except Exception:  # boundary: the display failing must not lose the reply
                logger.warning("could not show a stopped call", exc_info=True)
    reply.round_calls, reply.round_ended = [], {}
    reply.stopped = True
    reply.text = STOPPED
    if reply.asked:
        tools = "tool" if reply.asked == 1 else "tools"
        reply.text = f"Stopped — ran {reply.ran} of {reply.asked} {tools}."
    return reply


@dataclass(frozen=True)
class _Hooks:
    """The surface's side of a turn (see ``Agent.run``)."""

    call_tool: ToolRunner
    on_progress: Callable[[ToolProgress], Awaitable[None]] | None
    ask_approval: Callable[[ToolCall], Awaitable[bool | str]] | None
    approval: Callable[[CatalogEntry], bool]
    on_wait: Callable[[Checkpoint], Awaitable[None]] | None
    on_round: Callable[[Checkpoint], None] | None = None


@dataclass
class _Round:
    """One model answer's calls: by position, ``runs`` (the person's tools; the others are
    ``find_tools`` searches, answered at once) and what the model reads of each. A restored
    round also has the calls that ended before the wait and the person's ``answer``."""

    calls: list[_ParsedCall]
    runs: list[int] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    added: list[CatalogEntry] = field(default_factory=list)
    ended: list[ToolProgress] = field(default_factory=list)
    restored_answers: dict[int, str] = field(default_factory=dict)
    answer: bool | str | None = None

    def __post_init__(self) -> None:
        if not self.answers:
            self.answers = [""] * len(self.calls)  # by position: the model's ids may repeat


def _checkpoint(
    reply: AgentReply,
    history: list[dict[str, Any]],
    round_: _Round,
    offered: Sequence[CatalogEntry],
    searching: bool,
    waiting: ToolCall | None = None,
) -> Checkpoint:
    """Where the turn stands as it asks about ``waiting`` (``mcp_core.turn_checkpoint``), or,
    without one, as its round's calls are about to run (``waiting`` -1: nothing to resume).
    Approvals are asked one at a time and never beside running calls, so every call of the
    round before ``waiting`` has ended and none after it has started."""
    position = -1 if waiting is None else next(i for i, call in enumerate(round_.calls) if call is waiting)
    ran_before = [round_.calls[i] for i in round_.runs if i < position]
    this_round = [reply.round_ended[id(call)] for call in ran_before]
    return Checkpoint(
        history=history[1:],  # the system prompt is the resuming process's own
        calls=[CheckpointCall(id=c.id, name=c.name, raw_arguments=c.raw_arguments) for c in round_.calls],
        runs=round_.runs,
        answers={i: round_.answers[i] for i in range(len(round_.calls)) if i not in round_.runs},
        waiting=position,
        offered=[entry.name for entry in offered],
        searching=searching,
        steps=reply.steps,
        asked=reply.asked,
        ran=reply.ran,
        ended=[_ended(p) for p in reply.calls] + [_ended(p, _for_model(p)) for p in this_round],
        round_ended=len(this_round),
    )


def _ended(progress: ToolProgress, answer: str | None = None) -> EndedCall:
    state = progress.state if progress.state in ("done", "failed", "denied", "stopped") else "failed"
    return EndedCall(id=progress.call.id, name=progress.call.name, state=state, answer=answer)  # type: ignore[arg-type]


def _restored(
    reply: AgentReply, checkpoint: Checkpoint, answer: bool | str, by_name: Mapping[str, CatalogEntry]
) -> _Round:
    """The waiting round of ``checkpoint`` against today's catalog (a tool gone since is a
    failed call, as any unknown name), with the turn's counts; earlier calls come back as
    their outcomes only (they are not run again)."""
    calls = [
        _parse_call(_Raw(c.id, c.name, c.raw_arguments), i, by_name) for i, c in enumerate(checkpoint.calls)
    ]
    earlier = checkpoint.ended[: len(checkpoint.ended) - checkpoint.round_ended]
    this_round = checkpoint.ended[len(earlier) :]
    reply.steps = reply.earlier_steps = checkpoint.steps
    reply.asked, reply.ran = checkpoint.asked, checkpoint.ran
    reply.calls = [ToolProgress(ToolCall(c.id, c.name, {}, by_name.get(c.name)), c.state) for c in earlier]
    reply.earlier_calls = len(reply.calls)
    round_ = _Round(calls, runs=list(checkpoint.runs), answer=answer)
    for index, text in checkpoint.answers.items():
        if 0 <= index < len(calls):
            round_.answers[index] = text
    for index, ended in zip(round_.runs, this_round, strict=False):
        round_.ended.append(ToolProgress(calls[index], ended.state))
        round_.restored_answers[index] = ended.answer or ""
    return round_


@dataclass(frozen=True)
class _Raw:
    """A stored call in the shape of the model's (for ``_parse_call``)."""

    id: str
    name: str
    arguments: str

    @property
    def function(self) -> _Raw:
        return self


@dataclass(frozen=True)
class _Found:
    added: list[CatalogEntry]
    text: str


def _find_tools(
    call: _ParsedCall, catalog: Sequence[CatalogEntry], offered: Sequence[CatalogEntry], room: int
) -> _Found:
    """A ``find_tools`` call: the tools its query brings in, and what the model reads about them."""
    query = call.arguments.get("query") if call.arguments_ok else None
    if not isinstance(query, str) or not query.strip():
        return _Found([], "Error: find_tools needs a “query”: a few words saying what the tool should do.")
    added = tool_selection.find_more(catalog, query, offered, room=room)
    return _Found(added, tool_selection.found_text(query, added, full=room <= 0))


@dataclass(frozen=True)
class _ParsedCall(ToolCall):
    raw_arguments: str = "{}"
    arguments_ok: bool = True
    """False when the model's arguments were not a JSON object (nothing is run)."""

    def wire(self) -> dict[str, Any]:
        """The call as it goes back to the model in the conversation."""
        function = {"name": self.name, "arguments": self.raw_arguments}
        return {"id": self.id, "type": "function", "function": function}


def _parse_call(raw: Any, index: int, by_name: Mapping[str, CatalogEntry]) -> _ParsedCall:
    """One tool call of the model's answer, read defensively (it may be any shape)."""
    name = getattr(getattr(raw, "function", None), "name", None)
    name = name if isinstance(name, str) else ""
    call_id = getattr(raw, "id", None)
    call_id = call_id if isinstance(call_id, str) and call_id else f"call_{index}"
    raw_arguments = getattr(getattr(raw, "function", None), "arguments", None)
    raw_arguments = raw_arguments if isinstance(raw_arguments, str) else "{}"
    try:
        arguments = json.loads(raw_arguments or "{}")
    except ValueError:
        arguments = None
    ok = isinstance(arguments, dict)
    entry = by_name.get(name)
    if ok and entry is not None:  # what the person approves is exactly what will be sent
        arguments = without_optional_nulls(entry.tool.input_schema, arguments)
    return _ParsedCall(
        id=call_id,
        name=name,
        arguments=arguments if ok else {},
        entry=entry,
        raw_arguments=raw_arguments,
        arguments_ok=ok,
    )


def _tokens(usage: object) -> tuple[int, int] | None:
    """Prompt and completion tokens of a response's ``usage``, or None where it has none
    (or something that is not two counts: the endpoint's output is not trusted)."""
    counts = (getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return None
    return counts  # type: ignore[return-value]


def _text(content: object) -> str:
    return content.strip() if isinstance(content, str) else ""


def _error(text: str) -> ToolResult:
    return ToolResult(text=text, is_error=True)


def _for_model(progress: ToolProgress) -> str:
    result = progress.result
    if result is None:
        return ""
    if result.is_error:
        return f"Error: {result.text}"
    return result.text + ("\n[output truncated]" if result.truncated else "")


def _llm_failure(exc: openai.OpenAIError) -> str:
    """What went wrong, in words fit for Slack: never the provider's message (it may echo the key)."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "The language model refused the bot's API key. Ask an admin to check OPENAI_API_KEY."
    if isinstance(exc, openai.RateLimitError):
        return "The language model is rate-limiting the bot. Try again in a minute."
    if isinstance(exc, openai.APITimeoutError):
        return "The language model took too long to answer. Try again in a moment."
    if isinstance(exc, openai.APIConnectionError):
        return "The language model could not be reached. Ask an admin to check OPENAI_BASE_URL."
    if isinstance(exc, openai.NotFoundError):
        return "The language model does not know the configured model. Ask an admin to check OPENAI_MODEL."
    if isinstance(exc, openai.APIStatusError):
        return f"The language model answered with an error (HTTP {exc.status_code}). Try again in a moment."
    logger.warning("unexpected LLM client failure: %s", type(exc).__name__)
    return "The language model could not answer. Try again in a moment."
