"""Benchmark: two bot processes on one PostgreSQL, many turns at once, one process killed mid-run.

    .venv/bin/python bench/scale.py [--turns 50] [--snooze-s 2] [--rate 50] [--both-share 0.1]
                                    [--lease-s 2] [--output PATH]

Everything real but Slack and the model: two ``slack-mcp-bot run --http`` processes on one
throwaway PostgreSQL database, the toy MCP server over streamable HTTP (``--snooze``: a
read-only ``snooze(seconds, tag)`` tool, so no approval is asked, which counts its calls per
tag), the fake Slack Web API (``SLACK_API_URL``) and the scripted OpenAI-compatible server
answering each request from its own messages (``answer_with``): the first round of a turn
calls ``snooze`` with the turn's tag, the second answers ``Answered <tag>.``.

Each run sends ``--turns`` mentions per process (``2 × turns`` threads, one person each, each
with their own connection to the toy server), ``--rate`` per second, as signed HTTP events; a
``--both-share`` of them is delivered to both processes at once (the same ``event_id``, as a
load balancer or Slack's retry can do). An event a process does not take (refused
connection, or 503 while draining) is sent again to the other process with
``X-Slack-Retry-Num``, as Slack retries and a load balancer routes it to a live process.

Two runs, the same in all but one thing:

* **baseline**: both processes live to the end;
* **kill**: once half of process A's turns have started their tool call, A gets SIGKILL.
  Its turns are closed by B's sweeper once A's lease (``--lease-s``, set as ``TURN_LEASE_S``;
  the default 30 s would only make the bench slower) has run out.

Then the bench waits until every thread is settled (answered, or closed with a message) or
``settle`` seconds pass, and reports from the fake Slack's traffic, the toy server's call
counts and the database:

* duplicates: threads with more than one progress message, more than one answer, an answer
  and a restart notice both, or a tool call run more than once (target 0);
* orphans: threads whose progress message still says Thinking, threads never answered nor
  closed, turn rows still live in ``mcp_turns`` (target 0);
* answered or closed with a message: the share of threads (target 100 %);
* p50 / p95 turn time: from sending the event to the thread's last message or edit.

Results: bench/results/scale.json, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot import texts  # noqa: E402
from mcp_core.models import NewConnection  # noqa: E402
from tests.credentials.conftest import pg_database  # noqa: E402
from tests.support.fake_openai import FakeOpenAI, fake_openai, text_answer, tool_answer  # noqa: E402
from tests.support.fake_slack import (  # noqa: E402
    JSON,
    TEAM_ID,
    FakeSlack,
    app_mention_event,
    event_body,
    sign,
)
from tests.support.registry import make_settings, open_services  # noqa: E402
from tests.support.servers import RunningServer, start_http_server  # noqa: E402

RESULTS = REPO / "bench" / "results" / "scale.json"
SECRET = "scale-signing-secret"
KEYS = "k1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="  # 32 bytes, base64: bench only
TOOL = "toy__snooze"
TAG = re.compile(r"\bturn-\d+\b")
START_TIMEOUT_S = 60.0
SEND_TIMEOUT_S = 10.0
SETTLE_EXTRA_S = 60.0
"""How long past the last expected event the bench waits for threads to settle."""
RESTARTED = "⚠️ I was restarted"


@dataclass
class Turn:
    """One thread: its mention, where it was sent and what Slack saw of it."""

    tag: str
    user: str
    target: int
    both: bool
    event: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0
    taken_by: list[int] = field(default_factory=list)
    retried: bool = False


@dataclass
class Outcome:
    """What one run measured."""

    name: str
    turns: int
    answered: int
    closed: int
    duplicates: int
    orphans: int
    live_rows: int
    retried: int
    delivered_to_both: int
    tool_runs: int
    most_runs_of_one_call: int
    p50_s: float
    p95_s: float
    killed_at_s: float | None
    problems: list[str]

    @property
    def settled_share(self) -> float:
        return (self.answered + self.closed) / self.turns if self.turns else 1.0


class SlackLog:
    """Every chat.postMessage and chat.update the bots made, with when the fake got it."""

    def __init__(self, fake: FakeSlack) -> None:
        self.posts: list[tuple[float, dict[str, Any], str]] = []
        self.updates: list[tuple[float, dict[str, Any]]] = []
        self._fake = fake
        self._lock = threading.Lock()
        fake.overrides["chat.postMessage"] = self._post
        fake.overrides["chat.update"] = self._update

    def _post(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        payload, headers = self._fake._canned("chat.postMessage", body)
        with self._lock:
            self.posts.append((time.monotonic(), body, payload["ts"]))
        return 200, headers, payload

    def _update(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        payload, headers = self._fake._canned("chat.update", body)
        with self._lock:
            self.updates.append((time.monotonic(), body))
        return 200, headers, payload

    def thread(self, turn: Turn) -> ThreadView:
        thread_ts = turn.event["ts"]
        with self._lock:
            posts = [(t, b, ts) for t, b, ts in self.posts if b.get("thread_ts") == thread_ts]
            owned = {ts for _, b, ts in posts}
            updates = [(t, b) for t, b in self.updates if b.get("ts") in owned]
        return ThreadView(turn, posts, updates)


@dataclass
class ThreadView:
    """One thread as Slack shows it now."""

    turn: Turn
    posts: list[tuple[float, dict[str, Any], str]]
    updates: list[tuple[float, dict[str, Any]]]

    @property
    def progress(self) -> list[str]:
        return [ts for _, body, ts in self.posts if str(body.get("text", "")).startswith("🤔")]

    def final_text(self, ts: str) -> str:
        edits = [str(body.get("text", "")) for _, body in self.updates if body.get("ts") == ts]
        posted = [str(body.get("text", "")) for _, body, posted_ts in self.posts if posted_ts == ts]
        return (edits or posted or [""])[-1]

    @property
    def answers(self) -> int:
        wanted = f"Answered {self.turn.tag}."
        edited = {body.get("ts") for _, body in self.updates if wanted in str(body.get("text", ""))}
        posted = {ts for _, body, ts in self.posts if wanted in str(body.get("text", ""))}
        return len(edited | posted)

    @property
    def restart_notices(self) -> int:
        return sum(1 for _, body, _ in self.posts if str(body.get("text", "")).startswith(RESTARTED))

    @property
    def thinking(self) -> bool:
        return any(self.final_text(ts).startswith("🤔") for ts in self.progress)

    @property
    def closed(self) -> bool:
        finals = [self.final_text(ts) for ts in self.progress]
        return self.restart_notices > 0 and all(text == texts.INTERRUPTED for text in finals)

    @property
    def settled(self) -> bool:
        return (self.answers > 0 or self.closed) and not self.thinking

    @property
    def last_at(self) -> float:
        return max([t for t, _, _ in self.posts] + [t for t, _ in self.updates], default=0.0)


def per_request(snooze_s: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The model: a turn's first round calls snooze with its tag, the round after the tool answers."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        found = TAG.findall(json.dumps(messages))
        tag = found[-1] if found else "turn-unknown"
        if messages and messages[-1].get("role") == "tool":
            return text_answer(f"Answered {tag}.")
        return tool_answer((TOOL, {"seconds": snooze_s, "tag": tag}))

    return answer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bot:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def start_bot(
    fake: FakeSlack, llm: FakeOpenAI, database_url: str, work: Path, name: str, lease_s: float
) -> Bot:
    port = _free_port()
    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "DATA_DIR": str(home / "data"),
        "SLACK_BOT_TOKEN": "xoxb-scale-bench",
        "SLACK_API_URL": fake.base_url,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_STREAMING": "false",
        "CREDENTIAL_KEYS": KEYS,
        "OPENAI_API_KEY": llm.api_key,
        "OPENAI_BASE_URL": llm.base_url,
        "MCP_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "TURN_LEASE_S": str(lease_s),
        "LOG_LEVEL": "WARNING",
    }
    log = home / "output.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--http", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    bot = Bot(process, f"http://127.0.0.1:{port}/slack/events", log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bot {name} exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return bot
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"bot {name} never became healthy:\n{log.read_text()[-3000:]}")


def stop_bot(bot: Bot) -> None:
    if bot.process.poll() is None:
        bot.process.send_signal(signal.SIGTERM)
        try:
            bot.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            bot.process.kill()
            bot.process.wait()


async def connect_everyone(database_url: str, work: Path, toy: RunningServer, users: list[str]) -> None:
    """Each person's own connection to the toy server, made through the registry (as /mcp connect)."""
    settings = make_settings(work / "setup", database_url=database_url, credential_keys=KEYS)
    async with open_services(settings) as services:  # migrates the database too
        for user in users:
            new = NewConnection(name="toy", transport="streamable_http", url=toy.url)
            outcome = await services.registry.add_connection(TEAM_ID, user, new)
            if outcome.error is not None:
                raise RuntimeError(f"could not connect {user}: {outcome.error}")


async def deliver(session: aiohttp.ClientSession, bots: list[Bot], turn: Turn, live: list[bool]) -> None:
    """Send the mention as Slack does; a process that does not take it makes Slack retry elsewhere."""
    body = event_body(turn.event, team_id=TEAM_ID)
    targets = [turn.target, 1 - turn.target] if turn.both else [turn.target]

    async def post(index: int, retry: int) -> bool:
        headers = {"content-type": JSON, **sign(SECRET, body)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"}
        try:
            async with session.post(bots[index].url, data=body.encode(), headers=headers) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    turn.sent_at = time.monotonic()
    taken = await asyncio.gather(*(post(i, 0) for i in targets))
    turn.taken_by = [i for i, ok in zip(targets, taken, strict=True) if ok]
    retry = 0
    while not turn.taken_by and retry < 3:
        retry += 1
        turn.retried = True
        others = [i for i in range(len(bots)) if live[i]]
        for index in others:
            if await post(index, retry):
                turn.taken_by = [index]
                break
        else:
            await asyncio.sleep(0.5)


def tool_counts(toy: RunningServer) -> Counter[str]:
    with urllib.request.urlopen(f"{toy.base_url}/calls", timeout=5) as response:
        return Counter(json.load(response))


async def live_rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM mcp_turns WHERE state IN ('running', 'waiting')")
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_once(name: str, args: argparse.Namespace, *, kill: bool) -> Outcome:
    """One run: fresh fakes, database, toy server and two bots."""
    turns = [
        Turn(tag=f"turn-{n}", user=f"U0SCALE{n:04d}", target=n % 2, both=False) for n in range(2 * args.turns)
    ]
    every = max(1, round(1 / args.both_share)) if args.both_share > 0 else 0
    for n, turn in enumerate(turns):
        turn.both = bool(every) and n % every == every - 1
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp, FakeSlack() as fake:
        work = Path(tmp)
        log = SlackLog(fake)
        async with (
            fake_openai() as llm,
            start_http_server("--snooze") as toy,
            pg_database() as database_url,
        ):
            llm.answer_with(per_request(args.snooze_s))
            await connect_everyone(database_url, work, toy, [t.user for t in turns])
            bots = await asyncio.gather(
                *(
                    asyncio.to_thread(start_bot, fake, llm, database_url, work, n, args.lease_s)
                    for n in ("a", "b")
                )
            )
            live = [True, True]
            killed_at: float | None = None
            started = time.monotonic()
            try:
                killer = asyncio.create_task(_kill_midway(bots, turns, toy, live)) if kill else None
                timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    sends = []
                    for turn in turns:
                        turn.event = app_mention_event(
                            f"please rest a moment ({turn.tag})", user_id=turn.user
                        )
                        sends.append(asyncio.create_task(deliver(session, bots, turn, live)))
                        await asyncio.sleep(1 / args.rate)
                    await asyncio.gather(*sends)
                if killer is not None:
                    killed_at = await killer
                deadline = time.monotonic() + args.lease_s + args.snooze_s + SETTLE_EXTRA_S
                while True:  # polled: the fake's log is written on its own thread
                    if time.monotonic() > deadline or all(log.thread(t).settled for t in turns):
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)  # anything late (a duplicate) still lands
                counts = await asyncio.to_thread(tool_counts, toy)
                rows = await live_rows(database_url)
            finally:
                for bot in bots:
                    await asyncio.to_thread(stop_bot, bot)
            problems = _problems(bots)
    return _outcome(name, turns, log, counts, rows, started, killed_at, problems)


async def _kill_midway(bots: list[Bot], turns: list[Turn], toy: RunningServer, live: list[bool]) -> float:
    """SIGKILL process A once half of its turns started their tool call; when, since the start."""
    began = time.monotonic()
    mine = [t.tag for t in turns if t.target == 0 and not t.both]
    while True:
        counts = await asyncio.to_thread(tool_counts, toy)
        if sum(1 for tag in mine if counts.get(f"snooze:{tag}")) >= len(mine) / 2:
            break
        await asyncio.sleep(0.05)
    live[0] = False
    bots[0].process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(bots[0].process.wait)
    return time.monotonic() - began


def _problems(bots: list[Bot]) -> list[str]:
    found = []
    for name, bot in zip("ab", bots, strict=True):
        output = bot.log.read_text(errors="replace")
        if "Traceback" in output:
            found.append(f"bot {name} logged a traceback: {output[output.index('Traceback') :][:600]}")
    return found


def _outcome(
    name: str,
    turns: list[Turn],
    log: SlackLog,
    counts: Counter[str],
    rows: int,
    started: float,
    killed_at: float | None,
    problems: list[str],
) -> Outcome:
    views = [log.thread(t) for t in turns]
    runs = [counts.get(f"snooze:{t.tag}", 0) for t in turns]
    duplicates = sum(
        1
        for view, ran in zip(views, runs, strict=True)
        if len(view.progress) > 1 or view.answers > 1 or (view.answers and view.restart_notices) or ran > 1
    )
    answered = sum(1 for v in views if v.answers and not v.thinking)
    closed = sum(1 for v in views if not v.answers and v.closed)
    unsettled = [v for v in views if not v.settled]
    times = [v.last_at - v.turn.sent_at for v in views if v.settled]
    for view in unsettled[:5]:
        problems.append(
            f"{view.turn.tag} (sent to {'ab'[view.turn.target]}, taken by {view.turn.taken_by}) not settled: "
            f"posts {[str(b.get('text'))[:60] for _, b, _ in view.posts]}"
        )
    return Outcome(
        name=name,
        turns=len(turns),
        answered=answered,
        closed=closed,
        duplicates=duplicates,
        orphans=len(unsettled) + rows,
        live_rows=rows,
        retried=sum(1 for t in turns if t.retried),
        delivered_to_both=sum(1 for t in turns if t.both),
        tool_runs=counts.get("snooze", 0),
        most_runs_of_one_call=max(runs, default=0),
        p50_s=percentile(times, 50),
        p95_s=percentile(times, 95),
        killed_at_s=killed_at,
        problems=problems,
    )


def markdown(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    base = outcomes[0]
    lines = [
        f"2 processes × {args.turns} turns (each: model → `snooze({args.snooze_s})` → model), "
        f"{args.rate}/s, {base.delivered_to_both} delivered to both, TURN_LEASE_S={args.lease_s}; "
        f"{platform.python_version()}, {os.cpu_count()} cores",
        "",
        "| Run | Turns | Answered | Closed with a message | Answered or closed | Duplicates | Orphans "
        "| Tool runs (most of one call) | Retried elsewhere | p50 turn | p95 turn | p95 vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        killed = f" (A killed at {o.killed_at_s:.1f} s)" if o.killed_at_s is not None else ""
        ratio = o.p95_s / base.p95_s if base.p95_s else 0.0
        lines.append(
            f"| {o.name}{killed} | {o.turns} | {o.answered} | {o.closed} | {o.settled_share:.0%} "
            f"| {o.duplicates} "
            f"| {o.orphans} | {o.tool_runs} ({o.most_runs_of_one_call}) | {o.retried} | {o.p50_s:.2f} s "
            f"| {o.p95_s:.2f} s | {ratio:.2f}× |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="turns per process")
    parser.add_argument("--snooze-s", type=float, default=2.0, help="how long each turn's tool call takes")
    parser.add_argument("--rate", type=float, default=50.0, help="mentions sent per second")
    parser.add_argument("--both-share", type=float, default=0.1, help="share of events delivered to both")
    parser.add_argument("--lease-s", type=float, default=2.0, help="TURN_LEASE_S of both processes")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace) -> list[Outcome]:
    return [await run_once("baseline", args, kill=False), await run_once("kill -9 A", args, kill=True)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes = asyncio.run(bench(args))
    print(markdown(outcomes, args))
    for outcome in outcomes:
        for problem in outcome.problems:
            print(f"{outcome.name}: {problem}", file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": [o.__dict__ for o in outcomes]}
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    ok = all(o.duplicates == 0 and o.orphans == 0 and o.settled_share == 1.0 for o in outcomes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
