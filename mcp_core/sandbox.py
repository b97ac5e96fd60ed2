"""The sandbox of local (stdio) MCP servers: resource limits always, bubblewrap where it works.

``MCP_STDIO_SANDBOX`` picks the mode (``StdioSandbox.mode``):

``off``
    The command runs as given: the bot's user, working directory and HOME, no limits.
``rlimits``
    The command runs under ``mcp_core/_sandbox_exec.py``, which sets the limits below, and
    in a private directory ``DATA_DIR/servers/<connection id>/`` (mode 0700) used as its HOME
    and, unless the connection's config sets ``cwd``, its working directory. The server still
    sees and may write everything the bot's user may (the database in DATA_DIR included).
``bwrap``
    The same inside bubblewrap: ``/`` read-only (``/tmp`` included: it stays visible because
    installs, checkouts and preinstalled servers live there too; ``TMPDIR`` is the connection's
    own ``tmp/``), its own ``/dev`` and ``/proc``, a tmpfs over DATA_DIR with only the
    connection's own directory (and the shared npm cache) bound back read-write, its own
    pid/ipc/uts namespaces, every capability dropped (as root too), killed when the bot dies.
    The network is kept: servers such as GitHub or Postgres need it; where they may connect is
    ``mcp_core.security``'s job. A connection whose ``cwd`` lies in DATA_DIR cannot start
    under bwrap.
``auto`` (default)
    bwrap when it is installed and a trial sandbox (the real flags and launcher, run once per
    process) works here, else rlimits, with one WARNING. An explicit ``bwrap`` that does not
    work is an error naming the connection instead.

What the limits mean (Linux semantics; each is set with soft = hard, except CPU):

* ``MCP_STDIO_MEMORY_MB`` is RLIMIT_AS: address space reserved, not memory in use (Linux
  ignores RLIMIT_RSS; only a cgroup could cap real memory). V8 reserves a lot: node 20 needs
  about 1 GB just to start (it fails at 512 MB), and every WebAssembly memory reserves ~10 GB,
  including the one behind node's built-in ``fetch`` (undici's llhttp): a node server that
  makes one HTTP request peaks at 11.2 GB of address space (measured). Hence the 16 GB
  default; each further wasm memory needs 10 GB more. Python servers start in ~0.3 GB.
  Past the limit an allocation fails: Python raises MemoryError (a tool error, the server
  lives on), node and most native code abort, and the pool says the server ran out of memory.
* ``MCP_STDIO_CPU_S`` is RLIMIT_CPU, CPU seconds of each process (threads summed) over its
  life: SIGXCPU at the limit, SIGKILL a few seconds later. Idle sessions are closed and
  restarted, so it bounds a runaway rather than a long-lived busy server.
* ``MCP_STDIO_MAX_FILES`` is RLIMIT_NOFILE (open descriptors of each process).
* ``MCP_STDIO_MAX_PROCESSES`` feeds RLIMIT_NPROC, which the kernel checks at fork/clone against
  *every* task (threads included) of the real uid, the bot and all other servers too; an
  absolute limit would make the Nth server fail because of the others. So the launcher gets the
  uid's task count at launch plus this number: a fork-bomb brake with that much headroom. The
  kernel never applies RLIMIT_NPROC to uid 0 (nor to CAP_SYS_RESOURCE/CAP_SYS_ADMIN holders),
  and bubblewrap keeps the uid, so when the bot runs as root it is not set at all.

npx: with HOME per connection, npm's cache (``~/.npm``) would be per connection too, and every
connection would download its packages again. ``npm_config_cache`` is therefore set to one
shared ``DATA_DIR/npm-cache`` unless the connection's env sets it. The trade-off: that directory
is writable by every sandboxed server, so under bwrap it is the one place where one user's
server could tamper with packages another user's npx then runs (npm checks the integrity of
what it downloads, not of what is already cached). A connection that sets its own
``npm_config_cache`` gets no shared cache (and no write access to a path outside its directory).

A server's credentials reach it only through the environment (inherited by bubblewrap and the
launcher, never ``--setenv`` or an argument), so they never show in ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from mcp_core import errors
from mcp_core._sandbox_exec import MARKER
from mcp_core.models import SessionSpec
from mcp_core.settings import STDIO_CPU_S, STDIO_MAX_FILES, STDIO_MAX_PROCESSES, STDIO_MEMORY_MB, Settings

logger = logging.getLogger(__name__)

__all__ = ["ExitWatch", "SandboxMode", "StdioLaunch", "StdioSandbox"]

SandboxMode = Literal["auto", "bwrap", "rlimits", "off"]
BWRAP_PROBE_TIMEOUT_S = 10.0
LAUNCHER = Path(__file__).with_name("_sandbox_exec.py")
_OUT_OF_MEMORY = re.compile(
    r"out of memory|\bOOM\b|MemoryError|Cannot allocate memory|bad_alloc|Allocation failed|"
    r"could not allocate memory|failed to reserve",
    re.IGNORECASE,
)
_probes: dict[tuple[str, Path], str | None] = {}
"""(bwrap path, DATA_DIR) → why bwrap does not work here, or None when it does."""


@dataclass(frozen=True)
class StdioLaunch:
    """The process the stdio transport actually starts for a connection."""

    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    supervised: bool
    """True when ``_sandbox_exec`` reports how the server ended on its stderr."""

    @classmethod
    def unconfined(cls, spec: SessionSpec) -> StdioLaunch:
        """The command exactly as the connection gives it (MCP_STDIO_SANDBOX=off)."""
        return cls(spec.command or "", list(spec.args), dict(spec.env), spec.cwd, supervised=False)


@dataclass(frozen=True)
class StdioSandbox:
    """How stdio servers are confined; built from ``Settings`` by ``from_settings``.

    ``data_dir`` must be absolute; ``bwrap`` is the bubblewrap executable (None: not installed).
    """

    mode: SandboxMode
    data_dir: Path
    memory_mb: int = STDIO_MEMORY_MB
    cpu_s: int = STDIO_CPU_S
    max_files: int = STDIO_MAX_FILES
    max_processes: int = STDIO_MAX_PROCESSES
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))

    @classmethod
    def from_settings(cls, settings: Settings) -> StdioSandbox:
        return cls(
            mode=settings.mcp_stdio_sandbox,
            data_dir=settings.data_dir.resolve(),
            memory_mb=settings.mcp_stdio_memory_mb,
            cpu_s=settings.mcp_stdio_cpu_s,
            max_files=settings.mcp_stdio_max_files,
            max_processes=settings.mcp_stdio_max_processes,
        )

    def private_dir(self, connection_id: uuid.UUID) -> Path:
        """DATA_DIR/servers/<connection id>/, created 0700 (as is DATA_DIR/servers)."""
        return _private(_private(self.data_dir / "servers") / str(connection_id))

    def remove_private_dir(self, connection_id: uuid.UUID) -> None:
        """Delete a removed connection's folder and what its server left in it (blocking I/O:
        call it in a thread); a folder that was never made is fine."""
        shutil.rmtree(self.data_dir / "servers" / str(connection_id), ignore_errors=True)

    async def launch(self, spec: SessionSpec) -> StdioLaunch:
        """What to start for ``spec``, in the mode that works here.

        Raises:
            ServerUnavailableError: MCP_STDIO_SANDBOX=bwrap and bubblewrap does not work here.
            FileNotFoundError: the command is not on the server's PATH.
            PermissionError: the command exists but is not executable.
        """
        mode = await self.effective_mode(spec.name)
        if mode == "off":
            return StdioLaunch.unconfined(spec)
        command = _resolve(spec.command or "", spec.env)
        home = self.private_dir(spec.connection_id)
        writable = [home]
        env = {"HOME": str(home), "TMPDIR": str(_private(home / "tmp"))}
        if not any(key.lower() == "npm_config_cache" for key in spec.env):
            writable.append(_private(self.data_dir / "npm-cache"))
            env["npm_config_cache"] = str(writable[-1])
        env |= spec.env
        cwd = spec.cwd or str(home)
        supervised = [*self._launcher(), "--", command, *spec.args]
        if mode == "rlimits":
            return StdioLaunch(supervised[0], supervised[1:], env, cwd, True)
        binds = [arg for path in writable for arg in ("--bind", str(path), str(path))]
        args = [*self._bwrap_flags(), *binds, "--chdir", cwd, "--", *supervised]
        assert self.bwrap is not None
        return StdioLaunch(self.bwrap, args, env, str(home), True)

    async def effective_mode(self, name: str) -> Literal["bwrap", "rlimits", "off"]:
        """The mode ``launch`` uses: ``auto`` resolved by trying bubblewrap once per process.

        Raises:
            ServerUnavailableError: MCP_STDIO_SANDBOX=bwrap and bubblewrap does not work here.
        """
        if self.mode in ("off", "rlimits"):
            return self.mode  # type: ignore[return-value]
        problem = await self._bwrap_problem()
        if problem is None:
            return "bwrap"
        if self.mode == "bwrap":
            raise errors.ServerUnavailableError(
                name,
                f"could not start: MCP_STDIO_SANDBOX=bwrap, but bubblewrap does not work here ({problem}). "
                "Ask an admin to install or allow it, or to set MCP_STDIO_SANDBOX=auto.",
            )
        return "rlimits"

    def stop_reason(self, record: dict[str, Any], saw_out_of_memory: bool) -> str | None:
        """Why the sandbox stopped a server, from the launcher's exit record; None if it did not."""
        signal, code = record.get("signal"), record.get("code")
        cpu_s = record.get("cpu_s")
        used_cpu = isinstance(cpu_s, int | float) and cpu_s >= self.cpu_s
        if signal == "SIGXCPU" or (signal == "SIGKILL" and used_cpu):
            return f"it used up its CPU time limit of {self.cpu_s} s (MCP_STDIO_CPU_S)"
        if saw_out_of_memory and (signal is not None or code not in (None, 0)):
            return f"it ran out of memory under its limit of {self.memory_mb} MB (MCP_STDIO_MEMORY_MB)"
        return None

    def _launcher(self) -> list[str]:
        limits = ["--as-mb", str(self.memory_mb), "--cpu-s", str(self.cpu_s), "--files", str(self.max_files)]
        uid = os.getuid()
        if uid != 0:
            limits += ["--procs", str(_tasks_of(uid) + self.max_processes)]
        return [sys.executable, "-I", "-S", str(LAUNCHER), *limits]

    def _bwrap_flags(self) -> list[str]:
        return [
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", str(self.data_dir),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent",
            "--cap-drop", "ALL",
        ]  # fmt: skip

    async def _bwrap_problem(self) -> str | None:
        if self.bwrap is None:
            return "bwrap is not installed"
        key = (self.bwrap, self.data_dir)
        if key not in _probes:
            _probes[key] = problem = await self._probe()
            if problem is not None and self.mode == "auto":
                logger.warning("stdio servers run without bubblewrap (only resource limits): %s", problem)
        return _probes[key]

    async def _probe(self) -> str | None:
        """Start a trivial command exactly as a server would be started; None when that works."""
        assert self.bwrap is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        trial = [sys.executable, "-I", "-S", "-c", ""]
        command = [self.bwrap, *self._bwrap_flags(), "--", *self._launcher(), "--", *trial]
        try:
            with anyio.fail_after(BWRAP_PROBE_TIMEOUT_S):
                done = await anyio.run_process(
                    command, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
                )
        except TimeoutError:
            return f"a trial sandbox did not finish within {BWRAP_PROBE_TIMEOUT_S:g} s"
        except OSError as exc:
            return f"cannot run {self.bwrap}: {exc.strerror}"
        if done.returncode == 0:
            return None
        lines = [ln for ln in done.stderr.decode(errors="replace").splitlines() if not ln.startswith(MARKER)]
        return (lines[0][:200] if lines else "") or f"a trial sandbox exited with code {done.returncode}"


class ExitWatch:
    """Reads a supervised server's stderr lines and learns how it ended.

    ``ended`` is set once the launcher reported the exit, or stderr closed. A server can print
    a forged report line; that only changes the error text of its own connection.
    """

    def __init__(self, sandbox: StdioSandbox, name: str, on_stop: Callable[[str], None] | None) -> None:
        self.ended = anyio.Event()
        self._sandbox = sandbox
        self._name = name
        self._on_stop = on_stop
        self._saw_out_of_memory = False

    def feed(self, line: str) -> None:
        if not line.startswith(MARKER):
            self._saw_out_of_memory = self._saw_out_of_memory or bool(_OUT_OF_MEMORY.search(line))
            return
        try:
            record = json.loads(line[len(MARKER) :])
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        reason = self._sandbox.stop_reason(record, self._saw_out_of_memory)
        if reason is not None:
            logger.warning("%s: the sandbox stopped the server: %s", self._name, reason)
            if self._on_stop is not None:
                self._on_stop(reason)
        self.ended.set()

    def close(self) -> None:
        self.ended.set()


def _private(path: Path) -> Path:
    """``path``, created if need be and made 0700 (mkdir's mode is subject to the umask)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _resolve(command: str, env: dict[str, str]) -> str:
    """The absolute path the server's PATH gives ``command`` (the launcher would fail later)."""
    if os.sep in command:
        if os.path.isfile(command) and not os.access(command, os.X_OK):
            raise PermissionError(command)
        if not os.path.isfile(command):
            raise FileNotFoundError(command)
        return os.path.abspath(command)
    found = shutil.which(command, path=env.get("PATH", os.environ.get("PATH", os.defpath)))
    if found is None:
        raise FileNotFoundError(command)
    return found


def _tasks_of(uid: int) -> int:
    """Tasks (threads included) of processes owned by ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:  # exited since listed
                continue
    return count
