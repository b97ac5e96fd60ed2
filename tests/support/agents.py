"""Fixtures for tests of ``mcp_core.agent``: a scripted model server and agents pointed at it.

    async def test_x(in_process_services, toy_catalog, llm: FakeOpenAI, agent_for: AgentFactory) -> None:
        llm.call_tools(("toy__echo", {"text": "hi"}))
        llm.reply("Hi.")
        reply = await agent_for(llm, max_steps=2).run(QUESTION, toy_catalog, as_user(in_process_services))

The ``openai`` client is the real one, talking HTTP to ``tests.support.fake_openai``; each
test's clients are closed after it. ``toy_catalog`` is USER's catalog with the toy server
served in-process; ``as_user`` runs catalog tools through the real registry as USER.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai import AsyncOpenAI

from mcp_core.agent import Agent, ToolCall, ToolRunner
from mcp_core.models import CatalogEntry, ToolResult
from mcp_core.services import Services
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.registry import TEAM, USER, add, toy

__all__ = ["AgentFactory", "agent_for", "as_user", "llm", "toy_catalog"]

AgentFactory = Callable[..., Agent]


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as fake:
        yield fake


@pytest.fixture
async def agent_for() -> AsyncIterator[AgentFactory]:
    """``agent_for(llm, api_key=, timeout_s=, **Agent options)``; the clients are closed after the test."""
    clients: list[AsyncOpenAI] = []

    def make(llm: FakeOpenAI, *, api_key: str | None = None, timeout_s: float = 5.0, **options: Any) -> Agent:
        client = AsyncOpenAI(
            api_key=api_key or llm.api_key, base_url=llm.base_url, max_retries=0, timeout=timeout_s
        )
        clients.append(client)
        return Agent(client, "fake-model", **options)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def toy_catalog(in_process_services: Services) -> list[CatalogEntry]:
    """USER's catalog: the toy server (served in-process) as connection ``toy``."""
    assert (await add(in_process_services, toy("toy"))).error is None
    return await in_process_services.registry.catalog(TEAM, USER)


def as_user(services: Services) -> ToolRunner:
    """``registry.call`` bound to USER, as ``bot.chat`` binds it to the asker."""

    async def run(call: ToolCall) -> ToolResult:
        return await services.registry.call(TEAM, USER, call.name, call.arguments)

    return run
