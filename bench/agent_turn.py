"""Benchmark: the bot's own time per agent turn, without the model, the tool or Slack.

    .venv/bin/python bench/agent_turn.py [--turns 500] [--rounds 3] [--database-url URL]
                                         [--profile] [--output PATH]

A turn is a mention answered with one tool call: the thread read back, the person's catalog,
``Agent.run`` with the callbacks ``bot.chat`` gives it (progress board, approval, redaction),
one ``ToolRegistry.call`` of the toy server's ``echo`` over stdio, the answer's blocks. The
real Agent, ToolRegistry, store (and usage recorder) run; the model is an in-process stand-in
for ``AsyncOpenAI`` whose ``chat.completions.create`` hands back canned completions (first a
tool call, then the answer), and Slack is a stand-in Web API client behind the real
``bot.replies.Thread``.

The turn is ``bot.chat.answer_in_thread``, the very code a mention runs, without Bolt's
dispatch (``bench/slack_ack.py`` measures that edge), shown by editing one progress message
(the display ``SLACK_STREAMING=false`` and every streaming fallback use).

Measured per turn: wall time, minus the time spent inside the model stand-in, inside the
Slack stand-in and inside ``ConnectionPool.call_tool`` (the tool: the SDK session and the
server). What remains is the bot's own work. Warm: the session is open and the catalog
cached after the warm-up turns, as for a person's second question. The database is SQLite in
a temporary directory unless ``--database-url`` names PostgreSQL, on which a throwaway
database is created and dropped (as the tests do).

Results: bench/results/agent_turn.json, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from openai.types.chat import ChatCompletion
from sqlalchemy import event

from bot.approvals import ApprovalDesk
from bot.chat import answer_in_thread
from bot.replies import Thread
from mcp_core.agent import Agent
from mcp_core.models import NewConnection
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "servers" / "toy.py"
RESULTS = REPO / "bench" / "results" / "agent_turn.json"
TEAM, USER, CHANNEL = "T0BENCH", "U0BENCH", "C0BENCH"
BOT_USER, BOT_ID = "U0BOT", "B0BOT"
WARMUP = 20
WARMUP_MIN_S = 1.0
"""Warm-up lasts at least this long: the change watch reports this process's own connection
(added before the run) back within SQLITE_POLL_INTERVAL_S, which drops the catalog once."""
TARGET_MEDIAN_MS = 1.0
PG_CONNECT_TIMEOUT_S = 10.0


class Stopwatch:
    """Time spent inside the stand-ins and the tool, to subtract from each turn."""

    def __init__(self) -> None:
        self.outside_s = 0.0

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.outside_s += time.perf_counter() - started

        return wrapper


def _completion(message: dict[str, Any], n: int) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        }
    )


class ScriptedModel:
    """Stands in for ``AsyncOpenAI``: ``chat.completions.create`` alternates a call of
    ``tool`` and a text answer, as objects of the openai package's own types (built once)."""

    def __init__(self, tool: str, watch: Stopwatch) -> None:
        call = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": tool, "arguments": '{"text": "hi"}'},
                }
            ],
        }
        self._answers = [
            _completion(call, 1),
            _completion({"role": "assistant", "content": "It said hi."}, 2),
        ]
        self._next = 0
        self.requests = 0
        self.chat = self
        self.completions = self
        self.create = watch.timed(self._create)

    async def _create(self, **request: Any) -> ChatCompletion:
        assert request["messages"]
        assert request["model"] == "bench"
        self.requests += 1
        answer = self._answers[self._next]
        self._next = 1 - self._next
        return answer


class SlackStandIn:
    """The three Web API methods a turn uses, answered in memory like Slack would."""

    def __init__(self, watch: Stopwatch) -> None:
        self._ts = 0
        self.thread: list[dict[str, Any]] = []
        self.last_edit = ""
        self.chat_postMessage = watch.timed(self._post)
        self.chat_update = watch.timed(self._update)
        self.conversations_replies = watch.timed(self._replies)

    def _next_ts(self) -> str:
        self._ts += 1
        return f"1700000000.{self._ts:06d}"

    def mention(self, text: str) -> dict[str, Any]:
        ts = self._next_ts()
        event = {
            "type": "app_mention",
            "user": USER,
            "channel": CHANNEL,
            "ts": ts,
            "text": f"<@{BOT_USER}> {text}",
        }
        self.thread = [event]
        return event

    async def _post(self, **body: Any) -> dict[str, Any]:
        ts = self._next_ts()
        self.thread.append(
            {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": ts, "text": body["text"]}
        )
        return {"ok": True, "ts": ts, "channel": body["channel"]}

    async def _update(self, **body: Any) -> dict[str, Any]:
        assert body["ts"]
        assert body["text"]
        self.last_edit = body["text"]
        return {"ok": True, "ts": body["ts"]}

    async def _replies(self, **body: Any) -> dict[str, Any]:
        return {"ok": True, "messages": list(self.thread), "has_more": False}


class Turn:
    """One mention answered by ``bot.chat.answer_in_thread``, the code a real mention runs
    once Bolt has dispatched it (``bench/slack_ack.py`` measures the dispatch)."""

    def __init__(self, services: Services, agent: Agent, slack: SlackStandIn) -> None:
        services.agent = agent
        self.services = services
        self.slack = slack
        self.desk = ApprovalDesk()
        self.context = {"bot_user_id": BOT_USER, "bot_id": BOT_ID}
        self.answers: list[str] = []

    async def __call__(self) -> None:
        event = self.slack.mention("echo hi")
        thread = Thread(self.slack, CHANNEL, event["ts"])  # type: ignore[arg-type]  # a stand-in client
        with self.services.registry.limits.turn(TEAM, USER):
            await answer_in_thread(self.services, self.desk, thread, TEAM, USER, event, self.context)
        self.answers.append(self.slack.last_edit)


class Selects:
    """Counts SELECTs on the store's engine (the warm path should make none)."""

    def __init__(self, services: Services) -> None:
        self.seen: list[str] = []
        event.listen(services.store.engine.sync_engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append(" ".join(statement.split())[:200])


async def measure(turn: Turn, watch: Stopwatch, selects: Selects, n: int) -> dict[str, Any]:
    warm_until = time.monotonic() + WARMUP_MIN_S
    for _ in range(WARMUP):
        await turn()
    while time.monotonic() < warm_until:
        await turn()
    selects.seen.clear()
    own, total = [], []
    perf = time.perf_counter
    cpu_started = time.process_time()
    for _ in range(n):
        watch.outside_s = 0.0
        started = perf()
        await turn()
        elapsed = perf() - started
        total.append(elapsed)
        own.append(elapsed - watch.outside_s)
    cpu = time.process_time() - cpu_started
    own.sort()
    total.sort()
    return {
        "turns": n,
        "own_median_ms": statistics.median(own) * 1000,
        "own_p95_ms": own[int(0.95 * (n - 1))] * 1000,
        "turn_median_ms": statistics.median(total) * 1000,
        "cpu_ms_per_turn": cpu / n * 1000,
    }


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    services = await build_services(settings)
    try:
        outcome = await services.registry.add_connection(
            TEAM, USER, NewConnection(name="toy", transport="stdio", command=sys.executable, args=[str(TOY)])
        )
        if outcome.error is not None:
            raise RuntimeError(f"toy server: {outcome.error}")
        watch = Stopwatch()
        services.pool.call_tool = watch.timed(services.pool.call_tool)  # type: ignore[method-assign]
        model = ScriptedModel("toy__echo", watch)
        agent = Agent(model, "bench")  # type: ignore[arg-type]  # an in-process stand-in client
        slack = SlackStandIn(watch)
        turn = Turn(services, agent, slack)
        await turn()
        assert turn.answers[-1] == "It said hi.", turn.answers[-1]
        selects = Selects(services)
        rounds = []
        for round_no in range(args.rounds):
            rounds.append(await measure(turn, watch, selects, args.turns) | {"selects": list(selects.seen)})
            print(
                f"round {round_no + 1}/{args.rounds}: own median {rounds[-1]['own_median_ms']:.3f} ms",
                file=sys.stderr,
            )
        profile_text = None
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.turns):
                await turn()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
            profile_text = out.getvalue()
        await services.usage.flush()
        return {
            "database": services.store.engine.dialect.name,
            "rounds": rounds,
            "own_median_ms": statistics.median(r["own_median_ms"] for r in rounds),
            "own_p95_ms": statistics.median(r["own_p95_ms"] for r in rounds),
            "turn_median_ms": statistics.median(r["turn_median_ms"] for r in rounds),
            "cpu_ms_per_turn": statistics.median(r["cpu_ms_per_turn"] for r in rounds),
            "selects_in_timed_turns": sum(len(r["selects"]) for r in rounds),
            "model_requests": model.requests,
            "profile": profile_text,
        }
    finally:
        await services.aclose()


async def throwaway_postgres(admin_url: str, statement: str) -> None:
    dsn = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    base = {"data_dir": data_dir, "mcp_allowed_hosts": ["127.0.0.1"], "mcp_max_calls_per_minute": 10**9}
    if not args.database_url or args.database_url.startswith("sqlite"):
        return await run(args, Settings(_env_file=None, database_url=args.database_url, **base))  # type: ignore[call-arg]
    name = f"smb_bench_{secrets.token_hex(6)}"
    await throwaway_postgres(args.database_url, f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
        return await run(args, Settings(_env_file=None, database_url=url, **base))  # type: ignore[call-arg]
    finally:
        await throwaway_postgres(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500, help="timed turns per round (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians over rounds (default 3)")
    parser.add_argument(
        "--database-url", help="PostgreSQL admin URL for a throwaway database (default: SQLite)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one more round")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-agent-turn-") as tmp:
        report = asyncio.run(main_async(args, Path(tmp)))
    report["environment"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    mark = "" if report["own_median_ms"] < TARGET_MEDIAN_MS else " ⚠"
    print(f"{args.turns} warm turns × {args.rounds} rounds after {WARMUP} warm-up; medians over rounds.")
    print()
    print("| Database | Bot's own time, median | p95 | Whole turn, median | CPU per turn | SELECTs |")
    print("|---|---:|---:|---:|---:|---:|")
    r = report
    print(
        f"| {r['database']} | {r['own_median_ms']:.3f} ms{mark} | {r['own_p95_ms']:.3f} ms | "
        f"{r['turn_median_ms']:.3f} ms | {r['cpu_ms_per_turn']:.3f} ms | {r['selects_in_timed_turns']} |"
    )
    if report["profile"]:
        print(report["profile"])


if __name__ == "__main__":
    main()
