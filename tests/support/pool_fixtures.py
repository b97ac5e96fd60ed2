"""Fixtures `pool` and `pools` for ConnectionPool tests; load with
`pytest_plugins = ["tests.support.pool_fixtures"]` in the test module.

A separate module (not tests/support/pool.py) because a plugin module must not be imported
before pytest registers it, or its asserts are not rewritten.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcp_core.connections import ConnectionPool
from tests.support.pool import Pools

__all__ = ["pool", "pools"]


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    """Make pools with `pools(idle_timeout_s=..., max_sessions=...)`; all are closed after the test."""
    async with Pools() as made:
        yield made


@pytest.fixture
def pool(pools: Pools) -> ConnectionPool:
    """A pool with a long idle timeout and room for ten sessions, closed after the test."""
    return pools()
