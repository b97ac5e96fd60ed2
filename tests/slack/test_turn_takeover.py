"""Turns survive their process: real `slack-mcp-bot run --http` processes, the fake Slack, the
scripted OpenAI server and the toy MCP server over HTTP (which counts the `slow` calls it ran).

A process killed with SIGKILL mid-call leaves its turn to another process on the same
PostgreSQL (or to its own next start on SQLite), which closes it in the thread: the progress
message stops saying Thinking, and the thread is told the call may have run — which it did,
exactly once, and is never run again. SIGTERM lets a quick turn finish and closes a long one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from bot import texts
from mcp_core.credentials._crypto import parse_keyring
from mcp_core.models import NewConnection
from mcp_core.store import create_engine
from mcp_core.store._tables import turns
from mcp_core.turn_checkpoint import Checkpoint, unseal
from tests.credentials.conftest import KEY_1, pg_database
from tests.slack.agent_harness import Posts, approval_value, record_posts
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.fake_slack import (
    FORM,
    JSON,
    TEAM_ID,
    FakeSlack,
    app_mention_event,
    block_actions_body,
    event_body,
    post_signed,
)
from tests.support.registry import make_settings, open_services
from tests.support.servers import RunningServer, start_http_server

from .test_process import _free_port, _start, _stop, _wait_health

pytestmark = pytest.mark.anyio

USER = "U0ALICE"
SECRET = "takeover-signing-secret"
KEYS = f"k1:{KEY_1}"
LEASE_S = "2"
WAIT_S = 30.0
SLOW = "toy__slow"


@pytest.fixture
def fake() -> AsyncIterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@dataclass
class Bot:
    """One bot process and where Slack reaches it."""

    process: subprocess.Popen[bytes]
    url: str


@dataclass
class World:
    fake: FakeSlack
    llm: FakeOpenAI
    toy: RunningServer
    posts: Posts
    tmp_path: Path
    database_url: str | None

    def bot_env(self, **extra: str) -> dict[str, str]:
        """What every bot process of these tests is started with, plus ``extra``."""
        return {
            "CREDENTIAL_KEYS": KEYS,
            "OPENAI_API_KEY": self.llm.api_key,
            "OPENAI_BASE_URL": self.llm.base_url,
            "MCP_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SLACK_STREAMING": "false",
            "TURN_LEASE_S": LEASE_S,
            **({"DATABASE_URL": self.database_url} if self.database_url else {}),
            **extra,
        }

    def start(self, **extra: str) -> Bot:
        port = _free_port()
        env = self.bot_env(SLACK_SIGNING_SECRET=SECRET, **extra)
        process = _start(["run", "--http", "--port", str(port)], self.fake, self.tmp_path, **env)
        _wait_health(f"http://127.0.0.1:{port}/healthz", process)
        return Bot(process, f"http://127.0.0.1:{port}/slack/events")

    async def mention(self, bot: Bot, text: str, *, status: int = 200) -> dict[str, Any]:
        event = app_mention_event(text, user_id=USER)
        got, _, _ = await post_signed(bot.url, event_body(event, team_id=TEAM_ID), JSON, SECRET)
        assert got == status
        return event

    async def approve_next_question(self, bot: Bot, questions_before: int) -> None:
        """Wait for the next Approve/Deny question and click Approve on ``bot``."""
        with anyio.fail_after(WAIT_S):
            while True:
                asked = [body for body, _ in self.posts.made if "may I run" in str(body.get("text"))]
                if len(asked) > questions_before:
                    break
                await anyio.sleep(0.05)
        value = approval_value(asked[questions_before])
        body = block_actions_body(
            "mcp_agent_approve",
            value,
            user_id=USER,
            team_id=TEAM_ID,
            channel_id="C_TEST",
            response_url=self.fake.response_url("approve"),
        )
        status, _, _ = await post_signed(bot.url, body, FORM, SECRET)
        assert status == 200

    async def slow_calls(self, at_least: int = 0) -> int:
        """How many `slow` calls the toy server started (waiting for ``at_least``)."""
        with anyio.fail_after(WAIT_S):
            while True:
                count = await anyio.to_thread.run_sync(self._calls)
                if count >= at_least:
                    return count
                await anyio.sleep(0.05)

    def _calls(self) -> int:
        with urllib.request.urlopen(f"{self.toy.base_url}/calls", timeout=5) as response:
            return int(json.load(response).get("slow", 0))

    def progress_ts(self, thread_ts: str) -> str:
        [ts] = [
            ts
            for body, ts in self.posts.made
            if body.get("thread_ts") == thread_ts and str(body.get("text")).startswith("🤔")
        ]
        return ts

    def thread_posts(self, thread_ts: str) -> list[str]:
        return [str(body.get("text")) for body, _ in self.posts.made if body.get("thread_ts") == thread_ts]

    async def closing_message(self, thread_ts: str) -> str:
        with anyio.fail_after(WAIT_S):
            while True:
                said = [t for t in self.thread_posts(thread_ts) if t.startswith("⚠️ I was restarted")]
                if said:
                    return said[0]
                await anyio.sleep(0.05)

    def last_edit(self, ts: str) -> dict[str, Any]:
        return [c["body"] for c in self.fake.calls("chat.update") if c["body"].get("ts") == ts][-1]


@asynccontextmanager
async def world(fake: FakeSlack, tmp_path: Path, *, postgres: bool) -> AsyncIterator[World]:
    """The fakes, a toy server over HTTP and USER's connection to it in the database."""
    posts = record_posts(fake)
    async with fake_openai() as llm, start_http_server() as toy, _database(postgres) as url:
        settings = make_settings(tmp_path / "data", database_url=url, credential_keys=KEYS)
        async with open_services(settings) as services:  # migrates; gone before the bots start
            new = NewConnection(name="toy", transport="streamable_http", url=toy.url)
            outcome = await services.registry.add_connection(TEAM_ID, USER, new)
            assert outcome.error is None, outcome.error
        yield World(fake, llm, toy, posts, tmp_path, url)


@asynccontextmanager
async def _database(postgres: bool) -> AsyncIterator[str | None]:
    if not postgres:
        yield None
        return
    async with pg_database() as url:
        yield url


async def turn_rows_until(w: World, ready: Callable[[list[Any]], bool]) -> list[Any]:
    """The rows of ``mcp_turns`` (another process's writes: polled) once ``ready`` says so."""
    assert w.database_url is not None
    engine = create_engine(w.database_url)
    try:
        with anyio.fail_after(WAIT_S):
            while True:
                async with engine.connect() as conn:
                    rows = list((await conn.execute(sa.select(turns))).mappings().all())
                if ready(rows):
                    return rows
                await anyio.sleep(0.05)
    finally:
        await engine.dispose()


async def kept_state(w: World) -> Checkpoint:
    """The checkpoint the live turn's row holds (sealed under the bots' keyring), once there."""

    def kept(rows: list[Any]) -> bool:
        return any(r["state"] == "running" and r["checkpoint"] is not None for r in rows)

    [row] = [r for r in await turn_rows_until(w, kept) if r["state"] == "running"]
    checkpoint = unseal(
        parse_keyring(KEYS), row["team_id"], row["user_id"], row["turn_id"], row["checkpoint"]
    )
    assert checkpoint is not None
    return checkpoint


def kill(bot: Bot) -> None:
    bot.process.send_signal(signal.SIGKILL)
    bot.process.communicate(timeout=10)  # reaped: its pid is free


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.mark.postgres
async def test_a_process_killed_mid_call_has_its_turn_closed_by_another_and_nothing_runs_twice(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=True) as w:
        a, b = w.start(), w.start()
        try:
            w.llm.call_tools((SLOW, {"seconds": 60}))
            event = await w.mention(a, "run the slow thing")
            await w.approve_next_question(a, 0)
            assert await w.slow_calls(at_least=1) == 1
            kept = await kept_state(w)  # what the running turn keeps, sealed, in its row
            kill(a)
            closing = await w.closing_message(event["ts"])
            progress = w.last_edit(w.progress_ts(event["ts"]))
            runs = await w.slow_calls()
            metrics = await anyio.to_thread.run_sync(scrape, b.url.replace("/slack/events", "/metrics"))
        finally:
            if a.process.poll() is None:
                kill(a)
            output, _ = _stop(b.process)

    assert [(c.name, json.loads(c.raw_arguments)) for c in kept.calls] == [(SLOW, {"seconds": 60})]
    assert kept.history[-2]["content"].endswith("run the slow thing")  # the conversation it read
    assert f"`{SLOW}` may have run" in closing
    assert "Ask again to continue." in closing
    assert progress["text"] == texts.INTERRUPTED
    session = w.fake.ai.sessions[(event["channel"], event["ts"])]
    assert session.history[-1] == "closed"  # Slack's Stop button is gone with the turn
    assert w.fake.ai.thread_status(event["channel"], event["ts"]) is None
    assert "Thinking" not in json.dumps(progress)
    assert runs == 1
    assert len(w.llm.requests) == 1  # the turn was not resumed: nothing asked the model again
    assert "Traceback" not in output
    assert 'slack_mcp_bot_turns_taken_over_total{state="working"} 1.0' in metrics


async def test_a_restarted_sqlite_bot_closes_the_turn_its_previous_run_left(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=False) as w:
        first = w.start()
        try:
            w.llm.call_tools((SLOW, {"seconds": 60}))
            event = await w.mention(first, "run the slow thing")
            await w.approve_next_question(first, 0)
            await w.slow_calls(at_least=1)
        finally:
            kill(first)
        started = time.monotonic()
        second = w.start(TURN_LEASE_S="30")  # no lease needs to run out: its owner is gone
        try:
            closing = await w.closing_message(event["ts"])
            closed_s = time.monotonic() - started
            progress = w.last_edit(w.progress_ts(event["ts"]))
            runs = await w.slow_calls()
        finally:
            _stop(second.process)

    assert f"`{SLOW}` may have run" in closing
    assert progress["text"] == texts.INTERRUPTED
    assert closed_s < 20
    assert runs == 1


async def test_sigterm_lets_a_quick_turn_finish_and_closes_a_long_one_then_exits(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with world(fake, tmp_path, postgres=False) as w:
        bot = w.start(TURN_DRAIN_S="4")
        w.llm.call_tools((SLOW, {"seconds": 60}))
        long = await w.mention(bot, "run the long thing")
        await w.approve_next_question(bot, 0)
        await w.slow_calls(at_least=1)
        w.llm.call_tools((SLOW, {"seconds": 1.5}))
        w.llm.reply("Quick one done.")
        quick = await w.mention(bot, "run the quick thing")
        await w.approve_next_question(bot, 1)
        await w.slow_calls(at_least=2)
        started = time.monotonic()
        bot.process.send_signal(signal.SIGTERM)
        await anyio.sleep(0.5)
        await w.mention(bot, "a new question while stopping", status=503)  # Slack retries elsewhere
        output = (await anyio.to_thread.run_sync(lambda: bot.process.communicate(timeout=20)))[0].decode()
        stop_s = time.monotonic() - started

    assert w.last_edit(w.progress_ts(quick["ts"]))["text"] == "Quick one done."
    closing = [t for t in w.thread_posts(long["ts"]) if t.startswith("⚠️ I was restarted")]
    assert len(closing) == 1
    assert f"`{SLOW}` may have run" in closing[0]
    assert w.last_edit(w.progress_ts(long["ts"]))["text"] == texts.INTERRUPTED
    assert bot.process.returncode == 0, output
    assert 1.0 < stop_s < 4 + 3, output
    assert "Traceback" not in output
    assert len(w.llm.requests) == 3  # the long turn's first, the quick turn's two; none for the late one
