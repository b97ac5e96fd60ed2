import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run `@pytest.mark.anyio` tests on asyncio only (the bot's event loop)."""
    return "asyncio"


# Fixtures for tests that build all of mcp_core with build_services: services, secrets, HTTP servers;
# and for agent tests: a scripted model server (llm) and agents pointed at it (agent_for).
pytest_plugins = ["tests.support.registry", "tests.support.agents"]
