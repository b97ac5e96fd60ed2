"""Start the test MCP servers (tests/servers/*.py and the npm reference servers) and watch children.

stdio servers are described by `StdioServerParameters` (the client under test spawns them);
HTTP servers are subprocesses started here, announced by a line on one of their pipes and
terminated, then killed if need be, and always waited for on exit so no zombie is left.

    with start_http_server_sync("--bearer", "s3cret") as server:      # sync fixtures
        server.url        # http://127.0.0.1:PORT/mcp  (…/sse with transport="sse")
        server.stats()    # {"tcp_connections": N, "requests": M}

    async with start_http_server(transport="sse") as (url, process):  # async tests
        ...
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

import anyio
import anyio.to_thread
import psutil
import pytest
from mcp import StdioServerParameters

__all__ = [
    "HANG",
    "NPM_DIR",
    "REPO",
    "TOY",
    "RunningServer",
    "assert_no_zombies",
    "child_processes",
    "hang_stdio_params",
    "npm_server",
    "npm_stdio_params",
    "require_npm",
    "start_http_server",
    "start_http_server_sync",
    "start_npm_http_server",
    "start_npm_http_server_sync",
    "start_task_extension",
    "start_task_extension_sync",
    "start_task_keeper",
    "start_task_keeper_sync",
    "toy_stdio_params",
]

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "servers" / "toy.py"
HANG = REPO / "tests" / "servers" / "hang.py"
TASK_KEEPER = REPO / "tests" / "servers" / "task_keeper.py"
TASK_EXTENSION = REPO / "tests" / "servers" / "task_extension.py"
NPM_DIR = REPO / os.environ.get("MCP_NPM_DIR", ".cache/npm")  # relative paths: from the repo root, as in .ci
NPM_SCOPE = "@modelcontextprotocol"

SERVER_START_TIMEOUT_S = 20.0
SERVER_STOP_TIMEOUT_S = 5.0
STATS_TIMEOUT_S = 5.0

HttpTransport = Literal["http", "sse"]
NpmHttpMode = Literal["streamableHttp", "sse"]
_ENDPOINT = {"http": "/mcp", "sse": "/sse", "streamableHttp": "/mcp"}
_TOY_READY = re.compile(rb"^LISTENING (http://\S+)$")
_NPM_READY = re.compile(rb"(?:listening|running) on port (\d+)")
T = TypeVar("T")


class RunningServer(NamedTuple):
    """A live HTTP server subprocess; unpacks as `(url, process)`."""

    url: str
    """The MCP endpoint: `http://127.0.0.1:PORT/mcp` (streamable HTTP) or `.../sse` (legacy SSE)."""
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return self.url.rsplit("/", 1)[0]

    def stats(self) -> dict[str, int]:
        """GET /stats of a toy server: distinct TCP clients and requests seen so far.

        Raises:
            urllib.error.URLError: the server is unreachable (or is not a toy server).
        """
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=STATS_TIMEOUT_S) as response:
            return json.load(response)


# --- stdio -------------------------------------------------------------------------------------


def toy_stdio_params(
    *flags: str, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> StdioServerParameters:
    """Parameters that run tests/servers/toy.py over stdio with the given command-line flags."""
    return StdioServerParameters(command=sys.executable, args=[str(TOY), *flags], env=env, cwd=cwd)


def hang_stdio_params(*flags: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    """Parameters that run tests/servers/hang.py: a stdio server that never answers."""
    return StdioServerParameters(command=sys.executable, args=[str(HANG), *flags], env=env)


# --- npm reference servers ---------------------------------------------------------------------


def npm_server(package: str) -> Path:
    """Entry point of an npm reference server, e.g. `npm_server("server-everything")`.

    Accepts `server-x` or `@modelcontextprotocol/server-x`; the path may not exist (see require_npm).
    """
    name = package.removeprefix(f"{NPM_SCOPE}/")
    return NPM_DIR / "node_modules" / NPM_SCOPE / name / "dist" / "index.js"


def require_npm(package: str) -> Path:
    """The entry point of an installed npm server; skip the test when it is missing, fail under CI.

    .ci/npm-servers.sh installs the servers, so on CI (env `CI` set) a missing one is a broken build.
    """
    path = npm_server(package)
    node = shutil.which("node")
    if node is None or not path.is_file():
        missing = "node is not on PATH" if node is None else f"{path} is missing"
        message = f"npm server {package} unavailable: {missing} (run .ci/npm-servers.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def npm_stdio_params(package: str, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    """Parameters that run an installed npm server over stdio (skips/fails like `require_npm`)."""
    entry = require_npm(package)
    return StdioServerParameters(command=shutil.which("node") or "node", args=[str(entry), *args], env=env)


# --- HTTP subprocesses -------------------------------------------------------------------------


@contextmanager
def start_http_server_sync(
    *flags: str, transport: HttpTransport = "http", env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Run tests/servers/toy.py over HTTP on a free loopback port until the block exits.

    Raises:
        RuntimeError: the server exited or did not announce its port within SERVER_START_TIMEOUT_S.
    """
    command = [sys.executable, str(TOY), "--transport", transport, *flags]
    with _supervised(command, env=env, ready_on="stdout", pattern=_TOY_READY) as (process, match):
        yield RunningServer(match.group(1).decode() + _ENDPOINT[transport], process)


@contextmanager
def start_task_keeper_sync() -> Iterator[RunningServer]:
    """Run tests/servers/task_keeper.py (tasks that outlive their session) on a free loopback port.

    Raises:
        RuntimeError: as for ``start_http_server_sync``.
    """
    command = [sys.executable, str(TASK_KEEPER)]
    with _supervised(command, env=None, ready_on="stdout", pattern=_TOY_READY) as (process, match):
        yield RunningServer(match.group(1).decode() + "/mcp", process)


def start_task_keeper() -> AbstractAsyncContextManager[RunningServer]:
    """Async form of ``start_task_keeper_sync``."""
    return _in_worker_thread(start_task_keeper_sync())


@contextmanager
def start_task_extension_sync() -> Iterator[RunningServer]:
    """Run tests/servers/task_extension.py (2026-07-28 Tasks extension) over streamable HTTP.

    Raises:
        RuntimeError: as for ``start_http_server_sync``.
    """
    command = [sys.executable, str(TASK_EXTENSION), "--transport", "http"]
    with _supervised(command, env=None, ready_on="stdout", pattern=_TOY_READY) as (process, match):
        yield RunningServer(match.group(1).decode() + "/mcp", process)


def start_task_extension() -> AbstractAsyncContextManager[RunningServer]:
    """Async form of ``start_task_extension_sync``."""
    return _in_worker_thread(start_task_extension_sync())


@contextmanager
def start_npm_http_server_sync(
    package: str, mode: NpmHttpMode = "streamableHttp", *args: str, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Run an npm server (server-everything supports both modes) over HTTP on a free loopback port.

    The port is chosen here and passed as `PORT`; readiness is the "... on port N" line the
    server prints to stderr once listening. Skips/fails like `require_npm` when not installed.

    Raises:
        RuntimeError: the server exited or did not announce readiness within SERVER_START_TIMEOUT_S.
    """
    command = [shutil.which("node") or "node", str(require_npm(package)), mode, *args]
    port = _free_port()
    env = {**(env or {}), "PORT": str(port)}
    with _supervised(command, env=env, ready_on="stderr", pattern=_NPM_READY) as (process, _):
        yield RunningServer(f"http://127.0.0.1:{port}{_ENDPOINT[mode]}", process)


def start_http_server(
    *flags: str, transport: HttpTransport = "http", env: dict[str, str] | None = None
) -> AbstractAsyncContextManager[RunningServer]:
    """Async form of `start_http_server_sync`; the blocking start and stop run in a worker thread."""
    return _in_worker_thread(start_http_server_sync(*flags, transport=transport, env=env))


def start_npm_http_server(
    package: str, mode: NpmHttpMode = "streamableHttp", *args: str, env: dict[str, str] | None = None
) -> AbstractAsyncContextManager[RunningServer]:
    """Async form of `start_npm_http_server_sync`."""
    return _in_worker_thread(start_npm_http_server_sync(package, mode, *args, env=env))


@asynccontextmanager
async def _in_worker_thread(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    # Shielded: a cancelled start must still hand back the process so that it gets stopped.
    with anyio.CancelScope(shield=True):
        value = await anyio.to_thread.run_sync(manager.__enter__)
    try:
        yield value
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(manager.__exit__, None, None, None)


@contextmanager
def _supervised(
    command: list[str],
    *,
    env: dict[str, str] | None,
    ready_on: Literal["stdout", "stderr"],
    pattern: re.Pattern[bytes],
) -> Iterator[tuple[subprocess.Popen[bytes], re.Match[bytes]]]:
    """Start `command`, wait until `ready_on` prints a line matching `pattern`, and on exit
    terminate (then kill) and reap the process, however the block exits.

    After the ready line, the rest of that pipe is copied to our stderr (fd 2, so pytest shows it
    with a failing test) by a thread, which also keeps a chatty server from blocking on a full pipe.
    """
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if ready_on == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if ready_on == "stderr" else None,
        env={**os.environ, **(env or {})},
    )
    pipe = process.stdout if ready_on == "stdout" else process.stderr
    assert pipe is not None
    drain: threading.Thread | None = None
    try:
        match, rest = _wait_for_line(process, pipe.fileno(), pattern)
        drain = threading.Thread(target=_copy_to_stderr, args=(pipe.fileno(), rest), daemon=True)
        drain.start()
        yield process, match
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if drain is not None:
            drain.join(SERVER_STOP_TIMEOUT_S)
        if drain is None or not drain.is_alive():  # never close an fd another thread still reads
            pipe.close()


def _wait_for_line(
    process: subprocess.Popen[bytes], fd: int, pattern: re.Pattern[bytes]
) -> tuple[re.Match[bytes], bytes]:
    """Read `fd` until a line matches `pattern`; return the match and the bytes read after that line."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"server exited (code {process.wait()}) before it was ready: {buffer!r}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for index, line in enumerate(lines):
                if match := pattern.search(line.strip()):
                    return match, b"\n".join([*lines[index + 1 :], buffer])
    raise RuntimeError(f"server not ready within {SERVER_START_TIMEOUT_S} s: {buffer!r}")


def _copy_to_stderr(fd: int, pending: bytes) -> None:
    while pending:
        os.write(2, pending)
        pending = os.read(fd, 65536)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- child processes ---------------------------------------------------------------------------


def child_processes() -> list[psutil.Process]:
    """Every live descendant of this test process (children, grandchildren, …)."""
    return psutil.Process().children(recursive=True)


def assert_no_zombies(processes: Sequence[psutil.Process] | None = None) -> None:
    """Fail if any of `processes` (default: all descendants) has exited without being reaped."""
    zombies = []
    for process in child_processes() if processes is None else processes:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                zombies.append(f"{process.pid} ({process.name()})")
        except psutil.NoSuchProcess:  # reaped in the meantime: not a zombie
            continue
    assert not zombies, f"unreaped child processes: {', '.join(zombies)}"
