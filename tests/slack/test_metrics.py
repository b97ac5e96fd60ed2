"""``GET /metrics`` after real turns: the bot served like production (signed HTTP into
``http_app``), the scripted fake OpenAI, tools in the toy server through the real registry.
What Prometheus reads is parsed with prometheus_client's own parser."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.monitoring import SlackHealth
from bot.oauth_web import start_sign_in_listener
from bot.runner import sign_in_app, slack_client
from tests.servers import toy as toy_server
from tests.slack.agent_harness import (
    OTHER_TEAM,
    TOY_SECRET,
    TURN_S,
    Bot,
    agent_bot,
    always_allow,
    approval_question,
    approval_value,
    mention,
    turn_done,
)
from tests.slack.conftest import TEAM, USER, USER_B, listeners_done
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio

NS = "slack_mcp_bot_"
CALL_TIMEOUT_S = 1.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[str, str]:
    """GET ``url``; its Content-Type and body."""
    timeout = aiohttp.ClientTimeout(total=TURN_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return response.headers["Content-Type"], await response.text()


async def metrics_of(bot: Bot) -> tuple[str, Samples]:
    """The bot's /metrics, as text and as (sample name, labels) → value."""
    _, text = await scrape(bot.slack.url.replace("/slack/events", "/metrics"))
    return text, parse(text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((NS + name, frozenset(labels.items())), 0.0)


async def test_a_turn_its_tool_calls_by_outcome_and_the_models_tokens_are_counted(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake, mcp_call_timeout_s=CALL_TIMEOUT_S) as bot:
        await always_allow(bot.services, "fail", "slow", "env")
        _, before = await metrics_of(bot)
        bot.llm.call_tools(("toy__echo", {"text": "hi"}))
        bot.llm.call_tools(("toy__fail", {}))
        bot.llm.call_tools(("toy__slow", {"seconds": 30}))  # past its timeout
        bot.llm.call_tools(("toy__env", {"name": "TOY_SECRET"}))
        bot.llm.reply("Echoed; one failed, one timed out.")
        await bot.slack.event(mention("echo hi, then fail, then sleep"))
        await turn_done(bot)
        text, after = await metrics_of(bot)
        live = bot.services.pool.live_count

    assert value(before, "turns_total", outcome="answered") == 0
    assert value(after, "turns_total", outcome="answered") == 1
    assert value(after, "turns_total", outcome="failed") == 0
    assert value(after, "turn_duration_seconds_count") == 1
    stdio = {"transport": "stdio"}
    assert value(after, "tool_calls_total", outcome="ok", **stdio) == 2  # echo, env
    assert value(after, "tool_calls_total", outcome="tool_error", **stdio) == 1  # fail: isError
    assert value(after, "tool_calls_total", outcome="failed", **stdio) == 1  # slow: timed out, no result
    assert value(after, "tool_call_duration_seconds_count", **stdio) == 4
    model = {"model": bot.services.settings.openai_model}
    assert value(after, "model_requests_total", outcome="ok", **model) == 5
    assert value(after, "model_request_duration_seconds_count", **model) == 5
    served = bot.llm.served_usage
    assert len(served) == 5
    prompt = sum(usage["prompt_tokens"] for usage in served)
    completion = sum(usage["completion_tokens"] for usage in served)
    assert value(after, "model_tokens_total", kind="prompt", **model) == prompt
    assert value(after, "model_tokens_total", kind="completion", **model) == completion
    acks = "slack_ack_duration_seconds_count"
    assert value(after, acks) - value(before, acks) == 1  # the mention (its listener ran on after)
    sessions = sum(value(after, "mcp_sessions", transport=t) for t in ("stdio", "sse", "streamable_http"))
    assert sessions == live
    assert value(after, "open_approvals") == 0
    assert ("process_resident_memory_bytes", frozenset()) in after
    # Bounded labels only: nobody, no connection, no secret.
    for private in (TEAM, OTHER_TEAM, USER, USER_B, "toy__", "bobs", "elsewhere", TOY_SECRET):
        assert private not in text


async def test_a_question_waiting_for_its_click_is_an_open_approval_and_a_denied_call_is_no_tool_call(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.call_tools(("toy__pid", {}))  # not read-only: asked about first
        bot.llm.reply("You said no.")
        await bot.slack.event(mention("what is your pid?"))
        question = await approval_question(bot, fake)
        _, waiting = await metrics_of(bot)
        await bot.slack.click("mcp_agent_deny", approval_value(question))
        await turn_done(bot)
        _, after = await metrics_of(bot)

    assert value(waiting, "open_approvals") == 1
    assert value(waiting, "turns_total", outcome="answered") == 0  # still running
    assert value(after, "open_approvals") == 0
    assert value(after, "turns_total", outcome="answered") == 1
    assert not [key for key in after if key[0] == NS + "tool_calls_total"]  # denied: never sent


async def test_a_stopped_turn_and_the_call_it_cancelled_count_as_stopped(
    tmp_path: Path, fake: FakeSlack
) -> None:
    """The Stop is clicked once the server runs the call: the progress line shows before the
    turn's journal write, and a Stop inside that write comes before anything was sent."""
    async with agent_bot(tmp_path, fake) as bot:
        await always_allow(bot.services, "slow")
        slow_before = toy_server.STARTED["slow"]  # the toy runs in this process (InProcessServers)
        bot.llm.call_tools(("toy__slow", {"seconds": 60}))
        await bot.slack.event(mention("take your time"))
        progress_ts = await fake_progress_ts(bot, fake)
        with anyio.fail_after(TURN_S):
            while toy_server.STARTED["slow"] == slow_before:  # noqa: ASYNC110
                await anyio.sleep(0.02)
            [post] = [body for body, ts in bot.posts.made if ts == progress_ts]
            [stop] = [b for b in post["blocks"] if b.get("block_id") == "stop"]
            await bot.slack.click("mcp_agent_stop", stop["elements"][0]["value"])
            await listeners_done(TURN_S)
        _, after = await metrics_of(bot)

    assert value(after, "turns_total", outcome="stopped") == 1
    assert value(after, "turns_total", outcome="answered") == 0
    assert value(after, "tool_calls_total", outcome="stopped", transport="stdio") == 1


async def fake_progress_ts(bot: Bot, fake: FakeSlack) -> str:
    """The ts of the turn's progress message, once posted."""
    await fake.await_for("chat.postMessage", 1, timeout_s=TURN_S)
    return bot.posts.ts_of("🤔")


async def test_a_turn_the_model_fails_counts_as_failed(tmp_path: Path, fake: FakeSlack) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        bot.llm.fail(500)  # and its retries find nothing scripted: the same
        await bot.slack.event(mention("hello?"))
        await turn_done(bot)
        _, after = await metrics_of(bot)

    model = {"model": bot.services.settings.openai_model}
    assert value(after, "turns_total", outcome="failed") == 1
    assert value(after, "turns_total", outcome="answered") == 0
    assert value(after, "model_requests_total", outcome="failed", **model) == 1
    assert value(after, "model_tokens_total", kind="prompt", **model) == 0


async def test_socket_modes_listener_serves_metrics_and_healthz_beside_the_sign_in_routes(
    tmp_path: Path, fake: FakeSlack
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        services = bot.services
        app = sign_in_app(services, slack_client(services.settings), slack=SlackHealth(ok=True))
        with anyio.fail_after(TURN_S):
            runner = await start_sign_in_listener(app, 0)
        assert runner is not None
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            content_type, text = await scrape(f"{base}/metrics")
            _, health = await scrape(f"{base}/healthz")
        finally:
            await runner.cleanup()

    assert content_type.startswith("text/plain; version=")
    assert value(parse(text), "turns_total", outcome="answered") == 0
    assert '"ok": true' in health
