"""Benchmark: time to ack a signed ``/mcp`` slash command in HTTP mode, vs a bare Bolt app.

    .venv/bin/python bench/slack_ack.py [--requests 200] [--concurrency 20] [--rounds 3]
                                        [--subcommands help list] [--database-url postgresql://…]
                                        [--profile] [--output PATH]

One run starts FakeSlack (tests/support/fake_slack.py: Web API and ``response_url``s on its
own thread and loop) and serves two aiohttp apps on ``127.0.0.1`` port 0, each with
``web.AppRunner`` + ``web.TCPSite`` as ``bot.runner.run_bot`` does:

* slack-mcp-bot: ``bot.runner.http_app(services, cards)``, with ``build_services`` on the real store
  (SQLite in a temporary DATA_DIR, or ``--database-url``; rows seeded under a team id of
  this run's own and deleted at the end), with 3 connections of 12 tools seeded per bench
  user so ``list`` has rows to read and render;
* baseline: a minimal Bolt ``AsyncApp`` (same client, signing secret and flags as
  ``create_app``) whose ``/mcp`` listener only acks, served by the same aiohttp adapter.

Each round sends N signed, form-encoded ``/mcp`` requests (``help`` and ``list`` in turn,
8 users) to ``POST /slack/events`` through one ``aiohttp.ClientSession``, at most C in
flight (a semaphore). The ack time runs from just after signing until the whole response
is read; every ack must be 200 with an empty body. The app does its real work after acking
(``list``: a store query and rendering; both: a POST to the fake's ``response_url``); the
time from send until that POST reached the fake is reported as "follow-up", and each
follow-up is checked (ephemeral, not an error, ``list`` has blocks). A phase ends only when
all its follow-ups have arrived, so none spill into the next phase. 20 warm-up requests go
to each app first (the first makes Bolt's cached ``auth.test`` call); app and baseline
phases alternate order every round, and the samples of all rounds are pooled.

Also measured per phase: CPU per request (this thread, which runs the client and both apps;
and the whole process), event-loop lag (a 2 ms timer's lateness), GC runs and their
duration, and new database connections. Each phase starts after a ``gc.collect()``, and
the fake's request log is emptied after each phase: left to grow, it set off ~80 ms full
collections that only the app's phases paid for. At the end, the follow-up work is timed
piece by piece on an idle loop, and one full collection of the process heap is timed.

Bolt polls for the ack every 10 ms (``AsyncioListenerRunner.run``: ``asyncio.sleep(0.01)``
until ``ack.response`` is set), so both sides' ack times sit on that grid; the baseline
shows the floor. With C requests in flight the loop is busy, so an ack waits behind the
other requests' work, including their follow-ups: ack time ≈ C × loop CPU per request.

Everything (client, both servers, the fake) runs in this one process on a shared machine:
absolute numbers include the client's cost; the ratio against the baseline is the result.

Results: bench/results/slack_ack.json, and Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.util.utils import convert_to_dict_list
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event

from bot import texts, views
from bot.commands import USAGE
from bot.runner import SLACK_API_TIMEOUT_S, http_app, load_run_cards
from mcp_core.models import NewConnection, ToolInfo
from mcp_core.services import Services, build_services
from mcp_core.settings import Settings
from tests.support.fake_slack import FORM, TEAM_ID, FakeSlack, sign, slash_command_body

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "slack_ack.json"
WARMUP = 20
TARGET_P99_MS = 100.0
SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
USERS = [f"U0BENCH{n}" for n in range(8)]
SUBCOMMANDS = ("help", "list")  # the default mix, alternating
CONNECTIONS_PER_USER = 3
TOOLS_PER_CONNECTION = 12
FOLLOW_UP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
PARTS_N = 100
SIDES = ("baseline", "app")


@dataclass
class Sample:
    sub: str
    ack_ms: float


@dataclass
class Phase:
    """One batch of N requests to one side."""

    side: str
    round: int
    samples: list[Sample] = field(default_factory=list)
    follow_up_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_ms_per_request: float = 0.0  # whole process: includes the fake's and aiosqlite's threads
    loop_cpu_ms_per_request: float = 0.0  # this thread only: client, both apps, follow-up work
    follow_up_errors: list[str] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)
    gc_ms: list[tuple[int, float]] = field(default_factory=list)  # (generation, duration)
    db_connects: int = 0


class Counter:
    """Counts new DB-API connections the engine opens (its ``connect`` event)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, *_: object) -> None:
        self.n += 1


class LoopWatch:
    """Samples the event loop's lateness with a 2 ms timer, and times GC runs, during a phase."""

    TICK_S = 0.002

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK_S
            await asyncio.sleep(self.TICK_S)
            self.phase.loop_lag_ms.append((loop.time() - due) * 1000)

    def _gc(self, stage: str, info: dict[str, int]) -> None:
        if stage == "start":
            self._gc_started = time.perf_counter()
        else:
            self.phase.gc_ms.append((info["generation"], (time.perf_counter() - self._gc_started) * 1000))

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._tick())
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._gc)
        assert self._task is not None
        self._task.cancel()


# --- the two servers ---------------------------------------------------------------------------


def baseline_app(settings: Settings) -> web.Application:
    """Bare Bolt: the same client and flags as ``bot.app.create_app``, a ``/mcp`` that only acks."""
    assert settings.slack_bot_token is not None
    assert settings.slack_signing_secret is not None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        timeout=SLACK_API_TIMEOUT_S,
        base_url=settings.slack_api_url,
    )
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        request_verification_enabled=True,
        ignoring_self_events_enabled=True,
    )

    @app.command("/mcp")
    async def mcp_command(ack: AsyncAck) -> None:
        await ack()

    return app.web_app(path="/slack/events")


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve like ``run_bot`` does, on 127.0.0.1 port 0; return the runner and the events URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/slack/events"


async def seed(services: Services, team_id: str) -> None:
    """A few connections with tools per bench user, so ``/mcp list`` reads and renders real rows."""
    store = services.store
    tools = [
        ToolInfo(name=f"tool_{n}", description=f"Bench tool number {n}.", read_only=n % 2 == 0)
        for n in range(TOOLS_PER_CONNECTION)
    ]
    for user in USERS:
        for n in range(CONNECTIONS_PER_USER):
            new = NewConnection(
                name=f"bench-{n}", transport="streamable_http", url=f"https://mcp{n}.example.com/mcp"
            )
            connection = await store.create_connection(team_id, user, new)
            await store.save_tools(team_id, user, connection.id, tools, datetime.now(UTC))


async def unseed(services: Services, team_id: str) -> None:
    """Delete the seeded rows (matters with ``--database-url``; the SQLite file is thrown away)."""
    for user in USERS:
        for connection in await services.store.list_connections(team_id, user):
            await services.store.delete_connection(team_id, user, connection.id)


# --- load --------------------------------------------------------------------------------------


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(_percentile(values, 50), 2),
        "p95": round(_percentile(values, 95), 2),
        "p99": round(_percentile(values, 99), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
    }


async def run_phase(
    session: aiohttp.ClientSession,
    fake: FakeSlack,
    url: str,
    *,
    side: str,
    round_no: int,
    n: int,
    concurrency: int,
    team_id: str,
    subcommands: Sequence[str],
    expect_follow_ups: bool,
    db_connects: Counter,
) -> Phase:
    """Send n signed requests, at most ``concurrency`` in flight; wait for every follow-up."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"/respond/{tag}-"
    phase = Phase(side=side, round=round_no)
    semaphore = asyncio.Semaphore(concurrency)
    subs: dict[str, str] = {}  # response_url path -> subcommand
    sent: dict[str, float] = {}  # response_url path -> time.time() at send (the fake stamps with it)

    async def one(i: int) -> None:
        sub = subcommands[i % len(subcommands)]
        path = f"{prefix}{i}"
        body = slash_command_body(
            sub, user_id=USERS[i % len(USERS)], team_id=team_id, response_url=fake.response_url(f"{tag}-{i}")
        )
        async with semaphore:
            headers = {"content-type": FORM, **sign(SECRET, body)}
            sent[path], subs[path] = time.time(), sub
            started = time.perf_counter()
            async with session.post(url, data=body.encode(), headers=headers) as resp:
                payload = await resp.read()
            elapsed = time.perf_counter() - started
        if resp.status != 200 or payload:
            raise RuntimeError(f"{side}: ack was {resp.status} {payload[:200]!r}")
        phase.samples.append(Sample(sub=sub, ack_ms=elapsed * 1000))

    gc.collect()  # every phase starts from the same heap; GC runs *during* the phase are reported
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    connects = db_connects.n
    with LoopWatch(phase):
        await asyncio.gather(*(one(i) for i in range(n)))
        phase.wall_s = time.perf_counter() - wall

        expected = n if expect_follow_ups else 0
        deadline = time.monotonic() + FOLLOW_UP_TIMEOUT_S
        arrived = [r for r in list(fake.requests) if r["method"].startswith(prefix)]
        while len(arrived) < expected:
            if time.monotonic() > deadline:
                late = f"{len(arrived)} of {expected} follow-ups within {FOLLOW_UP_TIMEOUT_S} s"
                raise RuntimeError(f"{side}: {late}")
            await asyncio.sleep(0.005)
            arrived = [r for r in list(fake.requests) if r["method"].startswith(prefix)]
    phase.db_connects = db_connects.n - connects
    phase.cpu_ms_per_request = (time.process_time() - cpu) / n * 1000
    phase.loop_cpu_ms_per_request = (time.thread_time() - loop_cpu) / n * 1000
    if len(arrived) != expected:
        raise RuntimeError(f"{side}: {len(arrived)} follow-ups, expected {expected}")

    # The fake keeps every request it saw; drop them, or they pile up on the heap, phase after
    # phase, and set off slow full collections that only the app's phases (which respond) pay for.
    # Nothing is in flight now: every follow-up has arrived and the baseline never responds.
    fake.requests.clear()
    for record in arrived:
        path = record["method"]
        phase.follow_up_ms.setdefault(subs[path], []).append((record["time"] - sent[path]) * 1000)
        problem = check_follow_up(subs[path], record["body"])
        if problem:
            phase.follow_up_errors.append(problem)
    return phase


def check_follow_up(sub: str, body: dict[str, Any]) -> str | None:
    text = str(body.get("text") or "")
    if text == texts.INTERNAL_ERROR or text.startswith("❌"):
        return f"{sub}: error reply {text[:200]!r}"
    if body.get("response_type") != "ephemeral":
        return f"{sub}: response_type {body.get('response_type')!r}"
    if sub == "list" and not body.get("blocks"):
        return "list: no blocks"
    if sub == "help" and text != USAGE:
        return f"help: unexpected text {text[:200]!r}"
    return None


# --- reporting ---------------------------------------------------------------------------------


def summarize(phases: list[Phase], subcommands: Sequence[str]) -> dict[str, Any]:
    """Pooled stats per side, per subcommand, and per round."""
    summary: dict[str, Any] = {}
    for side in SIDES:
        mine = [p for p in phases if p.side == side]
        acks = [s.ack_ms for p in mine for s in p.samples]
        follow_ups = [ms for p in mine for values in p.follow_up_ms.values() for ms in values]
        summary[side] = {
            "ack_ms": stats(acks),
            "ack_ms_by_subcommand": {
                sub: stats([s.ack_ms for p in mine for s in p.samples if s.sub == sub]) for sub in subcommands
            },
            "follow_up_ms": stats(follow_ups),
            "follow_up_ms_by_subcommand": {
                sub: stats([ms for p in mine for ms in p.follow_up_ms.get(sub, [])]) for sub in subcommands
            },
            "per_round": [
                {
                    "round": p.round,
                    "ack_ms": stats([s.ack_ms for s in p.samples]),
                    "requests_per_s": round(len(p.samples) / p.wall_s, 1),
                    "cpu_ms_per_request": round(p.cpu_ms_per_request, 2),
                    "loop_cpu_ms_per_request": round(p.loop_cpu_ms_per_request, 2),
                }
                for p in mine
            ],
            "cpu_ms_per_request": round(statistics.median(p.cpu_ms_per_request for p in mine), 2),
            "loop_cpu_ms_per_request": round(statistics.median(p.loop_cpu_ms_per_request for p in mine), 2),
            "loop_lag_ms": stats([lag for p in mine for lag in p.loop_lag_ms]),
            "gc": {
                f"gen{gen}": {
                    "runs": len(runs := [ms for p in mine for g, ms in p.gc_ms if g == gen]),
                    "total_ms": round(sum(runs), 1),
                    "max_ms": round(max(runs, default=0.0), 1),
                }
                for gen in range(3)
            },
            "db_connects_per_request": round(sum(p.db_connects for p in mine) / len(acks), 3),
            "follow_up_errors": [e for p in mine for e in p.follow_up_errors],
        }
    app, base = summary["app"]["ack_ms"], summary["baseline"]["ack_ms"]
    summary["ratio_p50"] = round(app["p50"] / base["p50"], 2)
    summary["ratio_p99"] = round(app["p99"] / base["p99"], 2)
    summary["p99_target_ms"] = TARGET_P99_MS
    summary["p99_target_met"] = app["p99"] < TARGET_P99_MS
    return summary


def markdown(report: dict[str, Any], store: str) -> str:
    def row(label: str, s: dict[str, float], extra: str = "") -> str:
        if not s:
            return f"| {label} | – | – | – | – | {extra} |"
        return f"| {label} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {extra} |"

    def cpu(side: dict[str, Any]) -> str:
        return (
            f"CPU/request: loop thread {side['loop_cpu_ms_per_request']:.2f} ms, "
            f"process {side['cpu_ms_per_request']:.2f} ms"
        )

    app, base = report["app"], report["baseline"]
    subs = report["subcommands"]
    mix = "/".join(f"`{sub}`" for sub in subs) + (" alternating" if len(subs) > 1 else "")
    mark = "✅" if report["p99_target_met"] else "⚠"
    lines = [
        f"{report['requests_per_round']} signed `/mcp` slash commands ({mix}) × {report['rounds']} rounds, "
        f"{report['concurrency']} in flight, after {WARMUP} warm-up; store: {store}. Times in ms, pooled "
        f"over rounds (n={app['ack_ms']['n']} per side).",
        "",
        "| Side | p50 | p95 | p99 | max | Note |",
        "|---|---:|---:|---:|---:|---|",
        row("bare Bolt, ack", base["ack_ms"], cpu(base)),
        row("slack-mcp-bot, ack", app["ack_ms"], cpu(app)),
    ]
    if len(subs) > 1:
        lines += [row(f"  ↳ ack, `{sub}`", app["ack_ms_by_subcommand"][sub]) for sub in subs]
    lines.append(row("slack-mcp-bot, follow-up", app["follow_up_ms"], "send → response_url POST at the fake"))
    if len(subs) > 1:
        lines += [row(f"  ↳ follow-up, `{sub}`", app["follow_up_ms_by_subcommand"][sub]) for sub in subs]
    rounds_p99 = ", ".join(f"{r['ack_ms']['p99']:.1f}" for r in app["per_round"])
    base_rounds_p99 = ", ".join(f"{r['ack_ms']['p99']:.1f}" for r in base["per_round"])
    lines += [
        "",
        f"ack p99 ratio (slack-mcp-bot / bare Bolt): **{report['ratio_p99']:.2f}** "
        f"(p50 ratio {report['ratio_p50']:.2f}); slack-mcp-bot ack p99 {app['ack_ms']['p99']:.1f} ms, "
        f"target < {TARGET_P99_MS:g} ms {mark}",
        f"per-round ack p99: slack-mcp-bot {rounds_p99}; bare Bolt {base_rounds_p99}",
    ]
    lines += ["", "| Side | loop lag p99 / max ms | GC gen2 runs (max ms) | new DB connections per request |"]
    lines.append("|---|---:|---:|---:|")
    for label, side in (("bare Bolt", base), ("slack-mcp-bot", app)):
        lag, gen2 = side["loop_lag_ms"], side["gc"]["gen2"]
        lines.append(
            f"| {label} | {lag['p99']:.1f} / {lag['max']:.1f} | {gen2['runs']} ({gen2['max_ms']:.1f}) "
            f"| {side['db_connects_per_request']:.3f} |"
        )
    if report.get("full_gc"):
        g = report["full_gc"]
        lines += [
            "",
            f"A full (gen2) collection of this process's heap ({g['tracked_objects']:,} tracked objects) "
            f"takes {g['full_gc_ms']:.1f} ms, {g['full_gc_after_freeze_ms']:.1f} ms after `gc.freeze()`; "
            "the loop stalls for that long whenever one runs.",
        ]
    if report.get("parts"):
        lines += [
            "",
            f"Follow-up work, piece by piece, {PARTS_N} times each in sequence on an otherwise idle loop:",
            "",
            "| Part | wall p50 ms | loop-thread CPU ms per call |",
            "|---|---:|---:|",
        ]
        for part in report["parts"]:
            lines.append(f"| {part['part']} | {part['wall_p50_ms']:.2f} | {part['loop_cpu_ms']:.2f} |")
    return "\n".join(lines)


def measure_full_gc() -> dict[str, Any]:
    """How long one full collection of this process's heap takes, and after ``gc.freeze()``."""

    def best_of_3() -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            gc.collect()
            times.append((time.perf_counter() - started) * 1000)
        return round(min(times), 1)

    objects = len(gc.get_objects())
    full = best_of_3()
    gc.freeze()
    try:
        frozen = best_of_3()
    finally:
        gc.unfreeze()
    return {"tracked_objects": objects, "full_gc_ms": full, "full_gc_after_freeze_ms": frozen}


async def measure_parts(services: Services, fake: FakeSlack, team_id: str) -> list[dict[str, Any]]:
    """Time what the ``/mcp`` listener does after acking, one piece at a time (``PARTS_N`` calls each)."""
    user = USERS[0]
    connections = await services.store.list_connections(team_id, user)
    respond = AsyncRespond(response_url=fake.response_url("parts"))
    blocks = views.connection_blocks(connections)

    async def list_rows() -> None:
        await services.store.list_connections(team_id, user)

    async def render() -> None:
        convert_to_dict_list(views.connection_blocks(connections))
        texts.list_summary(connections)

    async def respond_help() -> None:
        await respond(text=USAGE, response_type="ephemeral")

    async def respond_list() -> None:
        await respond(text=texts.list_summary(connections), blocks=blocks, response_type="ephemeral")

    parts = [
        (f"`store.list_connections` ({CONNECTIONS_PER_USER} rows × {TOOLS_PER_CONNECTION} tools)", list_rows),
        ("`views.connection_blocks` + Bolt's block → dict conversion", render),
        ("`respond(text=USAGE)` to the fake (`help`)", respond_help),
        ("`respond(blocks=…)` to the fake (`list`; converts the blocks again)", respond_list),
    ]
    results = []
    for label, fn in parts:
        for _ in range(10):
            await fn()
        walls = []
        cpu = time.thread_time()
        for _ in range(PARTS_N):
            started = time.perf_counter()
            await fn()
            walls.append((time.perf_counter() - started) * 1000)
        loop_cpu = (time.thread_time() - cpu) / PARTS_N * 1000
        wall = round(statistics.median(walls), 3)
        results.append({"part": label, "wall_p50_ms": wall, "loop_cpu_ms": round(loop_cpu, 3)})
    return results


async def profile(phase: Callable[[], Awaitable[Phase]]) -> str:
    """cProfile one extra app phase (this thread only: client and both apps, not the fake)."""
    profiler = cProfile.Profile()
    profiler.enable()
    await phase()
    profiler.disable()
    out = io.StringIO()
    for key in ("tottime", "cumulative"):
        out.write(f"\n=== one extra app phase: top 40 by {key} ===\n")
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(40)
    return out.getvalue()


# --- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, fake: FakeSlack, data_dir: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(args.database_url) if args.database_url else None,
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=fake.base_url,
    )
    team_id = f"{TEAM_ID}_{uuid.uuid4().hex[:6].upper()}"  # own rows even in a shared database
    services = await build_services(settings)
    db_connects = Counter()
    event.listen(services.store.engine.sync_engine, "connect", db_connects)
    runners: list[web.AppRunner] = []
    phases: list[Phase] = []
    profile_text = None
    parts: list[dict[str, Any]] = []
    full_gc: dict[str, Any] = {}
    try:
        await seed(services, team_id)
        urls = {}
        for side, app in (
            ("baseline", baseline_app(settings)),
            ("app", http_app(services, load_run_cards(settings))),
        ):
            runner, urls[side] = await serve(app)
            runners.append(runner)
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def phase(side: str, round_no: int, n: int) -> Phase:
                return await run_phase(
                    session,
                    fake,
                    urls[side],
                    side=side,
                    round_no=round_no,
                    n=n,
                    concurrency=args.concurrency,
                    team_id=team_id,
                    subcommands=args.subcommands,
                    expect_follow_ups=side == "app",
                    db_connects=db_connects,
                )

            for side in SIDES:
                await phase(side, 0, WARMUP)
            started = time.monotonic()
            for round_no in range(1, args.rounds + 1):
                order = SIDES if round_no % 2 else tuple(reversed(SIDES))
                for side in order:
                    phases.append(await phase(side, round_no, args.requests))
                print(
                    f"round {round_no}/{args.rounds} done ({time.monotonic() - started:.1f} s)",
                    file=sys.stderr,
                )
            if args.profile:
                profile_text = await profile(lambda: phase("app", 0, args.requests))
        parts = await measure_parts(services, fake, team_id)
        full_gc = measure_full_gc()
        await unseed(services, team_id)
    finally:
        for runner in runners:
            await runner.cleanup()
        await services.aclose()
    summary = summarize(phases, args.subcommands)
    return {
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "warmup": WARMUP,
        "subcommands": list(args.subcommands),
        "users": len(USERS),
        "seeded_connections_per_user": CONNECTIONS_PER_USER,
        "store": settings.sqlalchemy_url.split(":", 1)[0],
        **summary,
        "parts": parts,
        "full_gc": full_gc,
        "profile": profile_text,
        "environment": {
            "python": platform.python_version(),
            "slack_bolt": version("slack_bolt"),
            "aiohttp": version("aiohttp"),
            "sqlalchemy": version("sqlalchemy"),
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per round (default 200)")
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, samples pooled (default 3)")
    parser.add_argument(
        "--subcommands",
        nargs="+",
        default=list(SUBCOMMANDS),
        choices=SUBCOMMANDS,
        help="the mix, sent in turn (default: help list)",
    )
    parser.add_argument(
        "--database-url",
        help="postgresql://… to use instead of SQLite in a temporary DATA_DIR (rows are removed after)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one extra app phase")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mcp_core.credentials").setLevel(logging.ERROR)  # "generated a new key" in tmp

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-slack-ack-") as tmp, FakeSlack() as fake:
        report = asyncio.run(run(args, fake, Path(tmp)))
    report["wall_seconds"] = round(time.monotonic() - started, 1)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    store = "PostgreSQL" if report["store"].startswith("postgresql") else "SQLite (temp DATA_DIR)"
    print(markdown(report, store))
    errors = report["app"]["follow_up_errors"]
    if errors:
        print(f"\n{len(errors)} bad follow-ups, e.g. {errors[:3]}")
    if report["profile"]:
        print(report["profile"])
    print(f"\nwall time {report['wall_seconds']} s; JSON: {args.output}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
