"""What the bot counts and times, for Prometheus (``GET /metrics``).

    metrics = Metrics()                                   # build_services makes one per Services
    metrics.tool_call_ended("ok", "stdio", 0.12)
    body, content_type = metrics.exposition()             # what /metrics answers

Every metric lives in the ``Metrics`` object's own ``CollectorRegistry``, not in
prometheus_client's global one: tests run several bots in one process, and each must count
its own turns (a global registry would also refuse the second bot's metrics by name).

Labels are bounded sets only — outcomes, transports, the configured model, prompt/completion —
never a team, user, connection or tool name: a metric must not say who did what, and a label
per person or server would grow without end.

Gauges of things other components own (live MCP sessions, open approvals) are read when
Prometheus scrapes (``observe_sessions``, ``observe_open_approvals``): nothing polls, nothing
can drift from the pool's own count.

Turns taken over from a process that died mid-turn (``mcp_core.turn_journal``'s sweeper) are
counted by the process that closed them, by whether they were waiting for a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcp_core.models import Transport

__all__ = [
    "ACK_BUCKETS_S",
    "MODEL_BUCKETS_S",
    "NAMESPACE",
    "TOOL_BUCKETS_S",
    "TURN_BUCKETS_S",
    "Metrics",
    "ModelOutcome",
    "ToolCallOutcome",
    "TurnOutcome",
]

NAMESPACE = "slack_mcp_bot"
TurnOutcome = Literal["answered", "stopped", "failed", "error", "refused", "moved"]
"""How a turn ended: an answer; stopped by the asker; a failure said in the thread (the model
or the store could not answer); an unexpected error; refused before it began (the asker
already had AGENT_MAX_TURNS_PER_USER turns running); moved: its question was answered on
another process, which goes on with it (counted there too, as it ends)."""
ToolCallOutcome = Literal["ok", "tool_error", "failed", "stopped"]
"""How a call sent to a server ended: a result; a result the server marked ``isError``; no
result (timeout, crash, refused, unreachable); stopped with the turn. Calls never sent (unknown
tool, bad arguments, the per-minute limit, a Deny) are not tool calls."""
ModelOutcome = Literal["ok", "failed"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)

ACK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
"""Slack wants its ack within 3 s: the buckets are fine below that."""
TURN_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TOOL_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MODEL_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class Metrics:
    """One bot's metrics, in a registry of its own (``registry``), with typed recorders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)  # memory, CPU, open files of this process
        GCCollector(registry=registry)
        self._turns = Counter(
            "turns", "Agent turns, by how they ended.", ["outcome"], namespace=NAMESPACE, registry=registry
        )
        self._turn_seconds = Histogram(
            "turn_duration_seconds",
            "Whole agent turns: from the mention or DM to the answer shown.",
            namespace=NAMESPACE,
            buckets=TURN_BUCKETS_S,
            registry=registry,
        )
        self._tool_calls = Counter(
            "tool_calls",
            "Tool calls sent to MCP servers, by outcome and transport.",
            ["outcome", "transport"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._tool_seconds = Histogram(
            "tool_call_duration_seconds",
            "Tool calls sent to MCP servers, from sending to the result (or failure), by transport.",
            ["transport"],
            namespace=NAMESPACE,
            buckets=TOOL_BUCKETS_S,
            registry=registry,
        )
        self._model_requests = Counter(
            "model_requests",
            "Requests to the language model (one per round of a turn), by model and outcome.",
            ["model", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._model_seconds = Histogram(
            "model_request_duration_seconds",
            "Requests to the language model, from sending to the whole answer read (streamed or not).",
            ["model"],
            namespace=NAMESPACE,
            buckets=MODEL_BUCKETS_S,
            registry=registry,
        )
        self._tokens = Counter(
            "model_tokens",
            "Tokens the language model endpoint reported in its usage, by model and kind.",
            ["model", "kind"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._ack_seconds = Histogram(
            "slack_ack_duration_seconds",
            "Slack requests, from arrival to the ack sent back (Slack retries after 3 s).",
            namespace=NAMESPACE,
            buckets=ACK_BUCKETS_S,
            registry=registry,
        )
        self._taken_over = Counter(
            "turns_taken_over",
            "Turns of a process that died (or drained) closed by this one, by what they were doing.",
            ["state"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._gauges = _Gauges()
        registry.register(self._gauges)
        for outcome in get_args(TurnOutcome):  # every series exists from the start, at 0
            self._turns.labels(outcome)
        self._tool_series: dict[tuple[str, str], tuple[Any, Any]] = {}
        """Each (outcome, transport)'s counter and histogram children: ``labels()`` takes a
        lock and builds a key on every call, a few µs on every tool call."""

    # -- recorders -----------------------------------------------------------------------

    def turn_ended(self, outcome: TurnOutcome, seconds: float | None = None) -> None:
        """One agent turn ended; ``seconds``: its whole duration (None for a turn refused
        before it began, which would only pull the durations towards 0)."""
        self._turns.labels(outcome).inc()
        if seconds is not None:
            self._turn_seconds.observe(seconds)

    def turn_taken_over(self, waiting: bool) -> None:
        """A dead process's turn was closed here (``waiting``: it was asking a person)."""
        self._taken_over.labels("waiting" if waiting else "working").inc()

    def tool_call_ended(self, outcome: ToolCallOutcome, transport: Transport, seconds: float) -> None:
        """One call sent to a server ended."""
        series = self._tool_series.get((outcome, transport))
        if series is None:
            series = (self._tool_calls.labels(outcome, transport), self._tool_seconds.labels(transport))
            self._tool_series[(outcome, transport)] = series
        calls, durations = series
        calls.inc()
        durations.observe(seconds)

    def model_request_ended(
        self, model: str, outcome: ModelOutcome, seconds: float, tokens: tuple[int, int] | None = None
    ) -> None:
        """One request to the model ended; ``tokens``: the prompt and completion tokens its
        usage reported (None where it reported none)."""
        self._model_requests.labels(model, outcome).inc()
        self._model_seconds.labels(model).observe(seconds)
        if tokens is not None:
            prompt, completion = tokens
            self._tokens.labels(model, "prompt").inc(prompt)
            self._tokens.labels(model, "completion").inc(completion)

    def slack_acked(self, seconds: float) -> None:
        """One Slack request acked, ``seconds`` after it arrived."""
        self._ack_seconds.observe(seconds)

    # -- gauges read at scrape time -----------------------------------------------------

    def observe_sessions(self, by_transport: Callable[[], Mapping[str, int]]) -> None:
        """Live MCP sessions come from ``by_transport()`` (transport → count), read per scrape."""
        self._gauges.sessions.append(by_transport)

    def observe_open_approvals(self, count: Callable[[], int]) -> None:
        """Approve/Deny questions waiting for a click: the sum of every ``count()`` given."""
        self._gauges.approvals.append(count)

    # -- exposition ------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Gauges(Collector):
    """The gauges read from their owners when Prometheus scrapes."""

    def __init__(self) -> None:
        self.sessions: list[Callable[[], Mapping[str, int]]] = []
        self.approvals: list[Callable[[], int]] = []

    def describe(self) -> Iterable[Metric]:
        """The names, without reading the owners (the registry asks at ``register``)."""
        return [_sessions_family(), _approvals_family()]

    def collect(self) -> Iterator[Metric]:
        sessions = _sessions_family()
        live = dict.fromkeys(TRANSPORTS, 0)
        for source in self.sessions:
            for transport, count in source().items():
                if transport in live:
                    live[transport] += count  # type: ignore[index]  # a known transport
        for transport, count in live.items():
            sessions.add_metric([transport], count)
        yield sessions
        approvals = _approvals_family()
        approvals.add_metric([], sum(count() for count in self.approvals))
        yield approvals


def _sessions_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"{NAMESPACE}_mcp_sessions", "Live MCP sessions in the pool, by transport.", labels=["transport"]
    )


def _approvals_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"{NAMESPACE}_open_approvals", "Approve/Deny questions in threads, waiting for the asker's click."
    )
