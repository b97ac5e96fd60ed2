"""The test servers behave as the rest of the suite assumes, seen through a raw `mcp.Client`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import anyio
import httpx2
import jsonschema
import pydantic
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ServerNotification, TextContent

from tests.support.servers import (
    RunningServer,
    assert_no_zombies,
    hang_stdio_params,
    npm_stdio_params,
    start_http_server,
    start_http_server_sync,
    start_npm_http_server,
    toy_stdio_params,
)

pytestmark = pytest.mark.anyio

CONNECT_TIMEOUT_S = 30
READ_TIMEOUT_S = 10
TOY_TOOLS = {"echo", "slow", "crash", "huge", "env", "add", "fail", "pid", "grow"}
BEARER = "s3cret-token"


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def text_of(result: object) -> str:
    [block] = result.content  # type: ignore[attr-defined]
    assert isinstance(block, TextContent)
    return block.text


@pytest.fixture(scope="module")
def bearer_server() -> Iterator[RunningServer]:
    with start_http_server_sync("--bearer", BEARER) as server:
        yield server


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_toy_server_over_stdio_lists_its_tools_and_echoes(mode: str) -> None:
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(toy_stdio_params(), mode=mode, read_timeout_seconds=READ_TIMEOUT_S) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            result = await client.call_tool("echo", {"text": "hello"})

    assert set(tools) == TOY_TOOLS
    assert tools["echo"].annotations is not None
    assert tools["echo"].annotations.read_only_hint is True
    assert not result.is_error
    assert text_of(result) == "hello"


async def test_toy_tools_return_structured_content_errors_and_environment() -> None:
    params = toy_stdio_params(env={"TOY_SECRET": "only-for-this-child"})
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(params, mode="legacy", read_timeout_seconds=READ_TIMEOUT_S) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            added = await client.call_tool("add", {"a": 2, "b": 3})
            failed = await client.call_tool("fail")
            passed = await client.call_tool("env", {"name": "TOY_SECRET"})
            unset = await client.call_tool("env", {"name": "PYTEST_CURRENT_TEST"})
            huge = await client.call_tool("huge", {"size": 100_000})

    assert tools["add"].output_schema is not None
    assert added.structured_content == {"result": 5}
    assert failed.is_error
    assert "toy tool failed on purpose" in text_of(failed)
    assert text_of(passed) == "only-for-this-child"
    assert text_of(unset) == "<unset>"  # stdio children get a minimal environment
    assert len(text_of(huge)) == 100_000


async def test_toy_server_writes_its_start_line_to_the_given_errlog() -> None:
    with tempfile.TemporaryFile("w+") as errlog:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            async with Client(stdio_client(toy_stdio_params(), errlog=errlog), mode="legacy") as client:
                await client.list_tools()
        errlog.seek(0)
        assert "toy server starting" in errlog.read()


async def test_crash_tool_closes_the_connection_mid_call() -> None:
    with anyio.fail_after(CONNECT_TIMEOUT_S), pytest.raises(BaseException) as info:  # noqa: PT011
        async with Client(toy_stdio_params(), mode="legacy", read_timeout_seconds=READ_TIMEOUT_S) as client:
            await client.call_tool("crash")
    assert any(isinstance(leaf, MCPError) and "Connection closed" in str(leaf) for leaf in leaves(info.value))


async def test_grow_adds_a_tool_and_notifies_a_legacy_session() -> None:
    changed = anyio.Event()

    async def on_message(message: ServerNotification | Exception) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(
            toy_stdio_params(), mode="legacy", read_timeout_seconds=READ_TIMEOUT_S, message_handler=on_message
        ) as client:
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed
            grown = text_of(await client.call_tool("grow"))
            await changed.wait()
            names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}

    assert grown == "grown_1"
    assert names == TOY_TOOLS | {"grown_1"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_malformed_tool_makes_a_raw_client_listing_raise(mode: str) -> None:
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(
            toy_stdio_params("--malformed"), mode=mode, read_timeout_seconds=READ_TIMEOUT_S
        ) as client:
            with pytest.raises(pydantic.ValidationError, match=r"inputSchema\.type"):
                await client.list_tools()


async def test_pagesize_splits_the_tool_listing_into_cursor_pages() -> None:
    pages = []
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(
            toy_stdio_params("--pagesize", "4"), mode="legacy", read_timeout_seconds=READ_TIMEOUT_S
        ) as client:
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                pages.append([tool.name for tool in page.tools])
                if (cursor := page.next_cursor) is None:
                    break

    assert [len(page) for page in pages] == [4, 4, 1]
    assert {name for page in pages for name in page} == TOY_TOOLS


async def test_hang_server_never_answers_initialize() -> None:
    params = hang_stdio_params("--exit-on-eof")
    with anyio.fail_after(CONNECT_TIMEOUT_S), pytest.raises(BaseException) as info:  # noqa: PT011
        async with Client(params, mode="legacy", read_timeout_seconds=0.5):
            pass
    assert any(isinstance(leaf, MCPError) and "timed out" in str(leaf) for leaf in leaves(info.value))


async def test_streamable_http_server_serves_a_client_with_the_bearer_token(
    bearer_server: RunningServer,
) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BEARER}"}) as http:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            transport = streamable_http_client(bearer_server.url, http_client=http)
            async with Client(transport, read_timeout_seconds=READ_TIMEOUT_S) as client:
                result = await client.call_tool("echo", {"text": "over http"})
    assert text_of(result) == "over http"


async def test_streamable_http_server_refuses_a_client_without_the_bearer_token(
    bearer_server: RunningServer,
) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(bearer_server.url, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"

    with anyio.fail_after(CONNECT_TIMEOUT_S), pytest.raises(BaseException) as info:  # noqa: PT011
        async with Client(bearer_server.url, mode="legacy", read_timeout_seconds=READ_TIMEOUT_S):
            pass
    assert any(isinstance(leaf, MCPError) for leaf in leaves(info.value))


async def test_sse_server_serves_a_client_with_the_bearer_token_and_refuses_one_without() -> None:
    headers = {"Authorization": f"Bearer {BEARER}"}
    async with start_http_server("--bearer", BEARER, transport="sse") as (url, process):
        assert url.endswith("/sse")
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            async with Client(
                sse_client(url, headers=headers), read_timeout_seconds=READ_TIMEOUT_S
            ) as client:
                result = await client.call_tool("echo", {"text": "over sse"})
        with anyio.fail_after(CONNECT_TIMEOUT_S), pytest.raises(BaseException) as info:  # noqa: PT011
            async with Client(sse_client(url), read_timeout_seconds=READ_TIMEOUT_S):
                pass

    assert text_of(result) == "over sse"
    statuses = [
        leaf.response.status_code for leaf in leaves(info.value) if isinstance(leaf, httpx2.HTTPStatusError)
    ]
    assert statuses == [401]
    assert process.poll() is not None
    assert_no_zombies()


async def test_required_header_is_enforced_but_stats_are_always_served() -> None:
    async with start_http_server("--require-header", "X-Api-Key=k1") as server, httpx2.AsyncClient() as http:
        refused = await http.post(server.url, json={})
        wrong = await http.post(server.url, json={}, headers={"X-Api-Key": "nope"})
        accepted = await http.post(server.url, json={}, headers={"X-Api-Key": "k1"})
        stats = await http.get(f"{server.base_url}/stats")

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert accepted.status_code not in (401, 404)  # reached the MCP endpoint (which rejects `{}`)
    assert stats.json() == {"tcp_connections": 1, "requests": 3}  # one pooled connection; /stats not counted


async def test_required_query_parameter_is_enforced_after_url_decoding() -> None:
    value = "k/1+2=="  # URL encoding changes each of / + =
    async with (
        start_http_server("--require-query", f"api_key={value}") as server,
        httpx2.AsyncClient() as http,
    ):
        refused = await http.post(server.url, json={})
        wrong = await http.post(server.url, json={}, params={"api_key": "nope"})
        accepted = await http.post(server.url, json={}, params={"api_key": value, "other": "x"})
        stats = await http.get(f"{server.base_url}/stats")

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert accepted.status_code not in (401, 404)
    assert stats.status_code == 200


async def test_bad_json_schema_tool_is_valid_mcp_but_not_valid_json_schema() -> None:
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(
            toy_stdio_params("--bad-json-schema"), mode="legacy", read_timeout_seconds=READ_TIMEOUT_S
        ) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == TOY_TOOLS | {"bad_json_schema"}
    schema = tools["bad_json_schema"].input_schema
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.validators.validator_for(schema).check_schema(schema)


async def test_stats_count_the_tcp_connections_and_requests_of_a_session() -> None:
    async with start_http_server() as server:
        assert server.stats() == {"tcp_connections": 0, "requests": 0}
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            async with Client(server.url, mode="legacy", read_timeout_seconds=READ_TIMEOUT_S) as client:
                for _ in range(3):
                    await client.call_tool("echo", {"text": "x"})
        stats = server.stats()

    # legacy sessions against an SSE-answering server open a connection per request (reference §3.10)
    assert stats["requests"] >= 5  # initialize, initialized, 3 calls (+ listing, GET stream, DELETE)
    assert 1 <= stats["tcp_connections"] <= stats["requests"]


@pytest.mark.npm
async def test_npm_server_everything_lists_tools_over_stdio() -> None:
    params: StdioServerParameters = npm_stdio_params("server-everything", "stdio")
    with anyio.fail_after(CONNECT_TIMEOUT_S):
        async with Client(params, read_timeout_seconds=READ_TIMEOUT_S) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("echo", {"message": "hi"})
    assert {"echo", "get-sum", "trigger-long-running-operation"} <= names
    assert "hi" in text_of(result)


@pytest.mark.npm
@pytest.mark.parametrize("mode", ["streamableHttp", "sse"])
async def test_npm_server_everything_lists_tools_over_http(mode: str) -> None:
    async with start_npm_http_server("server-everything", mode) as server:  # type: ignore[arg-type]
        transport = server.url if mode == "streamableHttp" else sse_client(server.url)
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            async with Client(transport, read_timeout_seconds=READ_TIMEOUT_S) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
    assert "echo" in names
