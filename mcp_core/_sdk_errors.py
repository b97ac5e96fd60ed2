"""Translate what the mcp SDK and its transports raise into ``mcp_core.errors``.

The SDK fails in many shapes: an ``ExceptionGroup`` around the real cause on connect,
``MCPError`` (with codes the SDK makes up for timeouts and closed streams), ``OSError`` from a
stdio command, ``httpx2`` errors, pydantic ``ValidationError`` for off-spec answers. The pool
hands each failure here with what it saw of the session (``SessionFacts``) and gets back one
error whose text names the connection, says what to do and never carries a secret.

HTTP refusals are decided on the status the transport saw (``SessionFacts.http_status``), not
on words inside a message: the SDK turns a 401 on a streamable HTTP POST into an
``MCPError("Server returned an error response")`` that says nothing about the status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
import mcp_types as types
from mcp import MCPError
from pydantic import ValidationError

from mcp_core import errors
from mcp_core.models import SessionSpec

logger = logging.getLogger(__name__)

__all__ = ["SessionFacts", "call_error", "connect_error", "stopped"]

REFUSED_CREDENTIALS = (401, 403)
_CREDENTIAL_WORDS = ("401", "403", "unauthorized", "forbidden")


@dataclass(frozen=True)
class SessionFacts:
    """What the pool knew about a session when it failed."""

    spec: SessionSpec
    scrub: Callable[[str], str]
    """Replaces the connection's secrets in any text taken from the server."""
    http_status: int | None = None
    """Status of the last HTTP response the transport received; None when none was (stdio,
    in-process, or the server was never reached)."""
    sandbox_stop: str | None = None
    """Why the stdio sandbox stopped the server (a limit it hit), if it did."""


def connect_error(exc: BaseException, facts: SessionFacts) -> errors.McpCoreError:
    """The error to show for a session that could not be opened (transport or handshake).

    ``exc`` may be a (nested) exception group; its first leaf that is not a cancellation
    decides. A ``TimeoutError`` means the connect deadline passed.
    """
    spec = facts.spec
    name = spec.name
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)]
    leaf = leaves[0] if leaves else exc
    if isinstance(leaf, errors.McpCoreError):
        return leaf
    if facts.sandbox_stop is not None:
        return errors.ServerUnavailableError(name, f"{stopped(facts)} during startup.")
    if isinstance(leaf, TimeoutError | asyncio.CancelledError):
        return errors.ServerTimeoutError(
            name, f"did not finish connecting within {spec.connect_timeout_s:g} s."
        )
    if isinstance(leaf, FileNotFoundError):
        return errors.ServerUnavailableError(
            name, f"could not start “{spec.command}”: command not found. Check the command or ask an admin."
        )
    if isinstance(leaf, PermissionError):
        return errors.ServerUnavailableError(name, f"could not start “{spec.command}”: permission denied.")
    if isinstance(leaf, httpx2.HTTPStatusError):
        return _refused_by_status(name, leaf.response.status_code, None)
    if isinstance(leaf, httpx2.TimeoutException):
        return errors.ServerTimeoutError(name, "the server did not answer in time.")
    if isinstance(leaf, httpx2.HTTPError | OSError):
        return errors.ServerUnavailableError(
            name, "could not reach the server (connection refused or no route)."
        )
    if isinstance(leaf, MCPError):
        return _handshake_error(leaf, facts)
    if isinstance(leaf, ValidationError):
        return errors.ServerProtocolError(name, "the server's handshake is not valid MCP.")
    logger.warning("unexpected connect failure for %s: %s", name, type(leaf).__name__)
    return errors.ServerUnavailableError(name, f"could not connect ({type(leaf).__name__}).")


def call_error(exc: BaseException, facts: SessionFacts, tool: str, timeout_s: float) -> errors.McpServerError:
    """The error to show for a request (``tool``, or ``tools/list``) that broke the session.

    Every text says the call was not retried where it may have run.
    """
    name = facts.spec.name
    leaf = _leaves(exc)[0]
    if facts.sandbox_stop is not None:
        return errors.ServerCrashedError(
            name, f"{stopped(facts)} while running {tool}; it was not retried. The next request restarts it."
        )
    if isinstance(leaf, TimeoutError):
        return errors.ServerTimeoutError(
            name,
            f"{tool} did not answer within {timeout_s:g} s; the session was reset and the call not retried.",
        )
    if isinstance(leaf, ValidationError | RuntimeError):
        return errors.ServerProtocolError(name, f"{tool} returned a result that is not valid MCP.")
    if isinstance(leaf, MCPError):
        return errors.ServerProtocolError(name, f"{tool} failed: {facts.scrub(leaf.message)[:300]}")
    if isinstance(leaf, httpx2.HTTPError | OSError):
        return errors.ServerCrashedError(
            name,
            f"lost the connection while running {tool}; it was not retried. The next request reconnects.",
        )
    logger.warning("unexpected failure calling %s on %s: %s", tool, name, type(leaf).__name__)
    return errors.ServerCrashedError(name, f"{tool} failed unexpectedly ({type(leaf).__name__}).")


def stopped(facts: SessionFacts) -> str:
    """How the server ended, for the start of a sentence: the sandbox's reason when it had one."""
    if facts.sandbox_stop is None:
        return "the server stopped"
    return f"the sandbox stopped the server ({facts.sandbox_stop})"


def _handshake_error(exc: MCPError, facts: SessionFacts) -> errors.McpServerError:
    name = facts.spec.name
    message = facts.scrub(exc.message)
    status = facts.http_status if facts.http_status is not None and facts.http_status >= 400 else None
    if status in REFUSED_CREDENTIALS:
        return _refused_by_status(name, status, message)
    if exc.code == types.REQUEST_TIMEOUT:
        return errors.ServerTimeoutError(name, "the server did not answer the MCP handshake in time.")
    if exc.code == types.CONNECTION_CLOSED:
        return errors.ServerUnavailableError(
            name, "the server exited during startup; its error output is in the bot's log."
        )
    if status is not None:
        return _refused_by_status(name, status, message)
    if facts.http_status is None and any(word in message.lower() for word in _CREDENTIAL_WORDS):
        # The one text match left: no HTTP status exists to decide on (a stdio server, such as
        # a local wrapper around a remote API, can only say in words that it was refused).
        return errors.ServerAuthError(
            name, "the server refused the credentials. Reconnect with a valid token."
        )
    return errors.ServerUnavailableError(name, f"the server refused the MCP handshake: {message[:300]}")


def _refused_by_status(name: str, status: int, message: str | None) -> errors.McpServerError:
    if status in REFUSED_CREDENTIALS:
        return errors.ServerAuthError(
            name, f"the server refused the credentials (HTTP {status}). Reconnect with a valid token."
        )
    if status == 404:
        return errors.ServerUnavailableError(name, "there is no MCP endpoint at this URL (HTTP 404).")
    if message is None:
        return errors.ServerUnavailableError(name, f"the server answered HTTP {status}.")
    return errors.ServerUnavailableError(
        name, f"the server refused the MCP handshake (HTTP {status}): {message[:300]}"
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
