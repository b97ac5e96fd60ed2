"""A call its remote server runs as an MCP task outlives the bot process that sent it: real
`slack-mcp-bot run --http` processes on one PostgreSQL, the fake Slack, the scripted OpenAI
server and either `tests/servers/task_keeper.py` (2025-11-25 tasks, kept per caller, not per
session) or `tests/servers/task_extension.py` (the 2026-07-28 Tasks extension).

The process that takes the turn over tells the thread the task is still running and that its
result will come, follows it on a session of its own (with the person's own token), and posts
the result in the thread. If that process dies too, the next one follows it without telling
the thread again. The task is created once and never sent again; the model is not asked again.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from bot import texts
from mcp_core.models import NewConnection
from tests.credentials.conftest import pg_database
from tests.slack.agent_harness import record_posts
from tests.slack.test_turn_takeover import KEYS, USER, WAIT_S, World, kill
from tests.support.fake_openai import fake_openai
from tests.support.fake_slack import TEAM_ID, FakeSlack
from tests.support.registry import make_settings, open_services
from tests.support.servers import RunningServer, start_task_extension, start_task_keeper

from .test_process import _stop
from .test_stop_processes import stop_value
from .test_turn_resume import click, wait_told

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

RESEARCH = "keeper__research"
BEARER = "Bearer keeper-token-5b1f"


@pytest.fixture
def fake() -> AsyncIterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@asynccontextmanager
async def keeper_world(
    fake: FakeSlack, tmp_path: Path, server: str = "keeper"
) -> AsyncIterator[tuple[World, RunningServer]]:
    """USER's connection, with a bearer token, to a task keeper (2025-11-25 tasks kept per
    caller) or the Tasks-extension server (2026-07-28); PostgreSQL for the bots."""
    posts = record_posts(fake)
    start = start_task_keeper if server == "keeper" else start_task_extension
    async with fake_openai() as llm, start() as keeper, pg_database() as url:
        settings = make_settings(tmp_path / "data", database_url=url, credential_keys=KEYS)
        async with open_services(settings) as services:
            assert services.credentials is not None
            ref = await services.credentials.put(TEAM_ID, USER, {"header:Authorization": BEARER})
            new = NewConnection(
                name="keeper", transport="streamable_http", url=keeper.url, credential_ref=ref
            )
            outcome = await services.registry.add_connection(TEAM_ID, USER, new)
            assert outcome.error is None, outcome.error
        yield World(fake, llm, keeper, posts, tmp_path, url), keeper


def research_runs(keeper: RunningServer) -> int:
    with urllib.request.urlopen(f"{keeper.base_url}/calls", timeout=5) as response:
        return int(json.load(response).get("research", 0))


async def task_running(w: World, keeper: RunningServer, thread_ts: str) -> None:
    """Until the task was created and its status reached the turn's progress message (the
    journal has its id by then: written with the same flush)."""
    with anyio.fail_after(WAIT_S):
        while True:
            if await anyio.to_thread.run_sync(research_runs, keeper) >= 1 and _task_shown(w, thread_ts):
                break
            await anyio.sleep(0.05)
    await anyio.sleep(1.0)  # one more journal flush


def _task_shown(w: World, thread_ts: str) -> bool:
    shown = [c["body"] for c in w.fake.calls("chat.update") if "task working" in str(c["body"].get("text"))]
    return any(body.get("ts") == w.progress_ts(thread_ts) for body in shown)


async def result_posted(w: World, thread_ts: str) -> str:
    with anyio.fail_after(WAIT_S):
        while True:
            said = [t for t in w.thread_posts(thread_ts) if f"`{RESEARCH}` finished on its server" in t]
            if said:
                return said[0]
            await anyio.sleep(0.1)


@pytest.mark.parametrize("server", ["keeper", "extension"])
async def test_a_task_running_when_its_process_died_is_followed_by_another_and_its_result_posted(
    fake: FakeSlack, tmp_path: Path, server: str
) -> None:
    async with keeper_world(fake, tmp_path, server) as (w, keeper):
        a, b = w.start(), w.start()
        try:
            w.llm.call_tools((RESEARCH, {"topic": "tide pools <!channel>", "seconds": 6}))
            event = await w.mention(a, "research tide pools")
            await task_running(w, keeper, event["ts"])
            kill(a)
            closing = await w.closing_message(event["ts"])
            result = await result_posted(w, event["ts"])
            runs = await anyio.to_thread.run_sync(research_runs, keeper)
        finally:
            if a.process.poll() is None:
                kill(a)
            output, _ = _stop(b.process)

    assert f"`{RESEARCH}` may have run" in closing
    assert "is still running as a task on the server: I will post its result here when it ends" in closing
    assert "```Report on tide pools &lt;!channel&gt;```" in result
    assert w.last_edit(w.progress_ts(event["ts"]))["text"] == texts.INTERRUPTED
    assert runs == 1  # followed with the person's token, never sent again
    assert len(w.llm.requests) == 1
    assert "keeper-token-5b1f" not in w.fake.all_traffic_text() + json.dumps(w.llm.requests) + output
    assert "<!channel>" not in "".join(w.thread_posts(event["ts"]))  # the server's words are inert
    assert "Traceback" not in output


async def test_a_follower_that_dies_too_hands_the_task_to_the_next_process_without_telling_twice(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with keeper_world(fake, tmp_path) as (w, keeper):
        a, b = w.start(), w.start()
        c = None
        try:
            w.llm.call_tools((RESEARCH, {"topic": "kelp", "seconds": 12}))
            event = await w.mention(a, "research kelp")
            await task_running(w, keeper, event["ts"])
            kill(a)
            await w.closing_message(event["ts"])
            await anyio.sleep(1.0)  # b is following now
            c = w.start()
            kill(b)
            result = await result_posted(w, event["ts"])
            runs = await anyio.to_thread.run_sync(research_runs, keeper)
        finally:
            for bot in (a, b):
                if bot.process.poll() is None:
                    kill(bot)
            if c is not None:
                output, _ = _stop(c.process)

    closings = [t for t in w.thread_posts(event["ts"]) if t.startswith("⚠️ I was restarted")]
    assert len(closings) == 1
    assert "```Report on kelp```" in result
    assert len([t for t in w.thread_posts(event["ts"]) if "finished on its server" in t]) == 1
    assert runs == 1
    assert "Traceback" not in output


def cancelled_on_server(keeper: RunningServer) -> int:
    with urllib.request.urlopen(f"{keeper.base_url}/calls", timeout=5) as response:
        return int(json.load(response).get("cancelled", 0))


async def test_the_askers_stop_on_any_process_cancels_a_followed_task_on_its_server(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with keeper_world(fake, tmp_path, "extension") as (w, keeper):
        a, b = w.start(), w.start()
        c = None
        try:
            w.llm.call_tools((RESEARCH, {"topic": "kelp", "seconds": 60}))
            event = await w.mention(a, "research kelp")
            await task_running(w, keeper, event["ts"])
            kill(a)
            await w.closing_message(event["ts"])
            [notice] = [
                body
                for body, _ in w.posts.made
                if body.get("thread_ts") == event["ts"]
                and str(body.get("text")).startswith("⚠️ I was restarted")
            ]
            c = w.start()  # the Stop lands on a process that is not following the task
            stranger = await wait_told(
                w, await click(w, c, stop_value(notice), action="mcp_agent_stop", user="U0MALLORY")
            )
            await click(w, c, stop_value(notice), action="mcp_agent_stop")
            with anyio.fail_after(WAIT_S):
                while texts.task_stopped(RESEARCH) not in w.thread_posts(event["ts"]):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            cancelled = await anyio.to_thread.run_sync(cancelled_on_server, keeper)
            runs = await anyio.to_thread.run_sync(research_runs, keeper)
        finally:
            if a.process.poll() is None:
                kill(a)
            output, _ = _stop(b.process)
            if c is not None:
                _stop(c.process)

    assert stranger == [texts.STOP_NOT_YOURS]
    assert cancelled == 1
    assert runs == 1
    assert not [t for t in w.thread_posts(event["ts"]) if "finished on its server" in t]
    assert "Traceback" not in output
