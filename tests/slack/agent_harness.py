"""The agent served like production, for the agent's Slack tests.

The bot runs behind signed HTTP (``http_app``) with the real composition root: its Web API
client talks to the fake Slack, its OpenAI client to the scripted ``fake_openai`` server, and
tools run in the real toy stdio server through the real registry and credential store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

from mcp_core.services import Services, build_services
from mcp_core.store._tables import tool_usage
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, serve, slack_settings
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.fake_slack import BOT_ID, BOT_USER_ID, FakeSlack, app_mention_event
from tests.support.in_process import InProcessServers
from tests.support.registry import toy

TOY_SECRET = "toy-env-secret-3f9a1c7e5d"
OTHER_TEAM = "T_ELSEWHERE"
TURN_S = 20.0
"""Upper bound for one whole turn (toy server start, LLM round trips, Slack calls)."""
DENIED = "Error: The person denied this call; it was not run."


@dataclass
class Posts:
    """Every chat.postMessage the bot made, with the ts the fake gave it."""

    made: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def ts_of(self, text_start: str) -> str:
        [ts] = [ts for body, ts in self.made if str(body.get("text", "")).startswith(text_start)]
        return ts


@dataclass
class Bot:
    slack: SlackDriver
    llm: FakeOpenAI
    services: Services
    posts: Posts


def record_posts(fake: FakeSlack) -> Posts:
    """Answer chat.postMessage as the fake does, remembering each answer's ts."""
    posts = Posts()

    def post(body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        payload, headers = fake._canned("chat.postMessage", body)
        posts.made.append((body, payload["ts"]))
        return 200, headers, payload

    fake.overrides["chat.postMessage"] = post
    return posts


OTHERS_THREAD = "1700000000.000100"
"""The thread ``others_wrote_in_thread`` seeds."""


def others_wrote_in_thread(fake: FakeSlack, asked: str, other_said: str) -> str:
    """A channel thread in which USER asked ``asked`` and USER_B then wrote ``other_said``
    (words that are not the asker's instructions); its ts."""
    fake.messages["C_TEST"] = [
        {"type": "message", "user": USER, "ts": OTHERS_THREAD, "text": asked},
        {
            "type": "message",
            "user": USER_B,
            "ts": "1700000000.000200",
            "thread_ts": OTHERS_THREAD,
            "text": other_said,
        },
    ]
    return OTHERS_THREAD


def live_thread(fake: FakeSlack, posts: Posts) -> None:
    """conversations.replies returns ``fake.messages`` plus what the bot posted since, as Slack
    would: the progress message is already in the thread when the bot reads it back."""

    def replies(body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        channel, thread = body.get("channel"), body.get("ts")
        found = [m for m in fake.messages.get(channel, []) if thread in (m.get("ts"), m.get("thread_ts"))]
        found += [
            {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts, "text": sent.get("text", "")}
            | {"thread_ts": sent.get("thread_ts")}
            for sent, ts in posts.made
            if sent.get("channel") == channel and sent.get("thread_ts") == thread
        ]
        return 200, {}, {"ok": True, "messages": found, "has_more": False}

    fake.overrides["conversations.replies"] = replies


@asynccontextmanager
async def agent_bot(tmp_path: Path, fake: FakeSlack, **overrides: Any) -> AsyncIterator[Bot]:
    """The bot with an LLM. USER owns ``toy`` (TOY_SECRET in its env, from the real credential
    store); USER_B owns ``bobs`` and USER in another team owns ``elsewhere``."""
    posts = record_posts(fake)
    async with fake_openai() as llm:
        settings = slack_settings(
            tmp_path, fake, openai_api_key=llm.api_key, openai_base_url=llm.base_url, **overrides
        )
        services = await build_services(settings, open_transport=InProcessServers())
        try:
            with anyio.fail_after(TURN_S):
                assert services.credentials is not None
                ref = await services.credentials.put(TEAM, USER, {"env:TOY_SECRET": TOY_SECRET})
                mine = toy("toy").model_copy(update={"credential_ref": ref})
                for team, user, new in [
                    (TEAM, USER, mine),
                    (TEAM, USER_B, toy("bobs")),
                    (OTHER_TEAM, USER, toy("elsewhere")),
                ]:
                    outcome = await services.registry.add_connection(team, user, new)
                    assert outcome.error is None, outcome.error
            async with serve(services) as url:
                yield Bot(SlackDriver(url, fake, services), llm, services, posts)
        finally:
            await services.aclose()


async def always_allow(services: Services, *tools: str) -> None:
    """USER's toy tools that run without asking from now on (only ``echo`` is read-only)."""
    connection = await services.store.find_connection(TEAM, USER, "toy")
    assert connection is not None
    for tool in tools:
        await services.registry.set_always_allowed(TEAM, USER, connection.id, tool, True)


async def turn_done(bot: Bot) -> None:
    """The model was asked everything scripted and every listener has finished."""
    await bot.llm.drained(TURN_S)
    await listeners_done(TURN_S)


def mention(text: str, **kwargs: Any) -> dict[str, Any]:
    """USER mentions the bot in C_TEST (``app_mention_event`` adds the ``<@U_BOT> `` prefix)."""
    return app_mention_event(text, user_id=kwargs.pop("user_id", USER), **kwargs)


def updates(fake: FakeSlack, ts: str) -> list[dict[str, Any]]:
    return [c["body"] for c in fake.calls("chat.update") if c["body"].get("ts") == ts]


def blocks_text(body: dict[str, Any]) -> str:
    return json.dumps(body.get("blocks") or [], ensure_ascii=False)


def approval_value(post: dict[str, Any]) -> str:
    [actions] = [b for b in post["blocks"] if b["type"] == "actions"]
    values = {e["action_id"]: e["value"] for e in actions["elements"]}
    assert values["mcp_agent_approve"] == values["mcp_agent_deny"]
    return values["mcp_agent_approve"]


async def approval_question(bot: Bot, fake: FakeSlack) -> dict[str, Any]:
    """Wait for the Approve/Deny message (the turn's second post) and return its body."""
    posts = await fake.await_for("chat.postMessage", 2, timeout_s=TURN_S)
    return posts[1]["body"]


async def tool_runs(services: Services) -> int:
    await services.usage.flush()
    async with services.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one()


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]
