"""Fixtures `pool`, `pools`, `servers` and `in_process_pool` for ConnectionPool tests; load with
`pytest_plugins = ["tests.support.pool_fixtures"]` in the test module.

A separate module (not tests/support/pool.py) because a plugin module must not be imported
before pytest registers it, or its asserts are not rewritten.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcp_core.connections import ConnectionPool
from tests.support.in_process import InProcessServers
from tests.support.pool import Pools

__all__ = ["in_process_pool", "pool", "pools", "servers"]


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    """Make pools with `pools(idle_timeout_s=..., max_sessions=...)`; all are closed after the test."""
    async with Pools() as made:
        yield made


@pytest.fixture
def pool(pools: Pools) -> ConnectionPool:
    """A pool with a long idle timeout and room for ten sessions, closed after the test."""
    return pools()


@pytest.fixture
def servers() -> InProcessServers:
    """Serves toy.py and leaky.py specs in this process (see tests/support/in_process.py)."""
    return InProcessServers()


@pytest.fixture
def in_process_pool(pools: Pools, servers: InProcessServers) -> ConnectionPool:
    """As `pool`, with toy.py and leaky.py specs served in-process by `servers`."""
    return pools(open_transport=servers)
