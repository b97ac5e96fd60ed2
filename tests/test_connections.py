"""ConnectionPool against real servers: transports, headers, failures, listings, secrets.

Tests about transports and processes (stdio, HTTP, a hung child, stderr, the environment)
run real servers; the others use `in_process_pool`, where toy.py and leaky.py run in this
process over memory streams (tests/support/in_process.py): the same server code and the
same JSON-RPC messages without a child to start.

Session lifetime (reuse, reaping, the cap, shutdown) is in test_connections_lifecycle.py.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import anyio
import pytest

from mcp_core import errors
from mcp_core.connections import ConnectionPool
from mcp_core.models import SessionSpec
from tests.support.pool import (
    WAIT_S,
    Mode,
    RemoteTransport,
    call,
    call_pid,
    hang_spec,
    http_spec,
    leaky_spec,
    logged_lines,
    opener,
    refused_url,
    running_children,
    stdio_spec,
    text_of,
    toy_spec,
    wait_until,
)
from tests.support.servers import (
    HANG,
    RunningServer,
    npm_stdio_params,
    start_http_server_sync,
    start_npm_http_server,
)

pytestmark = pytest.mark.anyio
pytest_plugins = ["tests.support.pool_fixtures"]

TOY_TOOLS = {"echo", "slow", "crash", "huge", "env", "add", "fail", "pid", "grow"}
TOKEN = "tok-3f9c2a7d1e58"
API_KEY = "key-81b0c4d2a9"
GOOD_HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}
GATED = ("--bearer", TOKEN, "--require-header", f"X-Api-Key={API_KEY}")
REMOTE: list[RemoteTransport] = ["streamable_http", "sse"]
MODES: list[Mode] = ["auto", "legacy"]
FAST_FAILURE_S = 2.0


@pytest.fixture(scope="module")
def gated_http() -> Iterator[RunningServer]:
    """Streamable HTTP toy server that wants both the bearer token and the API key."""
    with start_http_server_sync(*GATED) as server:
        yield server


@pytest.fixture(scope="module")
def gated_sse() -> Iterator[RunningServer]:
    """Legacy HTTP+SSE toy server that wants both the bearer token and the API key."""
    with start_http_server_sync(*GATED, transport="sse") as server:
        yield server


@pytest.fixture
def remote_url(request: pytest.FixtureRequest) -> str:
    """URL of the gated toy server for the test's `transport` parameter."""
    transport = request.getfixturevalue("transport")
    server = request.getfixturevalue("gated_sse" if transport == "sse" else "gated_http")
    return server.url


# --- transports and headers -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_echo_answers_over_stdio(pool: ConnectionPool, mode: Mode) -> None:
    spec = toy_spec(mode=mode)

    result = await call(pool, spec, "echo", text="hello")

    assert not result.is_error
    assert text_of(result) == "hello"
    assert pool.is_live(spec.connection_id)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", REMOTE)
async def test_echo_answers_over_http_transports_sending_the_spec_headers(
    pool: ConnectionPool, transport: RemoteTransport, mode: Mode, remote_url: str
) -> None:
    spec = http_spec(remote_url, transport=transport, mode=mode, headers=GOOD_HEADERS)

    result = await call(pool, spec, "echo", text="hello")

    assert not result.is_error
    assert text_of(result) == "hello"
    assert pool.is_live(spec.connection_id)


BAD_HEADERS = {
    "missing-token": {"X-Api-Key": API_KEY},
    "wrong-token": {"Authorization": "Bearer not-the-token", "X-Api-Key": API_KEY},
    "missing-api-key": {"Authorization": f"Bearer {TOKEN}"},
    "wrong-api-key": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": "key-wrong-0000"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize("transport", REMOTE)
async def test_refused_credentials_raise_an_auth_error_naming_the_connection_quickly(
    pool: ConnectionPool, transport: RemoteTransport, headers: dict[str, str], mode: Mode, remote_url: str
) -> None:
    spec = http_spec(
        remote_url, transport=transport, name="gated", mode=mode, headers=headers, secret_values=[TOKEN]
    )
    started = time.monotonic()

    with pytest.raises(errors.ServerAuthError) as info:
        await call(pool, spec, "echo", text="hello")

    assert time.monotonic() - started < FAST_FAILURE_S
    assert info.value.connection == "gated"
    assert str(info.value).startswith("gated: ")
    assert TOKEN not in str(info.value)
    assert pool.live_count == 0


# --- connect failures -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", REMOTE)
async def test_a_url_without_an_mcp_endpoint_is_told_from_the_http_status(
    pool: ConnectionPool, transport: RemoteTransport, mode: Mode, remote_url: str
) -> None:
    spec = http_spec(remote_url + "-nowhere", transport=transport, mode=mode, headers=GOOD_HEADERS)

    with pytest.raises(errors.ServerUnavailableError) as info:
        await call(pool, spec, "echo", text="hello")

    assert str(info.value) == "remote: there is no MCP endpoint at this URL (HTTP 404)."
    assert pool.live_count == 0


async def test_a_missing_command_raises_unavailable_naming_the_connection(pool: ConnectionPool) -> None:
    spec = stdio_spec("/nonexistent/bin/no-such-mcp-server", name="ghost")

    with pytest.raises(errors.ServerUnavailableError, match="command not found") as info:
        await call(pool, spec, "echo", text="hello")

    assert info.value.connection == "ghost"
    assert "ghost" in str(info.value)
    assert pool.live_count == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", REMOTE)
async def test_a_refused_url_raises_unavailable_within_a_second_or_two(
    pool: ConnectionPool, transport: RemoteTransport, mode: Mode
) -> None:
    with refused_url("/sse" if transport == "sse" else "/mcp") as url:
        spec = http_spec(url, transport=transport, name="nobody", mode=mode)
        started = time.monotonic()
        with pytest.raises(errors.ServerUnavailableError) as info:
            await call(pool, spec, "echo", text="hello")

    assert time.monotonic() - started < FAST_FAILURE_S
    assert not isinstance(info.value, errors.ServerAuthError)
    assert info.value.connection == "nobody"
    assert pool.live_count == 0


@pytest.mark.parametrize(
    ("mode", "flags"),
    [("legacy", ("--exit-on-eof",)), ("auto", ("--exit-on-eof",)), ("legacy", ())],
    ids=["legacy-exits-on-eof", "auto-exits-on-eof", "legacy-truly-hung"],
)
async def test_a_server_that_never_answers_times_out_at_the_connect_timeout_without_blocking_others(
    pool: ConnectionPool, mode: Mode, flags: tuple[str, ...]
) -> None:
    hung = hang_spec(*flags, mode=mode, connect_timeout_s=1.0)
    other = toy_spec()
    await call(pool, other, "echo", text="before")  # open it first: only the hung connect is slow
    started = time.monotonic()
    failure: list[errors.ServerTimeoutError] = []

    async def connect_hung() -> None:
        with pytest.raises(errors.ServerTimeoutError) as info:
            await call(pool, hung, "echo", text="hello")
        failure.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(connect_hung)
        assert text_of(await call(pool, other, "echo", text="meanwhile")) == "meanwhile"
        assert not failure, "the other connection should answer while the hung one is still connecting"

    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < hung.connect_timeout_s + 6.0
    [error] = failure
    assert error.connection == "hang"
    assert "1 s" in str(error)
    assert not pool.is_live(hung.connection_id)
    await wait_until(lambda: not running_children(HANG), what="the hung server process is gone")
    assert text_of(await call(pool, other, "echo", text="after")) == "after"


# --- call failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["spec", "argument"])
async def test_a_call_past_its_timeout_raises_not_retried_and_the_session_still_answers(
    in_process_pool: ConnectionPool, where: str
) -> None:
    spec = toy_spec(call_timeout_s=0.5 if where == "spec" else 3.0)
    timeout_s = 0.5 if where == "argument" else None
    pid = await call_pid(in_process_pool, spec)
    started = time.monotonic()

    with pytest.raises(errors.ServerTimeoutError, match="not retried") as info:
        await call(in_process_pool, spec, "slow", seconds=10, timeout_s=timeout_s)

    assert time.monotonic() - started < 0.5 + FAST_FAILURE_S
    assert "slow" in str(info.value)
    assert text_of(await call(in_process_pool, spec, "echo", text="still here")) == "still here"
    assert await call_pid(in_process_pool, spec) == pid


async def test_a_server_that_stops_reading_its_input_costs_two_timeouts_then_a_new_session(
    pool: ConnectionPool,
) -> None:
    spec = toy_spec(call_timeout_s=1.0)
    pid = await call_pid(pool, spec)
    os.kill(pid, signal.SIGSTOP)  # the server reads nothing more; its stdin pipe fills
    try:
        # The transport takes the first request and blocks writing it: a late answer.
        with pytest.raises(errors.ServerTimeoutError, match="not retried"):
            await call(pool, spec, "echo", text="x" * 300_000)
        assert pool.is_live(spec.connection_id)
        # The next one is never taken: the session is stuck, so it is retired.
        with pytest.raises(errors.ServerTimeoutError):
            await call(pool, spec, "echo", text="next")
        assert not pool.is_live(spec.connection_id)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert text_of(await call(pool, spec, "echo", text="after")) == "after"
    assert await call_pid(pool, spec) != pid


async def test_a_call_timeout_shorter_than_the_servers_start_up_still_lets_the_session_open(
    pool: ConnectionPool,
) -> None:
    # The handshake is bounded by connect_timeout_s (5 s); the toy server needs ~0.5 s to start.
    spec = toy_spec(call_timeout_s=0.2, connect_timeout_s=5.0)

    assert text_of(await call(pool, spec, "echo", text="hello")) == "hello"


async def test_a_tool_reporting_failure_comes_back_as_an_error_result(
    in_process_pool: ConnectionPool,
) -> None:
    result = await call(in_process_pool, toy_spec(), "fail")

    assert result.is_error
    assert "toy tool failed on purpose" in text_of(result)


async def test_five_megabytes_of_output_over_stdio_arrive_whole_and_the_session_stays_healthy(
    pool: ConnectionPool,
) -> None:
    spec = toy_spec(call_timeout_s=10.0)
    pid = await call_pid(pool, spec)

    result = await call(pool, spec, "huge", size=5_000_000)

    assert not result.is_error
    assert text_of(result) == "x" * 5_000_000
    assert await call_pid(pool, spec) == pid


async def test_five_megabytes_over_legacy_streamable_http_fail_cleanly_or_arrive_and_the_pool_recovers(
    pool: ConnectionPool, gated_http: RunningServer
) -> None:
    # Legacy sessions get this answer as one SSE event, over the SDK's 1 MiB event limit.
    spec = http_spec(gated_http.url, mode="legacy", headers=GOOD_HEADERS, call_timeout_s=10.0)

    failure: errors.McpServerError | None = None
    try:
        result = await call(pool, spec, "huge", size=5_000_000)
    except errors.McpServerError as exc:
        failure = exc

    if failure is not None:
        assert failure.connection == "remote"
        assert len(str(failure)) < 1000
        assert not isinstance(failure, errors.ServerCrashedError), (
            "the server did not stop: the answer was too big"
        )
    else:
        assert result.is_error or text_of(result) == "x" * 5_000_000
        if result.is_error:
            assert len(text_of(result)) < 1000
    assert text_of(await call(pool, spec, "echo", text="after")) == "after"


# --- tool listings and change notifications ---------------------------------------------------

PROTOCOL = {"auto": "2026-07-28", "legacy": "2025-11-25"}
"""What the toy server speaks in each mode: auto reaches the stateless era, where tool changes
arrive only through subscriptions/listen; legacy gets the notification on the session."""


def connected_over(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The protocol versions the pool logged when it connected the named connection."""
    messages = [r.getMessage() for r in caplog.records if r.name == "mcp_core.connections"]
    return [m.rsplit("protocol ", 1)[1].rstrip(")") for m in messages if m.startswith(f"connected {name} ")]


@pytest.mark.parametrize("mode", MODES)
async def test_a_malformed_tool_is_skipped_logged_and_the_good_tools_still_work(
    in_process_pool: ConnectionPool, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    spec = toy_spec("--malformed", name="bent", mode=mode)

    with anyio.fail_after(WAIT_S):
        listing = await in_process_pool.list_tools(spec.connection_id, opener(spec))

    assert connected_over(caplog, "bent") == [PROTOCOL[mode]]
    assert {tool.name for tool in listing.tools} == TOY_TOOLS
    assert [name for name, _why in listing.skipped] == ["bad_schema"]
    assert any(
        record.levelno == logging.WARNING
        and "bad_schema" in record.getMessage()
        and "bent" in record.getMessage()
        for record in caplog.records
    )
    assert text_of(await call(in_process_pool, spec, "echo", text="fine")) == "fine"
    assert text_of(await call(in_process_pool, spec, "add", a=2, b=3)) == "5"


async def test_a_tool_listing_spread_over_pages_comes_back_whole(in_process_pool: ConnectionPool) -> None:
    spec = toy_spec("--pagesize", "3")

    with anyio.fail_after(WAIT_S):
        listing = await in_process_pool.list_tools(spec.connection_id, opener(spec))

    assert sorted(tool.name for tool in listing.tools) == sorted(TOY_TOOLS)
    assert listing.skipped == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_announcing_new_tools_makes_the_pool_call_on_tools_changed(
    in_process_pool: ConnectionPool, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    changed = anyio.Event()
    seen: list[uuid.UUID] = []

    async def on_tools_changed(connection_id: uuid.UUID) -> None:
        seen.append(connection_id)
        changed.set()

    in_process_pool.on_tools_changed = on_tools_changed
    spec = toy_spec(mode=mode)
    # On 2026-07-28 the subscription starts with the session.
    await call(in_process_pool, spec, "echo", text="warm up")

    assert text_of(await call(in_process_pool, spec, "grow")) == "grown_1"
    with anyio.fail_after(WAIT_S):
        await changed.wait()
        listing = await in_process_pool.list_tools(spec.connection_id, opener(spec))

    assert connected_over(caplog, "toy") == [PROTOCOL[mode]]
    assert seen[0] == spec.connection_id
    assert "grown_1" in {tool.name for tool in listing.tools}


# --- environment, stderr and secrets ----------------------------------------------------------


async def test_a_stdio_child_sees_declared_env_and_path_but_not_the_bots_environment(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_SECRET_X", "parent-only-value")
    spec = toy_spec(env={"DECLARED_VAR": "for-the-child"})

    assert text_of(await call(pool, spec, "env", name="BOT_SECRET_X")) == "<unset>"
    assert text_of(await call(pool, spec, "env", name="DECLARED_VAR")) == "for-the-child"
    assert text_of(await call(pool, spec, "env", name="PATH")) not in ("", "<unset>")


async def test_a_stdio_childs_stderr_goes_to_the_log_under_the_connection_name(
    pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    spec = toy_spec(name="chatty")

    await call(pool, spec, "echo", text="hello")

    await wait_until(
        lambda: "toy server starting" in logged_lines(caplog, "chatty"),
        what="the child's start line is logged",
    )


LEAKED = "sk-live-7c1e5d9a0b3f42e6"


async def test_secrets_printed_to_stderr_by_a_child_are_scrubbed_from_the_log(
    pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    spec = leaky_spec(env={"LEAKY_TOKEN": LEAKED}, secret_values=[LEAKED])

    await call(pool, spec, "shout", text=f"again: {LEAKED}")

    expected = ["leaky server starting with token [redacted]", "again: [redacted]"]
    await wait_until(lambda: logged_lines(caplog, "leaky") == expected, what=f"log lines {expected}")
    assert LEAKED not in caplog.text


async def test_a_secret_cut_by_the_stderr_line_limit_does_not_leak_its_beginning(
    pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    spec = leaky_spec(env={"LEAKY_TOKEN": LEAKED}, secret_values=[LEAKED])

    await call(pool, spec, "shout", text=LEAKED, pad=1990)  # the secret straddles the 2000-character cut
    await call(pool, spec, "shout", text="marker")

    await wait_until(lambda: "marker" in logged_lines(caplog, "leaky"), what="the marker line is logged")
    assert LEAKED[:10] not in caplog.text


async def test_stderr_lines_after_an_over_long_line_still_reach_the_log(
    pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_core")
    spec = leaky_spec()

    await call(pool, spec, "shout", text="end of a very long line", pad=1_500_000)
    await call(pool, spec, "shout", text="marker")

    await wait_until(
        lambda: "marker" in logged_lines(caplog, "leaky"), what="the marker line is logged", timeout_s=3.0
    )


@pytest.mark.parametrize("code", [-32000, -32001, -32099, -32602])
async def test_a_json_rpc_error_comes_back_as_an_error_result_with_secrets_scrubbed(
    in_process_pool: ConnectionPool, code: int
) -> None:
    # -32000..-32099 is JSON-RPC's server-error range; the SDK also uses -32000 and -32001 for
    # errors it makes up itself (connection closed, request timed out), but these come from the server.
    spec = leaky_spec(secret_values=[LEAKED])

    result = await call(in_process_pool, spec, "reject", message=f"bad key {LEAKED}", code=code)

    assert result.is_error
    assert str(code) in text_of(result)
    assert "bad key [redacted]" in text_of(result)
    assert LEAKED not in text_of(result)
    assert in_process_pool.is_live(spec.connection_id)


def test_a_session_spec_never_shows_its_secrets_in_repr_or_str() -> None:
    spec = SessionSpec(
        connection_id=uuid.uuid4(),
        name="github",
        transport="streamable_http",
        url="https://example.invalid/mcp",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY},
        env={"GITHUB_TOKEN": LEAKED},
        secret_values=(TOKEN, API_KEY, LEAKED),
    )

    for shown in (repr(spec), str(spec), f"{spec}", f"{spec!r}", repr([spec]), repr({"spec": spec})):
        assert "github" in shown
        for secret in (TOKEN, API_KEY, LEAKED):
            assert secret not in shown


# --- npm reference servers --------------------------------------------------------------------


def npm_spec(package: str, *args: str, env: dict[str, str] | None = None) -> SessionSpec:
    params = npm_stdio_params(package, *args)
    return stdio_spec(params.command, *params.args, name=package, mode="auto", env=env)


@pytest.mark.npm
async def test_server_everything_echoes_over_stdio(pool: ConnectionPool) -> None:
    spec = npm_spec("server-everything", "stdio")

    with anyio.fail_after(WAIT_S):
        listing = await pool.list_tools(spec.connection_id, opener(spec))
    result = await call(pool, spec, "echo", message="hi there")

    assert {"echo", "get-sum"} <= {tool.name for tool in listing.tools}
    assert listing.skipped == []
    assert not result.is_error
    assert "hi there" in text_of(result)


@pytest.mark.npm
@pytest.mark.parametrize(("npm_mode", "transport"), [("streamableHttp", "streamable_http"), ("sse", "sse")])
async def test_server_everything_echoes_over_http(
    pool: ConnectionPool, npm_mode: Literal["streamableHttp", "sse"], transport: RemoteTransport
) -> None:
    async with start_npm_http_server("server-everything", npm_mode) as server:
        spec = http_spec(server.url, transport=transport, mode="auto")
        result = await call(pool, spec, "echo", message="over the wire")
        await pool.discard(spec.connection_id)

    assert not result.is_error
    assert "over the wire" in text_of(result)


@pytest.mark.npm
async def test_server_memory_stores_entities_in_the_declared_file(
    pool: ConnectionPool, tmp_path: Path
) -> None:
    memory_file = tmp_path / "memory.jsonl"
    spec = npm_spec("server-memory", env={"MEMORY_FILE_PATH": str(memory_file)})
    entity = {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]}

    created = await call(pool, spec, "create_entities", entities=[entity])
    graph = await call(pool, spec, "read_graph")

    assert not created.is_error
    assert not graph.is_error
    assert "wrote the first program" in text_of(graph)
    assert "Ada" in memory_file.read_text()
