"""ToolRegistry: connecting, discovering, failing cleanly and removing, through build_services.

Catalog, calls and usage live in test_registry_calls.py; the URL policy's unit cases in
test_security.py.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from urllib.parse import quote, quote_plus

import anyio
import psutil
import pytest

from mcp_core import errors
from mcp_core.models import Connection, ConnectionStatus, NewConnection
from mcp_core.registry import Discovery
from mcp_core.services import Services
from tests.support.pool import LEAKY, WAIT_S, wait_process_gone, wait_until
from tests.support.registry import (
    BEARER,
    CALL_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    CREDENTIAL_REF,
    QUERY_KEY,
    TEAM,
    USER,
    USER_B,
    add,
    add_remote,
    assert_neighbour_served,
    call,
    catalog_name,
    hang,
    make_settings,
    open_services,
    remote,
    toy,
    wait_for,
)
from tests.support.secrets import DictSecrets
from tests.support.servers import HANG, RunningServer

pytestmark = pytest.mark.anyio

TOY_TOOLS = {"echo", "slow", "crash", "huge", "env", "add", "fail", "pid", "grow"}
HANG_TIMEOUT_S = 1.0
SLACK_S = 3.0
"""How far past its own timeout a failure may take to surface (process start, scheduling)."""
BAD_TOKEN = "tok-wrong-8d2e61b7"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def assert_kept_with(services: Services, connection: Connection, status: str) -> Connection:
    """The connection is still stored, with ``status`` and a user-facing detail."""
    stored = await services.store.get_connection(TEAM, USER, connection.id)
    assert stored.status == status
    assert stored.status_detail
    assert stored.status_detail.startswith(f"{stored.name}: ")
    return stored


def hang_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if str(HANG) in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


# --- connecting ---------------------------------------------------------------------------------


async def test_adding_a_stdio_server_stores_its_tools_and_marks_it_healthy(
    services_on_each_db: Services,
) -> None:
    services = services_on_each_db
    started = time.time()

    outcome = await add(services, toy("mine"))

    assert outcome.error is None
    stored = await services.store.get_connection(TEAM, USER, outcome.connection.id)
    assert stored == outcome.connection
    assert stored.status == ConnectionStatus.HEALTHY
    assert stored.status_detail is None
    assert {tool.name for tool in stored.tools} == TOY_TOOLS
    assert stored.last_verified_at is not None
    assert stored.last_verified_at.timestamp() >= started - 1
    echo = next(tool for tool in stored.tools if tool.name == "echo")
    assert echo.read_only is True
    assert echo.input_schema["required"] == ["text"]
    assert {entry.name for entry in await services.registry.catalog(TEAM, USER)} == {
        f"mine__{tool}" for tool in TOY_TOOLS
    }


async def test_adding_an_http_server_connects_with_the_bearer_token_from_the_secret_source(
    services_on_each_db: Services, secrets: DictSecrets, bearer_server: RunningServer
) -> None:
    services = services_on_each_db
    outcome = await add(services, remote("remote", bearer_server.url))
    assert outcome.error is not None  # no token stored yet: the server refuses
    connection_id = outcome.connection.id
    secrets.put(TEAM, USER, CREDENTIAL_REF, {"header:Authorization": f"Bearer {BEARER}"})

    with anyio.fail_after(CONNECT_TIMEOUT_S + WAIT_S):
        report = await services.registry.test(TEAM, USER, connection_id)

    assert (report.connection, report.ok, report.tool_count, report.error) == ("remote", True, 9, None)
    stored = await services.store.get_connection(TEAM, USER, connection_id)
    assert stored.status == ConnectionStatus.HEALTHY
    assert stored.status_detail is None
    assert {tool.name for tool in stored.tools} == TOY_TOOLS
    assert stored.last_verified_at is not None
    assert (TEAM, USER, CREDENTIAL_REF) in secrets.reads
    result = await call(services, await catalog_name(services, "remote", "echo"), text="over http")
    assert result.text == "over http"


@pytest.mark.parametrize("token", [None, BAD_TOKEN], ids=["missing", "wrong"])
async def test_a_missing_or_wrong_bearer_token_marks_the_connection_needs_auth(
    services: Services, secrets: DictSecrets, bearer_server: RunningServer, token: str | None
) -> None:
    outcome = await add(services, remote("remote", bearer_server.url))
    if token is not None:
        secrets.put(TEAM, USER, CREDENTIAL_REF, {"header:Authorization": f"Bearer {token}"})
        with pytest.raises(errors.ServerAuthError):
            await services.registry.discover(TEAM, USER, outcome.connection.id)
    else:
        assert isinstance(outcome.error, errors.ServerAuthError)
    await assert_kept_with(services, outcome.connection, ConnectionStatus.NEEDS_AUTH)


async def test_a_query_secret_is_sent_as_a_url_parameter_but_never_stored(
    services: Services, secrets: DictSecrets, query_server: RunningServer
) -> None:
    # query_server answers 401 unless ?api_key=QUERY_KEY arrives intact (after URL decoding).
    new = remote("keyed", query_server.url, query={"region": "eu"})
    stored = await add_remote(services, secrets, new, {"query:api_key": QUERY_KEY})

    assert stored.status == ConnectionStatus.HEALTHY
    assert {tool.name for tool in stored.tools} == TOY_TOOLS
    assert stored.url == query_server.url
    assert QUERY_KEY not in stored.model_dump_json()
    result = await call(services, await catalog_name(services, "keyed", "echo"), text="keyed")
    assert result.text == "keyed"


# --- failing cleanly ------------------------------------------------------------------------------


async def test_a_refused_url_is_reported_by_name_and_kept_with_status_error(
    services: Services, neighbour: str, closed_port: int
) -> None:
    started = time.monotonic()
    outcome = await add(services, remote("refused", f"http://127.0.0.1:{closed_port}/mcp"))

    assert isinstance(outcome.error, errors.ServerUnavailableError)
    assert outcome.error.connection == "refused"
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + SLACK_S
    stored = await assert_kept_with(services, outcome.connection, ConnectionStatus.ERROR)
    assert stored.status_detail == str(outcome.error)
    assert stored.tools == []
    await assert_neighbour_served(services, neighbour)


async def test_a_missing_command_is_reported_by_name_and_kept_with_status_error(
    services: Services, neighbour: str
) -> None:
    new = NewConnection(name="missing", transport="stdio", command="/nonexistent/mcp-server-xyz")
    started = time.monotonic()
    outcome = await add(services, new)

    assert isinstance(outcome.error, errors.ServerUnavailableError)
    assert "missing" in str(outcome.error)
    assert "command not found" in str(outcome.error)
    assert time.monotonic() - started < CONNECT_TIMEOUT_S
    await assert_kept_with(services, outcome.connection, ConnectionStatus.ERROR)
    await assert_neighbour_served(services, neighbour)


async def test_a_server_that_hangs_on_initialize_times_out_after_its_own_connect_timeout(
    services: Services, neighbour: str
) -> None:
    started = time.monotonic()
    outcome = await add(services, hang("stuck", connect_timeout_s=HANG_TIMEOUT_S))
    elapsed = time.monotonic() - started

    assert isinstance(outcome.error, errors.ServerTimeoutError)
    assert outcome.error.connection == "stuck"
    assert f"{HANG_TIMEOUT_S:g} s" in str(outcome.error)
    assert HANG_TIMEOUT_S <= elapsed < HANG_TIMEOUT_S + SLACK_S  # its own timeout, not the default 5 s
    await assert_kept_with(services, outcome.connection, ConnectionStatus.ERROR)
    await wait_until(lambda: not hang_processes(), what="the hung server was stopped")
    await assert_neighbour_served(services, neighbour)


async def test_a_server_that_dies_mid_call_raises_by_name_and_the_next_call_starts_a_new_one(
    services: Services, neighbour: str
) -> None:
    await add(services, toy("fragile"))
    pid = int((await call(services, "fragile__pid")).text)
    started = time.monotonic()

    with pytest.raises(errors.ServerCrashedError) as info:
        await call(services, "fragile__crash")

    assert time.monotonic() - started < CALL_TIMEOUT_S
    assert info.value.connection == "fragile"
    assert "not retried" in str(info.value)
    await wait_process_gone(pid)
    await assert_neighbour_served(services, neighbour)
    assert int((await call(services, "fragile__pid")).text) != pid


async def test_a_server_that_dies_mid_call_is_marked_error_with_the_reason(services: Services) -> None:
    outcome = await add(services, toy("fragile"))

    with pytest.raises(errors.ServerCrashedError) as info:
        await call(services, "fragile__crash")

    stored = await assert_kept_with(services, outcome.connection, ConnectionStatus.ERROR)
    assert stored.status_detail == str(info.value)


async def test_malformed_tools_are_left_out_and_the_good_ones_stay_usable(services: Services) -> None:
    # --malformed: inputSchema {"type": "string"} (off-spec MCP, dropped by the pool's reader);
    # --bad-json-schema: valid MCP but not valid JSON Schema (dropped by the registry).
    outcome = await add(services, toy("odd", "--malformed", "--bad-json-schema"))

    assert outcome.error is None
    assert outcome.connection.status == ConnectionStatus.HEALTHY
    assert {tool.name for tool in outcome.connection.tools} == TOY_TOOLS
    catalog = {entry.tool.name for entry in await services.registry.catalog(TEAM, USER)}
    assert catalog == TOY_TOOLS
    assert (await call(services, "odd__echo", text="fine")).text == "fine"
    with anyio.fail_after(CALL_TIMEOUT_S + WAIT_S):
        discovery = await services.registry.discover(TEAM, USER, outcome.connection.id)
    assert {name for name, _why in discovery.skipped} == {"bad_schema", "bad_json_schema"}


@pytest.mark.parametrize("second", ["echo", "Echo", " ECHO "])
async def test_a_duplicate_connection_name_is_refused_and_the_first_row_is_kept_alone(
    services_on_each_db: Services, toy_server: RunningServer, closed_port: int, second: str
) -> None:
    services = services_on_each_db
    first = await add(services, remote("echo", toy_server.url))

    duplicate = remote(second, f"http://127.0.0.1:{closed_port}/mcp")
    with pytest.raises(errors.DuplicateConnectionError, match="echo"):
        await add(services, duplicate)

    [only] = await services.store.list_connections(TEAM, USER)
    assert only == await services.store.get_connection(TEAM, USER, first.connection.id)
    assert only.url == toy_server.url
    assert only.status == ConnectionStatus.HEALTHY


# --- discovery -------------------------------------------------------------------------------------


async def test_discover_all_runs_concurrently_and_one_failure_does_not_stop_the_rest(
    services: Services,
) -> None:
    await add(services, toy("good"))
    for name in ("stuck1", "stuck2"):  # stored directly: adding would wait out each timeout
        await services.store.create_connection(TEAM, USER, hang(name, connect_timeout_s=HANG_TIMEOUT_S))

    started = time.monotonic()
    with anyio.fail_after(2 * HANG_TIMEOUT_S + WAIT_S):
        results = await services.registry.discover_all(TEAM, USER)
    elapsed = time.monotonic() - started

    assert elapsed < 2 * HANG_TIMEOUT_S  # one after the other would take both timeouts
    assert set(results) == {"good", "stuck1", "stuck2"}
    good = results["good"]
    assert isinstance(good, Discovery)
    assert {tool.name for tool in good.tools} == TOY_TOOLS
    assert isinstance(results["stuck1"], errors.ServerTimeoutError)
    assert isinstance(results["stuck2"], errors.ServerTimeoutError)
    statuses = {c.name: c.status for c in await services.store.list_connections(TEAM, USER)}
    assert statuses == {"good": "healthy", "stuck1": "error", "stuck2": "error"}


async def test_a_tool_added_by_the_server_appears_in_the_catalog_after_list_changed(
    services: Services,
) -> None:
    await add(services, toy("growing"))

    assert (await call(services, "growing__grow")).text == "grown_1"

    async def listed() -> bool:
        return "growing__grown_1" in {e.name for e in await services.registry.catalog(TEAM, USER)}

    await wait_for(listed, what="grown_1 reached the catalog")
    assert (await call(services, "growing__grown_1")).text == "grown_1"


# --- removing --------------------------------------------------------------------------------------


async def test_removing_a_connection_stops_its_server_and_deletes_the_row_and_its_folder(
    services_on_each_db: Services,
) -> None:
    services = services_on_each_db
    outcome = await add(services, toy("doomed"))
    pid = int((await call(services, "doomed__pid")).text)
    assert (services.settings.data_dir / "servers" / str(outcome.connection.id)).is_dir()

    with anyio.fail_after(WAIT_S):
        removed = await services.registry.remove_connection(TEAM, USER, outcome.connection.id)

    assert removed is True
    assert not psutil.pid_exists(pid)  # remove waits until the process is gone
    assert not services.pool.is_live(outcome.connection.id)
    assert not (services.settings.data_dir / "servers" / str(outcome.connection.id)).exists()
    with pytest.raises(errors.ConnectionNotFoundError):
        await services.store.get_connection(TEAM, USER, outcome.connection.id)
    assert await services.registry.catalog(TEAM, USER) == []
    with pytest.raises(errors.UnknownToolError):
        await call(services, "doomed__pid")


async def test_changing_a_connection_keeps_its_id_and_usage_and_reconnects_to_the_new_url(
    services: Services, toy_server: RunningServer, closed_port: int
) -> None:
    broken = await add(services, remote("moving", f"http://127.0.0.1:{closed_port}/mcp"))
    assert broken.error is not None

    moved = await services.registry.update_connection(TEAM, USER, broken.connection.id, url=toy_server.url)
    await call(services, "moving__echo", text="here now")
    await services.usage.flush()

    assert moved.error is None
    assert moved.connection.id == broken.connection.id
    stored = await services.store.get_connection(TEAM, USER, broken.connection.id)
    assert (stored.url, stored.status, stored.usage_count) == (toy_server.url, ConnectionStatus.HEALTHY, 1)


async def test_changing_a_connection_to_a_refused_url_changes_nothing(
    services: Services, toy_server: RunningServer
) -> None:
    outcome = await add(services, remote("steady", toy_server.url))

    with pytest.raises(errors.PolicyError):
        await services.registry.update_connection(
            TEAM, USER, outcome.connection.id, url="http://10.9.9.9/mcp"
        )

    stored = await services.store.get_connection(TEAM, USER, outcome.connection.id)
    assert (stored.url, stored.status) == (toy_server.url, ConnectionStatus.HEALTHY)


# --- URL policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed", "says"),
    [
        ("http://93.184.216.34/mcp", ["127.0.0.1", "localhost"], "https://"),
        ("http://10.1.2.3/mcp", [], "https://"),
        ("https://10.1.2.3/mcp", [], "private or local"),
        ("https://127.0.0.1/mcp", [], "private or local"),
        ("https://[::1]/mcp", ["127.0.0.1"], "private or local"),
        ("https://169.254.169.254/latest/meta-data", [], "private or local"),
        ("https://user:hunter2-pass@example.com/mcp", [], "credentials in the URL"),
        ("file:///etc/passwd", [], "https://example.com/mcp"),
    ],
)
async def test_a_url_the_policy_refuses_raises_policy_error_and_stores_nothing(
    tmp_path, url: str, allowed: list[str], says: str
) -> None:
    async with open_services(make_settings(tmp_path, mcp_allowed_hosts=allowed)) as services:
        with pytest.raises(errors.PolicyError) as info:
            await add(services, remote("blocked", url))

        assert says in str(info.value)
        assert "hunter2" not in str(info.value)
        assert await services.store.list_connections(TEAM, USER) == []
        assert services.pool.live_count == 0


async def test_a_cidr_in_allowed_hosts_lets_matching_addresses_use_plain_http(
    tmp_path, toy_server: RunningServer
) -> None:
    async with open_services(make_settings(tmp_path, mcp_allowed_hosts=["127.0.0.0/8"])) as services:
        outcome = await add(services, remote("local", toy_server.url))

        assert outcome.error is None
        assert outcome.connection.status == ConnectionStatus.HEALTHY


async def test_a_host_no_longer_allowed_is_refused_at_the_next_connect(
    tmp_path, toy_server: RunningServer
) -> None:
    async with open_services(make_settings(tmp_path)) as services:
        outcome = await add(services, remote("local", toy_server.url))
        assert outcome.error is None

    async with open_services(make_settings(tmp_path, mcp_allowed_hosts=[])) as services:
        with pytest.raises(errors.PolicyError):
            await services.registry.discover(TEAM, USER, outcome.connection.id)

        stored = await services.store.get_connection(TEAM, USER, outcome.connection.id)
        assert stored.status == ConnectionStatus.ERROR
        assert stored.status_detail is not None
        assert "MCP_ALLOWED_HOSTS" in stored.status_detail


async def test_a_stdio_endpoint_inside_the_bots_network_is_refused_and_nothing_is_stored(tmp_path) -> None:
    async with open_services(make_settings(tmp_path, mcp_allowed_hosts=[])) as services:
        new = toy("db", endpoints=["postgresql://reader@127.0.0.1:5432/app"])
        with pytest.raises(errors.PolicyError, match="MCP_ALLOWED_HOSTS"):
            await add(services, new)

        assert await services.store.list_connections(TEAM, USER) == []
        assert services.pool.live_count == 0


async def test_a_stdio_endpoint_no_longer_allowed_is_refused_at_the_next_connect_and_edit(tmp_path) -> None:
    async with open_services(make_settings(tmp_path)) as services:
        outcome = await add(services, toy("db", endpoints=["postgresql://reader@127.0.0.1:5432/app"]))
        assert outcome.error is None

    async with open_services(make_settings(tmp_path, mcp_allowed_hosts=[])) as services:
        connection_id = outcome.connection.id
        with pytest.raises(errors.PolicyError):
            await services.registry.discover(TEAM, USER, connection_id)
        assert services.pool.live_count == 0  # the server was never started

        moved = {"endpoints": ["postgresql://reader@10.9.8.7/app"]}
        with pytest.raises(errors.PolicyError):
            await services.registry.update_connection(TEAM, USER, connection_id, config=moved)
        stored = await services.store.get_connection(TEAM, USER, connection_id)
        assert stored.config["endpoints"] == ["postgresql://reader@127.0.0.1:5432/app"]


# --- secrets stay secret ----------------------------------------------------------------------------


async def test_errors_and_status_details_never_contain_the_connections_secrets(
    services: Services, secrets: DictSecrets, bearer_server: RunningServer, closed_port: int
) -> None:
    values = {"header:Authorization": f"Bearer {BAD_TOKEN}", "query:api_key": QUERY_KEY}
    texts = []
    for name, url in [("wrong", bearer_server.url), ("gone", f"http://127.0.0.1:{closed_port}/mcp")]:
        outcome = await add(services, remote(name, url))
        secrets.put(TEAM, USER, CREDENTIAL_REF, values)
        with pytest.raises(errors.McpServerError) as info:
            await services.registry.discover(TEAM, USER, outcome.connection.id)
        stored = await services.store.get_connection(TEAM, USER, outcome.connection.id)
        texts += [str(info.value), repr(info.value), stored.model_dump_json()]

    for text in texts:
        for secret in (BAD_TOKEN, QUERY_KEY, quote_plus(QUERY_KEY), quote(QUERY_KEY, safe="")):
            assert secret not in text


async def test_a_bearer_token_never_reaches_the_log(
    services: Services, secrets: DictSecrets, bearer_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_remote(
        services, secrets, remote("remote", bearer_server.url), {"header:Authorization": f"Bearer {BEARER}"}
    )
    await call(services, "remote__echo", text="x")

    assert "remote__echo" in {e.name for e in await services.registry.catalog(TEAM, USER)}
    assert BEARER not in caplog.text


async def test_a_query_secret_never_reaches_the_log(
    services: Services, secrets: DictSecrets, query_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the bot's default LOG_LEVEL
    await add_remote(services, secrets, remote("keyed", query_server.url), {"query:api_key": QUERY_KEY})
    await call(services, "keyed__echo", text="x")

    for secret in (QUERY_KEY, quote_plus(QUERY_KEY), quote(QUERY_KEY, safe="")):
        assert secret not in caplog.text


async def test_a_bearer_token_echoed_in_a_server_error_is_redacted(
    services: Services, secrets: DictSecrets
) -> None:
    # leaky.py's reject() answers with a JSON-RPC error carrying any text: like a server that
    # quotes the token it was given ("invalid token …") in its error message.
    leaky = NewConnection(
        name="leaky",
        transport="stdio",
        command=sys.executable,
        args=[str(LEAKY)],
        credential_ref=CREDENTIAL_REF,
    )
    outcome = await add(services, leaky)
    secrets.put(TEAM, USER, CREDENTIAL_REF, {"header:Authorization": f"Bearer {BEARER}"})
    await services.pool.discard(outcome.connection.id)  # the next session opens with the secret

    # -32602: a code the SDK never makes up itself (it uses -32000 for "connection closed").
    result = await call(services, "leaky__reject", message=f"invalid token {BEARER}", code=-32602)

    assert result.is_error
    assert BEARER not in result.text


async def test_a_connections_secret_in_a_successful_tool_result_is_redacted(
    services: Services, secrets: DictSecrets
) -> None:
    secrets.put(TEAM, USER, CREDENTIAL_REF, {"env:TOY_TOKEN": BEARER})
    await add(services, toy("toy").model_copy(update={"credential_ref": CREDENTIAL_REF}))

    dumped = await call(services, "toy__env", name="TOY_TOKEN")  # a server that dumps its environment
    echoed = await call(services, "toy__add", a=1, b=2)

    assert dumped.text == "[redacted]"
    assert not dumped.is_error
    assert echoed.structured == {"result": 3}  # results without a secret are untouched


# --- another user's connection -----------------------------------------------------------------------


async def test_another_user_cannot_make_a_connection_list_its_tools(
    services: Services, toy_server: RunningServer
) -> None:
    outcome = await add(services, remote("mine", toy_server.url))
    before = toy_server.stats()["requests"]

    with pytest.raises(errors.ConnectionNotFoundError):
        await services.registry.discover(TEAM, USER_B, outcome.connection.id)

    assert toy_server.stats()["requests"] == before
