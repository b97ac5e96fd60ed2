"""Run one local MCP server under resource limits, wait for it and say how it ended.

    python -I -S _sandbox_exec.py --as-mb 4096 --cpu-s 3600 --files 1024 [--procs N] -- cmd args...

Standard library only, started by path with ``-I -S`` (no site-packages, no ``PYTHON*``
variables) so that it costs one bare interpreter start and runs inside bubblewrap, where the
bot's virtualenv is read-only or not there at all. Nothing secret is ever on this command
line: the server's credentials reach it through the environment, which is passed on as is.

Why a supervisor and not a plain ``exec``: the mcp SDK spawns the process and keeps its exit
status to itself. This process forks, applies the limits in the child only, execs the server,
and after ``wait4`` writes one line to stderr (which the bot reads)::

    slack-mcp-bot sandbox: {"signal": "SIGXCPU", "cpu_s": 1.02}

then exits with the child's code (128 + signal number for a signal). It keeps its copy of the
server's stdout open until that line is written, so the bot sees the line before the end of
the stream. SIGTERM, SIGINT and SIGHUP are passed on to the server. Its own process group and
session come from the SDK (``start_new_session=True`` on the process it spawns, this one).

Limits (soft = hard, so the server cannot raise them again; never above an existing hard
limit): RLIMIT_AS in MB, RLIMIT_CPU in seconds (hard limit ``CPU_GRACE_S`` later, so SIGXCPU
comes first), RLIMIT_NOFILE, and RLIMIT_NPROC only when ``--procs`` is given (see
``mcp_core.sandbox`` for why that is an absolute number computed by the bot).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys

MARKER = "slack-mcp-bot sandbox:"
CPU_GRACE_S = 5
EXEC_FAILED_CODE = 127
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_NAMED = frozenset(signal.Signals)
USAGE = "usage: _sandbox_exec.py --as-mb N --cpu-s N --files N [--procs N] -- command [args...]"


def _parse(argv: list[str]) -> tuple[dict[str, int], list[str]]:
    if "--" not in argv:
        raise SystemExit(USAGE)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if len(options) % 2 or not command:
        raise SystemExit(USAGE)
    limits = {}
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag not in ("--as-mb", "--cpu-s", "--files", "--procs") or not value.isdigit():
            raise SystemExit(USAGE)
        limits[flag] = int(value)
    return limits, command


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    _, current_hard = resource.getrlimit(kind)
    hard = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def _apply(limits: dict[str, int]) -> None:
    if "--as-mb" in limits:
        _limit(resource.RLIMIT_AS, limits["--as-mb"] * 1024 * 1024)
    if "--cpu-s" in limits:
        _limit(resource.RLIMIT_CPU, limits["--cpu-s"], limits["--cpu-s"] + CPU_GRACE_S)
    if "--files" in limits:
        _limit(resource.RLIMIT_NOFILE, limits["--files"])
    if "--procs" in limits:
        _limit(resource.RLIMIT_NPROC, limits["--procs"])


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has exited; wait4 returns at once
        os.kill(child, signum)


def _report(record: dict[str, object]) -> None:
    os.write(2, f"{MARKER} {json.dumps(record)}\n".encode())


def main(argv: list[str]) -> int:
    limits, command = _parse(argv)
    child = os.fork()
    if child == 0:
        try:
            _apply(limits)
            os.execvp(command[0], command)
        except OSError as exc:
            _report({"error": f"could not start {command[0]}: {exc.strerror}"})
        os._exit(EXEC_FAILED_CODE)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda received, _frame: _forward(child, received))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the server alone reads its requests
    _, status, usage = os.wait4(child, 0)
    record: dict[str, object] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        record["signal"] = signal.Signals(number).name if number in _NAMED else f"signal {number}"
        code = 128 + number
    else:
        code = os.WEXITSTATUS(status)
        record["code"] = code
    _report(record)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
