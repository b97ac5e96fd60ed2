"""LOG_FORMAT=json during a real turn: the bot served like production, its logging formatted
as the CLI formats it (``mcp_core.logs.use_format``), everything down to DEBUG captured."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.takeover import interrupted_turns
from mcp_core.logs import use_format
from mcp_core.turn_journal import TurnCall, TurnRow
from tests.slack.agent_harness import TOY_SECRET, agent_bot, always_allow, mention, turn_done, updates
from tests.support.fake_slack import TEAM_ID, FakeSlack

pytestmark = pytest.mark.anyio


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes, formatted as LOG_FORMAT=json, from DEBUG up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    use_format("json", [handler])
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def feedback_turn_id(answer: dict[str, Any]) -> str:
    """The turn id the answer's 👍 button names (``up:<turn id>``)."""
    [block] = [b for b in answer["blocks"] if b["type"] == "context_actions"]
    return block["elements"][0]["positive_button"]["value"].removeprefix("up:")


async def test_every_line_is_a_json_object_and_the_turns_lines_carry_its_id_and_no_secret(
    tmp_path: Path, fake: FakeSlack, json_log: io.StringIO
) -> None:
    async with agent_bot(tmp_path, fake) as bot:
        await always_allow(bot.services, "env")
        key = bot.llm.api_key
        bot.llm.call_tools(("toy__echo", {"text": "hi"}), ("toy__env", {"name": "TOY_SECRET"}))
        bot.llm.reply("Done.")
        await bot.slack.event(mention("echo hi and read the secret"))
        await turn_done(bot)
        answer = updates(fake, bot.posts.ts_of("🤔"))[-1]

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # each line one object, or this raises
    assert len(lines) > 20
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
    turn_id = feedback_turn_id(answer)
    in_turn = [line for line in lines if "turn_id" in line]
    assert {line["turn_id"] for line in in_turn} == {turn_id}
    # The model requests and the tool calls of the turn are logged from tasks the turn started.
    requests = [
        line for line in lines if "/v1/chat/completions" in line["message"] and line["logger"] == "httpx2"
    ]
    assert len(requests) == 2
    assert all(line.get("turn_id") == turn_id for line in requests)
    # Before the turn (start-up, connecting the servers) no line names it.
    connected = [line for line in lines if line["message"].startswith("connected toy over stdio")]
    assert connected
    assert all("turn_id" not in line for line in connected)
    for secret in (TOY_SECRET, key, "xoxb-test"):
        assert secret not in text


def test_an_exception_is_written_whole_in_the_lines_exception_field() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    use_format("json", [handler])
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("broken\non two lines")
        except ValueError:
            logger.exception("it %s", "failed")
    finally:
        logger.removeHandler(handler)

    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "it failed"
    assert record["level"] == "ERROR"
    assert record["logger"] == "tests.json_logs"
    assert record["exception"].startswith("Traceback")
    assert "ValueError: broken\non two lines" in record["exception"]
    assert "turn_id" not in record


async def test_the_lines_of_closing_a_dead_processs_turn_carry_that_turns_id(
    fake: FakeSlack, json_log: io.StringIO
) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
    close = interrupted_turns(client, sessions=False)
    turn = TurnRow(
        "t-taken",
        TEAM_ID,
        "U0ALICE",
        "C_TEST",
        "1.0",
        messages=["9999.000001"],
        calls=[TurnCall("toy__slow", started=True)],
    )

    assert await close(turn) is None

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    closing = [line for line in lines if line["logger"].startswith(("bot.", "slack_sdk"))]
    assert any("chat.update" in line["message"] for line in closing)  # the interrupted message
    assert any("chat.postMessage" in line["message"] for line in closing)  # what ran, in the thread
    assert {line.get("turn_id") for line in closing} == {"t-taken"}
