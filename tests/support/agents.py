"""Fixtures for tests of ``mcp_core.agent``: a scripted model server and agents pointed at it.

    async def test_x(llm: FakeOpenAI, agent_for: AgentFactory) -> None:
        llm.reply("Hi.")
        reply = await agent_for(llm, max_steps=2).run(QUESTION, [], no_tools)

The ``openai`` client is the real one, talking HTTP to ``tests.support.fake_openai``; each
test's clients are closed after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai import AsyncOpenAI

from mcp_core.agent import Agent
from tests.support.fake_openai import FakeOpenAI, fake_openai

__all__ = ["AgentFactory", "agent_for", "llm"]

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
