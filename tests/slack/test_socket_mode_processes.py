"""Socket Mode with several processes: two real `slack-mcp-bot run` processes on one PostgreSQL,
each with its own connection to the fake Slack, which (as Slack does) sends each envelope to one
of them and delivers an unacked event again on the next connection.

Events spread over both are answered once each (a retry on the other connection too); a process
killed with SIGKILL mid-call has its turn closed by the other (the call ran once, nothing re-run);
SIGTERM closes the process's connection at once (new envelopes go to the other), lets a quick
turn finish and hands the long one over.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from bot import texts
from mcp_core.models import NewConnection
from tests.credentials.conftest import pg_database
from tests.slack.test_turn_takeover import KEYS, SLOW, USER, WAIT_S, World
from tests.support.fake_openai import fake_openai
from tests.support.fake_slack import TEAM_ID, FakeSlack, app_mention_event, event_callback
from tests.support.registry import make_settings, open_services
from tests.support.servers import start_http_server

from .agent_harness import record_posts
from .test_process import _free_port, _start, _stop

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
def fake() -> AsyncIterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


class SocketWorld(World):
    """The takeover test's world, with Socket Mode processes: each known by its connection."""

    def start_socket(self, connections_before: int, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
        env = self.bot_env(SLACK_APP_TOKEN="xapp-socket-processes", OAUTH_PORT=str(_free_port()), **extra)
        process = _start(["run"], self.fake, self.tmp_path, **env)
        open_now = self.fake.wait_connections(connections_before + 1, timeout_s=WAIT_S)
        return process, open_now[-1]

    async def push_mention(self, text: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
        event = app_mention_event(text, user_id=USER)
        envelope = event_callback(event, team_id=TEAM_ID)
        envelope_id = await self.fake.apush_envelope("events_api", envelope, **kwargs)
        return envelope, envelope_id

    def answers(self, thread_ts: str) -> list[str]:
        """What the thread's progress message finally became (one per turn)."""
        progress = [
            ts
            for body, ts in self.posts.made
            if body.get("thread_ts") == thread_ts and str(body.get("text")).startswith("🤔")
        ]
        return [self.last_edit(ts)["text"] for ts in progress]

    async def answered(self, thread_ts: str, text: str | None = None) -> str:
        """Wait until the thread's turn shows its answer (``text``, or any that is not progress)."""
        with anyio.fail_after(WAIT_S):
            while True:
                got = self._safe_answers(thread_ts)
                if got and (text in got if text else not got[0].startswith("🤔")):
                    return got[0]
                await anyio.sleep(0.05)

    def _safe_answers(self, thread_ts: str) -> list[str]:
        try:
            return self.answers(thread_ts)
        except IndexError:
            return []


@asynccontextmanager
async def socket_world(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[SocketWorld]:
    """The fakes, the toy server over HTTP, USER's connection to it (slow always allowed)."""
    posts = record_posts(fake)
    async with fake_openai() as llm, start_http_server() as toy, pg_database() as url:
        settings = make_settings(tmp_path / "data", database_url=url, credential_keys=KEYS)
        async with open_services(settings) as services:
            new = NewConnection(name="toy", transport="streamable_http", url=toy.url)
            outcome = await services.registry.add_connection(TEAM_ID, USER, new)
            assert outcome.error is None, outcome.error
            connection = await services.store.find_connection(TEAM_ID, USER, "toy")
            assert connection is not None
            await services.registry.set_always_allowed(TEAM_ID, USER, connection.id, "slow", True)
        yield SocketWorld(fake, llm, toy, posts, tmp_path, url)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


async def test_events_spread_over_both_connections_are_each_answered_once(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with socket_world(fake, tmp_path) as w:
        a, first = w.start_socket(0)
        b, second = w.start_socket(1)
        try:
            for n in range(4):
                w.llm.reply(f"Answer {n}.")
            mentions = [await w.push_mention(f"question {n}") for n in range(4)]
            for envelope, _ in mentions:
                await w.answered(envelope["event"]["ts"])
            # Slack delivers the first event again on the other connection (its ack was lost):
            envelope, envelope_id = mentions[0]
            [delivered] = fake.socket_mode.delivered(envelope_id)
            other = second if delivered.connection == first else first
            retry = await fake.apush_envelope(
                "events_api", envelope, retry_attempt=1, retry_reason="timeout", connection=other
            )
            await fake.await_ack(retry)
            await anyio.sleep(1.0)  # time for a wrong second answer to show
        finally:
            out_a, _ = _stop(a)
            out_b, _ = _stop(b)

    connections = {fake.socket_mode.delivered(eid)[0].connection for _, eid in mentions}
    assert connections == {first, second}
    for envelope, _ in mentions:
        [answer] = w.answers(envelope["event"]["ts"])
        assert answer.startswith("Answer ")
    assert len(w.llm.requests) == 4  # the retried event did not start a second turn
    assert fake.socket_mode.unacked() == []
    assert "Traceback" not in out_a + out_b


async def test_a_process_killed_mid_call_has_its_turn_closed_by_the_other_and_nothing_runs_twice(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with socket_world(fake, tmp_path) as w:
        a, first = w.start_socket(0)
        b, _ = w.start_socket(1)
        try:
            w.llm.call_tools((SLOW, {"seconds": 60}))
            envelope, _ = await w.push_mention("run the slow thing", connection=first)
            assert await w.slow_calls(at_least=1) == 1
            kill(a)
            thread = envelope["event"]["ts"]
            closing = await w.closing_message(thread)
            progress = w.last_edit(w.progress_ts(thread))
            runs = await w.slow_calls()
        finally:
            if a.poll() is None:
                kill(a)
            out_b, _ = _stop(b)

    assert f"`{SLOW}` may have run" in closing
    assert "Ask again to continue." in closing
    assert progress["text"] == texts.INTERRUPTED
    assert runs == 1
    assert len(w.llm.requests) == 1
    assert "Traceback" not in out_b


async def test_sigterm_closes_the_connection_at_once_finishes_the_quick_turn_and_hands_over_the_long(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with socket_world(fake, tmp_path) as w:
        a, first = w.start_socket(0, TURN_DRAIN_S="4")
        b, second = w.start_socket(1)
        try:
            w.llm.call_tools((SLOW, {"seconds": 60}))
            long, _ = await w.push_mention("run the long thing", connection=first)
            await w.slow_calls(at_least=1)
            w.llm.call_tools((SLOW, {"seconds": 2}))
            w.llm.reply("Quick one done.")
            quick, _ = await w.push_mention("run the quick thing", connection=first)
            await w.slow_calls(at_least=2)
            signalled = time.monotonic()
            a.send_signal(signal.SIGTERM)
            await fake.await_connections(1)
            closed_s = time.monotonic() - signalled
            await w.answered(quick["event"]["ts"], "Quick one done.")
            still_draining = a.poll() is None
            w.llm.reply("New one answered.")
            new, new_id = await w.push_mention("a new question while the other stops")
            await w.answered(new["event"]["ts"], "New one answered.")
            output = (await anyio.to_thread.run_sync(lambda: a.communicate(timeout=20)))[0].decode()
            stop_s = time.monotonic() - signalled
            closing = await w.closing_message(long["event"]["ts"])
            runs = await w.slow_calls()
        finally:
            if a.poll() is None:
                kill(a)
            out_b, _ = _stop(b)

    assert closed_s < 2.0, output  # well inside the 4 s grace: Slack stops sending here at once
    assert still_draining
    assert [d.connection for d in fake.socket_mode.delivered(new_id)] == [second]
    assert f"`{SLOW}` may have run" in closing
    assert w.last_edit(w.progress_ts(long["event"]["ts"]))["text"] == texts.INTERRUPTED
    assert runs == 2  # the long call once, the quick one once
    assert a.returncode == 0, output
    assert 1.0 < stop_s < 4 + 4, output
    assert "Traceback" not in output + out_b
    assert fake.socket_mode.unacked() == []


async def test_an_event_a_frozen_process_never_acked_is_answered_once_by_the_other(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with socket_world(fake, tmp_path) as w:
        a, first = w.start_socket(0)
        b, second = w.start_socket(1)
        try:
            w.llm.reply("Answered by the other.")
            a.send_signal(signal.SIGSTOP)  # alive, connected, and deaf: no ack comes
            envelope, envelope_id = await w.push_mention("are you there?", connection=first)
            answer = await w.answered(envelope["event"]["ts"])
            a.send_signal(signal.SIGCONT)  # wakes up holding the envelope Slack gave up on
            with anyio.fail_after(WAIT_S):
                while len(fake.socket_mode.ack_log) < 2:  # noqa: ASYNC110 (the fake's thread)
                    await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # time for a wrong second answer to show
        finally:
            a.send_signal(signal.SIGCONT)
            out_a, _ = _stop(a)
            out_b, _ = _stop(b)

    deliveries = fake.socket_mode.delivered(envelope_id)
    assert [(d.connection, d.retry_attempt) for d in deliveries] == [(first, 0), (second, 1)]
    assert answer == "Answered by the other."
    assert len(w.answers(envelope["event"]["ts"])) == 1
    assert len(w.llm.requests) == 1
    acks = {ack.connection: ack.in_time for ack in fake.socket_mode.ack_log}
    assert acks == {second: True, first: False}  # the late ack changed nothing
    assert "Traceback" not in out_a + out_b
