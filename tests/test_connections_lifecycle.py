"""ConnectionPool session lifetime: one session per connection, reuse, reopening, reaping, the
cap, shutdown, and one connection's trouble never reaching another.

Tests about child processes (crashes, killed or hung servers, reaping, shutdown) run real
ones; the others serve toy.py and leaky.py in-process (`in_process_pool`, `servers`; see
tests/support/in_process.py), where `pid` answers the session number.

Transports, failures, listings and secrets are in test_connections.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import psutil
import pytest

from mcp_core import errors
from mcp_core.connections import ConnectionPool
from mcp_core.models import SessionSpec
from tests.support.in_process import InProcessServers
from tests.support.pool import (
    WAIT_S,
    Pools,
    call,
    call_pid,
    hang_spec,
    leaky_spec,
    running_children,
    text_of,
    toy_spec,
    wait_process_gone,
    wait_until,
)
from tests.support.servers import HANG, assert_no_zombies

pytestmark = pytest.mark.anyio
pytest_plugins = ["tests.support.pool_fixtures"]

PROMPT_S = 1.0
"""How fast an echo on a healthy, already open session must answer while another one struggles."""


# --- one session per connection ---------------------------------------------------------------


async def test_ten_concurrent_first_uses_open_exactly_one_session(in_process_pool: ConnectionPool) -> None:
    spec = toy_spec()
    opened = 0

    async def open_spec() -> SessionSpec:
        nonlocal opened
        opened += 1
        return spec

    async def pid() -> int:
        return int(text_of(await in_process_pool.call_tool(spec.connection_id, open_spec, "pid", {})))

    with anyio.fail_after(spec.connect_timeout_s + spec.call_timeout_s):
        pids = await asyncio.gather(*(pid() for _ in range(10)))

    assert len(set(pids)) == 1
    assert opened == 1
    assert in_process_pool.live_count == 1


async def test_a_session_is_reused_across_calls(in_process_pool: ConnectionPool) -> None:
    spec = toy_spec()

    pids = [await call_pid(in_process_pool, spec) for _ in range(3)]

    assert len(set(pids)) == 1
    assert in_process_pool.live_count == 1


async def test_after_a_crash_the_call_is_not_retried_and_the_next_call_starts_a_new_process(
    pool: ConnectionPool,
) -> None:
    spec = toy_spec(name="fragile")
    first = await call_pid(pool, spec)

    with pytest.raises(errors.ServerCrashedError, match="not retried") as info:
        await call(pool, spec, "crash")

    assert info.value.connection == "fragile"
    second = await call_pid(pool, spec)
    assert second != first
    await wait_process_gone(first)
    assert pool.live_count == 1


async def test_a_stdio_server_that_dies_while_idle_is_reopened_on_the_next_call_without_error(
    pool: ConnectionPool,
) -> None:
    spec = toy_spec()
    first = await call_pid(pool, spec)

    psutil.Process(first).kill()
    await wait_until(lambda: not pool.is_live(spec.connection_id), what="the pool notices the dead server")

    assert text_of(await call(pool, spec, "echo", text="back")) == "back"
    assert await call_pid(pool, spec) != first
    await wait_process_gone(first)


# --- closing sessions -------------------------------------------------------------------------


async def test_idle_sessions_are_closed_by_the_reaper_and_reopened_on_demand(pools: Pools) -> None:
    pool = pools(idle_timeout_s=0.2)
    spec = toy_spec()
    first = await call_pid(pool, spec)

    await wait_until(lambda: pool.live_count == 0, what="the reaper closes the idle session")
    await wait_process_gone(first)

    assert await call_pid(pool, spec) != first


async def test_the_reaper_leaves_a_session_with_a_call_in_flight_alone(
    pools: Pools, servers: InProcessServers
) -> None:
    pool = pools(idle_timeout_s=0.2, open_transport=servers)
    spec = leaky_spec()

    result = await call(pool, spec, "hold", text="holding", seconds=1.0)

    assert text_of(result) == "held"


async def test_the_session_cap_closes_the_least_recently_used_idle_session(
    pools: Pools, servers: InProcessServers
) -> None:
    pool = pools(max_sessions=2, open_transport=servers)
    a, b, c = toy_spec(name="a"), toy_spec(name="b"), toy_spec(name="c")
    pid_a = await call_pid(pool, a)
    pid_b = await call_pid(pool, b)
    assert await call_pid(pool, a) == pid_a  # a is now more recently used than b

    pid_c = await call_pid(pool, c)

    await wait_until(lambda: pid_b not in servers.running, what="b's server stopped")
    assert not pool.is_live(b.connection_id)
    assert pool.is_live(a.connection_id)
    assert pool.is_live(c.connection_id)
    assert pool.live_count == 2
    assert await call_pid(pool, a) == pid_a
    assert await call_pid(pool, c) == pid_c


async def test_the_session_cap_never_closes_a_session_with_a_call_in_flight(
    pools: Pools, servers: InProcessServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    pool = pools(max_sessions=1, open_transport=servers)
    busy, other = leaky_spec(name="worker"), toy_spec(name="other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: call(pool, busy, "hold", text="holding", seconds=30.0, timeout_s=30.0))
        with anyio.fail_after(WAIT_S):
            await servers.reached_event("holding").wait()  # the busy call reached its server

        assert text_of(await call(pool, other, "echo", text="hello")) == "hello"
        assert pool.is_live(busy.connection_id)
        assert pool.live_count == 2
        tg.cancel_scope.cancel()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sessions are busy" in message for message in warnings)


async def test_discarding_a_connection_closes_its_session_and_process(pool: ConnectionPool) -> None:
    spec = toy_spec()
    pid = await call_pid(pool, spec)

    with anyio.fail_after(WAIT_S):
        await pool.discard(spec.connection_id)

    assert not pool.is_live(spec.connection_id)
    assert not psutil.pid_exists(pid)


async def test_closing_the_pool_ends_every_child_process_and_leaves_no_zombie(pools: Pools) -> None:
    pool = pools()
    pids = await asyncio.gather(*(call_pid(pool, toy_spec(name=f"s{n}")) for n in range(3)))
    assert pool.live_count == 3

    with anyio.fail_after(WAIT_S):
        await pool.aclose()

    assert pool.live_count == 0
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    assert_no_zombies()


async def test_a_closed_pool_refuses_new_calls(pool: ConnectionPool) -> None:
    await pool.aclose()

    with pytest.raises(errors.McpCoreError, match="shutting down"):
        await call(pool, toy_spec(), "echo", text="hello")

    assert pool.live_count == 0


# --- isolation between connections ------------------------------------------------------------


async def test_a_hanging_call_on_one_connection_does_not_delay_another(
    in_process_pool: ConnectionPool, servers: InProcessServers
) -> None:
    stuck, healthy = leaky_spec(name="stuck"), toy_spec(name="healthy")
    await call(in_process_pool, healthy, "echo", text="open")
    outcome: list[BaseException] = []

    async def hang_on_stuck() -> None:
        try:
            await call(in_process_pool, stuck, "hold", text="holding", seconds=30.0, timeout_s=1.5)
        except errors.McpServerError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(hang_on_stuck)
        with anyio.fail_after(WAIT_S):
            await servers.reached_event("holding").wait()  # the stuck call reached its server
        for n in range(3):
            started = time.monotonic()
            with anyio.fail_after(PROMPT_S):
                assert text_of(await call(in_process_pool, healthy, "echo", text=f"ping {n}")) == f"ping {n}"
            assert time.monotonic() - started < PROMPT_S
        assert not outcome, "the stuck call should still be waiting"

    [error] = outcome
    assert isinstance(error, errors.ServerTimeoutError)
    assert error.connection == "stuck"


async def test_a_caller_giving_up_while_a_session_opens_leaves_no_session_or_process_behind(
    pool: ConnectionPool,
) -> None:
    spec = hang_spec("--exit-on-eof", connect_timeout_s=1.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: call(pool, spec, "echo", text="hello"))
        await wait_until(lambda: bool(running_children(HANG)), what="the hung server started")
        tg.cancel_scope.cancel()

    await wait_until(lambda: not running_children(HANG), what="the hung server process is gone")
    assert pool.live_count == 0
    assert not pool.is_live(spec.connection_id)
