"""mcp_core._sdk_errors: what the SDK and its transports raise, as the errors users see.

The exceptions here are the SDK's own types, built as the SDK builds them; the pool tests
(test_connections.py) reach the same paths through real servers.
"""

from __future__ import annotations

import asyncio
import functools
import uuid

import httpx2
import mcp_types as types
import pydantic
import pytest
from mcp import MCPError

from mcp_core import errors
from mcp_core._sdk_errors import SessionFacts, call_error, connect_error
from mcp_core.models import SessionSpec
from mcp_core.security import scrub

SECRET = "tok-5d1f0a9c7b3e"
URL = "https://mcp.example.com/mcp"


def facts(
    *, transport: str = "streamable_http", http_status: int | None = None, sandbox_stop: str | None = None
) -> SessionFacts:
    where = {"command": "/usr/bin/mcp-thing"} if transport == "stdio" else {"url": URL}
    spec = SessionSpec(
        connection_id=uuid.uuid4(),
        name="github",
        transport=transport,
        connect_timeout_s=7.0,
        secret_values=(SECRET,),
        **where,
    )
    return SessionFacts(spec, functools.partial(scrub, secrets=spec.secret_values), http_status, sandbox_stop)


def status_error(status: int) -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", URL)
    return httpx2.HTTPStatusError(
        "refused", request=request, response=httpx2.Response(status, request=request)
    )


# SDK stand-in for a non-2xx answer to a streamable HTTP POST: the status is not in the text.
STAND_IN = MCPError(types.INTERNAL_ERROR, "Server returned an error response")


# --- HTTP refusals are decided on the status ---------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_status_seen_by_the_transport_is_an_auth_error_naming_the_status(status: int) -> None:
    error = connect_error(ExceptionGroup("connect", [STAND_IN]), facts(http_status=status))

    assert isinstance(error, errors.ServerAuthError)
    assert str(error) == (
        f"github: the server refused the credentials (HTTP {status}). Reconnect with a valid token."
    )


@pytest.mark.parametrize(("status", "auth"), [(401, True), (403, True), (404, False), (502, False)])
def test_an_http_status_error_is_decided_on_its_response_status(status: int, auth: bool) -> None:
    error = connect_error(status_error(status), facts(transport="sse"))

    assert isinstance(error, errors.ServerUnavailableError)
    assert isinstance(error, errors.ServerAuthError) is auth
    assert f"HTTP {status}" in str(error)


def test_a_404_seen_by_the_transport_says_there_is_no_mcp_endpoint() -> None:
    not_found = MCPError(types.METHOD_NOT_FOUND, "Not Found")

    error = connect_error(not_found, facts(http_status=404))

    assert str(error) == "github: there is no MCP endpoint at this URL (HTTP 404)."


def test_another_error_status_is_named_with_the_servers_message() -> None:
    error = connect_error(STAND_IN, facts(http_status=500))

    assert type(error) is errors.ServerUnavailableError
    assert "(HTTP 500): Server returned an error response" in str(error)


def test_words_about_401_in_a_message_are_not_a_refusal_when_the_http_status_said_ok() -> None:
    worded = MCPError(types.INVALID_REQUEST, "401 Unauthorized: see docs")

    error = connect_error(worded, facts(http_status=200))

    assert type(error) is errors.ServerUnavailableError
    assert "refused the MCP handshake: 401 Unauthorized" in str(error)


@pytest.mark.parametrize("words", ["upstream said 401", "403 Forbidden", "Unauthorized token"])
def test_without_any_http_status_a_stdio_servers_words_about_refusal_are_an_auth_error(words: str) -> None:
    error = connect_error(MCPError(types.INVALID_REQUEST, words), facts(transport="stdio"))

    assert isinstance(error, errors.ServerAuthError)


def test_a_refusal_status_wins_over_the_sdks_timeout_code() -> None:
    timed_out = MCPError(types.REQUEST_TIMEOUT, "Request 'initialize' timed out")

    assert isinstance(connect_error(timed_out, facts(http_status=401)), errors.ServerAuthError)
    assert isinstance(connect_error(timed_out, facts(http_status=200)), errors.ServerTimeoutError)


# --- other connect failures ---------------------------------------------------------------------


def test_a_connect_that_ran_out_of_time_names_the_connect_timeout() -> None:
    error = connect_error(TimeoutError(), facts())

    assert isinstance(error, errors.ServerTimeoutError)
    assert str(error) == "github: did not finish connecting within 7 s."


def test_cancellations_in_the_group_are_skipped_for_the_real_cause() -> None:
    group = BaseExceptionGroup("connect", [asyncio.CancelledError(), httpx2.ConnectError("refused")])

    error = connect_error(group, facts())

    assert type(error) is errors.ServerUnavailableError
    assert "could not reach the server" in str(error)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (FileNotFoundError(), "could not start “/usr/bin/mcp-thing”: command not found"),
        (PermissionError(), "could not start “/usr/bin/mcp-thing”: permission denied"),
        (MCPError(types.CONNECTION_CLOSED, "Connection closed"), "the server exited during startup"),
    ],
)
def test_a_stdio_server_that_cannot_start_says_why(exc: BaseException, expected: str) -> None:
    error = connect_error(exc, facts(transport="stdio"))

    assert type(error) is errors.ServerUnavailableError
    assert expected in str(error)


def test_a_sandbox_stop_during_startup_names_the_limit() -> None:
    closed = MCPError(types.CONNECTION_CLOSED, "Connection closed")

    error = connect_error(closed, facts(transport="stdio", sandbox_stop="memory limit"))

    assert str(error) == "github: the sandbox stopped the server (memory limit) during startup."


def test_an_mcp_core_error_raised_by_the_transport_passes_through_unchanged() -> None:
    policy = errors.ServerUnavailableError("github", "bubblewrap cannot work here.")

    assert connect_error(ExceptionGroup("connect", [policy]), facts()) is policy


def test_a_secret_in_the_servers_message_is_scrubbed() -> None:
    leaky = MCPError(types.INVALID_REQUEST, f"bad token {SECRET}")

    error = connect_error(leaky, facts(http_status=400))

    assert SECRET not in str(error)
    assert "bad token [redacted]" in str(error)


# --- call failures ------------------------------------------------------------------------------


def test_a_call_that_broke_the_session_on_a_timeout_says_it_was_not_retried() -> None:
    error = call_error(TimeoutError(), facts(), "create_issue", 3.0)

    assert isinstance(error, errors.ServerTimeoutError)
    assert "create_issue did not answer within 3 s" in str(error)
    assert "not retried" in str(error)


def test_a_lost_connection_during_a_call_is_a_crash_not_retried() -> None:
    error = call_error(ExceptionGroup("call", [httpx2.ReadError("reset")]), facts(), "create_issue", 3.0)

    assert isinstance(error, errors.ServerCrashedError)
    assert "not retried" in str(error)


def test_an_off_spec_result_is_a_protocol_error() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        types.CallToolResult.model_validate({"content": "not a list"})

    error = call_error(info.value, facts(), "create_issue", 3.0)

    assert isinstance(error, errors.ServerProtocolError)


def test_a_call_the_sandbox_stopped_names_the_limit() -> None:
    error = call_error(OSError(), facts(transport="stdio", sandbox_stop="CPU time limit"), "build", 3.0)

    assert isinstance(error, errors.ServerCrashedError)
    assert "the sandbox stopped the server (CPU time limit) while running build" in str(error)
