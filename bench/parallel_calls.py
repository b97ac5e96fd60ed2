"""Benchmark: one agent turn whose model asks for five read-only tools of one second each.

    .venv/bin/python bench/parallel_calls.py [--calls 5] [--seconds 1] [--rounds 3] [--output PATH]

The turn runs as in production except for the model: the real ``Agent`` (with the real
``openai`` client) talks to the scripted OpenAI-compatible server of the tests
(tests/support/fake_openai.py), which answers the first round with ``--calls`` calls of
``snooze(--seconds)`` and the second with text; the tools run in tests/servers/overlap.py, a
real stdio MCP server (``snooze`` is marked read-only), through the real registry on a
temporary SQLite store (usage recording on, the default sandbox). The wall time of
``Agent.run`` is measured with ``AGENT_PARALLEL_CALLS=1`` (one call after another, as before)
and with the default, alternating every round; the median of the rounds is reported.

Results: bench/results/parallel_calls.json, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from mcp_core.agent import Agent, ToolCall
from mcp_core.models import NewConnection, ToolResult
from mcp_core.services import Services, build_services
from mcp_core.settings import PARALLEL_CALLS, Settings
from tests.support.fake_openai import FakeOpenAI, fake_openai

REPO = Path(__file__).resolve().parents[1]
OVERLAP = REPO / "tests" / "servers" / "overlap.py"
TEAM, USER = "T_BENCH", "U_BENCH"
QUESTION = [{"role": "user", "content": "Look five things up."}]


async def one_turn(
    services: Services, llm: FakeOpenAI, client: AsyncOpenAI, parallel: int, args: Any
) -> float:
    """Seconds one whole turn took (both model rounds and every tool call)."""
    catalog = await services.registry.catalog(TEAM, USER)
    agent = Agent(client, "bench-model", parallel_calls=parallel)
    llm.call_tools(*[("ov__snooze", {"seconds": args.seconds})] * args.calls)
    llm.reply("All looked up.")

    async def call_tool(call: ToolCall) -> ToolResult:
        return await services.registry.call(TEAM, USER, call.name, call.arguments)

    started = time.perf_counter()
    reply = await agent.run(QUESTION, catalog, call_tool)
    elapsed = time.perf_counter() - started
    if [p.state for p in reply.calls] != ["done"] * args.calls or reply.text != "All looked up.":
        raise SystemExit(f"the turn went wrong: {[p.state for p in reply.calls]} {reply.text!r}")
    return elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    modes = {
        "one by one (AGENT_PARALLEL_CALLS=1)": 1,
        f"concurrent (default, {PARALLEL_CALLS})": PARALLEL_CALLS,
    }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(_env_file=None, data_dir=Path(data_dir), database_url=None)  # type: ignore[call-arg]
        services = await build_services(settings)
        try:
            new = NewConnection(name="ov", transport="stdio", command=sys.executable, args=[str(OVERLAP)])
            outcome = await services.registry.add_connection(TEAM, USER, new)
            if outcome.error is not None:
                raise SystemExit(f"could not start {OVERLAP.name}: {outcome.error}")
            async with (
                fake_openai() as llm,
                AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as client,
            ):
                await one_turn(services, llm, client, PARALLEL_CALLS, args)  # warm-up: session open
                for round_ in range(args.rounds):
                    order = list(modes.items()) if round_ % 2 == 0 else list(modes.items())[::-1]
                    for mode, parallel in order:
                        times[mode].append(await one_turn(services, llm, client, parallel, args))
        finally:
            await services.aclose()
    return {
        "calls": args.calls,
        "seconds_per_call": args.seconds,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "results": {mode: {"median_s": statistics.median(t), "all_s": t} for mode, t in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "parallel_calls.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{args.calls} read-only calls of {args.seconds:g} s in one model answer, median of {args.rounds}:\n"
    )
    print("| Calls run | Turn wall time (median) | Rounds |")
    print("|---|---:|---|")
    for mode, result in report["results"].items():
        rounds = ", ".join(f"{t:.2f}" for t in result["all_s"])
        print(f"| {mode} | {result['median_s']:.2f} s | {rounds} |")


if __name__ == "__main__":
    main()
