"""Local (stdio) servers in the sandbox: limits, private directory, bubblewrap, sandbox kills.

Every behaviour that both confinements share runs under bwrap and under rlimits alone. The
bwrap runs skip only where bubblewrap is not installed and `CI` is unset; on CI (which
installs it) a missing bwrap fails them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from mcp_core import errors
from mcp_core.connections import CLOSE_ALL_TIMEOUT_S, ConnectionPool
from mcp_core.models import SessionSpec
from mcp_core.sandbox import StdioSandbox
from mcp_core.settings import Settings
from tests.support.pool import WAIT_S, call, running_children, stdio_spec, text_of
from tests.support.servers import REPO, npm_stdio_params, start_http_server

pytestmark = pytest.mark.anyio

JAILED = REPO / "tests" / "servers" / "jailed.py"
MEMORY_MB = 1024
"""Room for a Python MCP server (and node, which needs about 1 GB of address space to start)."""
MAX_FILES = 256
MAX_PROCESSES = 64
CPU_S = 60
TIGHT_CPU_S = 5
"""Above the ~0.5–1 s of CPU a Python MCP server takes to start — and the 2 s and more it was
seen to take while two test suites shared the 2 cores — so only `spin` hits it."""
TOO_MUCH_MB = 2 * MEMORY_MB
SPIN_S = 30.0
SANDBOXED = ["bwrap", "rlimits"]
TOKEN = "sandbox-secret-5d1c9e"

MakePool = Callable[..., ConnectionPool]


def require_bwrap() -> None:
    """Skip where bubblewrap is missing; on CI (env `CI` set), which installs it, fail."""
    if shutil.which("bwrap") is None:
        message = "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=SANDBOXED)
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "bwrap":
        require_bwrap()
    return request.param


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def make_pool(mode: str, data_dir: Path) -> AsyncIterator[MakePool]:
    """`make_pool(**sandbox_fields)`: a pool whose stdio servers run in `mode`; all closed after."""
    made: list[ConnectionPool] = []

    def make(**fields: Any) -> ConnectionPool:
        limits = {
            "memory_mb": MEMORY_MB,
            "cpu_s": CPU_S,
            "max_files": MAX_FILES,
            "max_processes": MAX_PROCESSES,
        }
        sandbox = StdioSandbox(**{"mode": mode, "data_dir": data_dir, **limits, **fields})
        made.append(ConnectionPool(idle_timeout_s=60.0, sandbox=sandbox))
        return made[-1]

    yield make
    with anyio.fail_after(CLOSE_ALL_TIMEOUT_S + WAIT_S):
        for pool in made:
            await pool.aclose()


@pytest.fixture
def pool(make_pool: MakePool) -> ConnectionPool:
    return make_pool()


def jailed_spec(name: str = "jailed", **options: Any) -> SessionSpec:
    return stdio_spec(sys.executable, str(JAILED), name=name, **options)


async def whoami(pool: ConnectionPool, spec: SessionSpec, look_for: Path | str = "") -> dict[str, Any]:
    return json.loads(text_of(await call(pool, spec, "whoami", look_for=str(look_for))))


def jailed_processes() -> list[psutil.Process]:
    """Every process our jailed servers run as: launcher, bwrap (when used) and the server itself."""
    return running_children(JAILED)


def jailed_server() -> psutil.Process:
    """The one running jailed server (not its launcher or bwrap)."""
    [server] = [p for p in jailed_processes() if p.cmdline()[:2] == [sys.executable, str(JAILED)]]
    return server


def proc_file(pid: int, name: str) -> bytes:
    """/proc/<pid>/<name> as the kernel shows it to anyone with ps (cmdline) or to root (environ)."""
    return Path(f"/proc/{pid}/{name}").read_bytes()


# --- limits, session, directory ------------------------------------------------------------------


async def test_a_sandboxed_server_runs_under_the_configured_limits(pool: ConnectionPool) -> None:
    seen = await whoami(pool, jailed_spec())

    limits = seen["limits"]
    assert limits["as"] == MEMORY_MB * 1024 * 1024
    assert limits["cpu"] == CPU_S
    assert limits["nofile"] == MAX_FILES
    if os.getuid() == 0:  # the kernel never applies RLIMIT_NPROC to root, so it is left alone
        assert limits["nproc"] == resource.getrlimit(resource.RLIMIT_NPROC)[0]
    else:  # headroom over what the uid already runs
        assert limits["nproc"] > MAX_PROCESSES


async def test_a_sandboxed_server_leads_its_own_process_group_apart_from_the_bot(
    pool: ConnectionPool,
) -> None:
    await whoami(pool, jailed_spec())
    server = jailed_server()

    group = os.getpgid(server.pid)
    assert group == os.getsid(server.pid)
    assert os.getsid(server.pid) != os.getsid(0)
    assert group != os.getpgid(0)


async def test_a_sandboxed_server_works_in_its_own_0700_directory_which_is_also_its_home(
    pool: ConnectionPool, data_dir: Path
) -> None:
    spec = jailed_spec()

    seen = await whoami(pool, spec)

    private = data_dir / "servers" / str(spec.connection_id)
    assert seen["cwd"] == seen["home"] == str(private)
    assert seen["can_write"][str(private)] is True
    assert private.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "servers").stat().st_mode & 0o777 == 0o700


async def test_a_connection_with_its_own_cwd_keeps_it_and_still_gets_a_private_home(
    pool: ConnectionPool, data_dir: Path
) -> None:
    spec = jailed_spec(cwd=str(REPO))

    seen = await whoami(pool, spec)

    assert seen["cwd"] == str(REPO)
    assert seen["home"] == str(data_dir / "servers" / str(spec.connection_id))


async def test_every_connection_shares_one_npm_cache_unless_it_sets_its_own(
    pool: ConnectionPool, data_dir: Path
) -> None:
    own = str(data_dir.parent / "own-npm-cache")

    first = await whoami(pool, jailed_spec("first"))
    second = await whoami(pool, jailed_spec("second"))
    custom = await whoami(pool, jailed_spec("custom", env={"npm_config_cache": own}))

    assert first["npm_config_cache"] == second["npm_config_cache"] == str(data_dir / "npm-cache")
    assert custom["npm_config_cache"] == own


async def test_secrets_reach_the_server_in_its_environment_and_never_on_a_command_line(
    pool: ConnectionPool,
) -> None:
    spec = jailed_spec(env={"JAILED_TOKEN": TOKEN}, secret_values=[TOKEN])

    arrived = await call(pool, spec, "env", name="JAILED_TOKEN")
    server = jailed_server()
    chain = jailed_processes()

    assert text_of(arrived) == "[redacted]"  # it arrived; the pool scrubs it out of the result
    assert len(chain) >= 2  # the launcher (and bwrap) besides the server
    for process in chain:
        assert TOKEN.encode() not in proc_file(process.pid, "cmdline")
    assert f"JAILED_TOKEN={TOKEN}".encode() in proc_file(server.pid, "environ")


# --- bubblewrap only ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bwrap"], indirect=True)
async def test_under_bwrap_the_server_sees_no_bot_data_and_cannot_write_the_system(
    pool: ConnectionPool, data_dir: Path, tmp_path: Path
) -> None:
    spec = jailed_spec()
    neighbour = data_dir / "servers" / str(uuid.uuid4())
    neighbour.mkdir(parents=True)
    (neighbour / "notes.txt").write_text("someone else's")
    (data_dir / "slack-mcp-bot.db").write_text("the bot's database")
    (tmp_path / "outside.txt").write_text("in the host's /tmp")

    top = await whoami(pool, spec, data_dir)
    servers = await whoami(pool, spec, data_dir / "servers")
    database = await whoami(pool, spec, data_dir / "slack-mcp-bot.db")
    host_tmp = await whoami(pool, spec, tmp_path / "outside.txt")

    assert top["look_for_entries"] == ["npm-cache", "servers"]  # only what is bound back
    assert servers["look_for_entries"] == [str(spec.connection_id)]
    assert database["look_for_exists"] is False
    assert host_tmp["look_for_exists"] is True  # /tmp is read-only, not hidden: installs may live there
    assert top["can_write"]["/"] is False
    assert top["can_write"]["/usr"] is False
    assert top["can_write"]["/tmp"] is False
    assert top["tmpdir"] == str(data_dir / "servers" / str(spec.connection_id) / "tmp")


# --- sandbox kills -----------------------------------------------------------------------------


async def test_a_server_that_runs_out_of_memory_is_stopped_with_a_message_naming_it_and_others_live_on(
    pool: ConnectionPool,
) -> None:
    greedy, bystander = jailed_spec("greedy"), jailed_spec("bystander")
    before = await whoami(pool, bystander)

    with pytest.raises(errors.ServerCrashedError) as caught:
        await call(pool, greedy, "allocate", mb=TOO_MUCH_MB, die=True)
    after = await whoami(pool, bystander)
    restarted = await whoami(pool, greedy)

    message = str(caught.value)
    assert message.startswith("greedy: the sandbox stopped the server")
    assert f"ran out of memory under its limit of {MEMORY_MB} MB" in message
    assert after["pid"] == before["pid"]
    assert restarted["limits"]["as"] == MEMORY_MB * 1024 * 1024


async def test_a_python_memory_error_comes_back_as_a_tool_error_and_the_server_lives_on(
    pool: ConnectionPool,
) -> None:
    spec = jailed_spec()
    before = await whoami(pool, spec)

    result = await call(pool, spec, "allocate", mb=TOO_MUCH_MB)
    after = await whoami(pool, spec)

    assert result.is_error
    assert after["pid"] == before["pid"]


async def test_a_server_that_burns_its_cpu_time_is_stopped_by_the_cpu_limit(make_pool: MakePool) -> None:
    pool = make_pool(cpu_s=TIGHT_CPU_S)
    spec = jailed_spec("spinner", call_timeout_s=SPIN_S)

    with pytest.raises(errors.ServerCrashedError) as caught:
        await call(pool, spec, "spin", seconds=SPIN_S)

    assert str(caught.value).startswith("spinner: the sandbox stopped the server")
    assert f"used up its CPU time limit of {TIGHT_CPU_S} s" in str(caught.value)


@pytest.mark.npm
async def test_a_node_server_that_cannot_start_within_its_memory_limit_says_so(make_pool: MakePool) -> None:
    tight_mb = 256
    pool = make_pool(memory_mb=tight_mb)
    params = npm_stdio_params("server-everything", "stdio")
    spec = stdio_spec(params.command, *params.args, name="everything", mode="auto")

    with pytest.raises(errors.ServerUnavailableError) as caught:
        await call(pool, spec, "echo", message="hi")

    assert str(caught.value) == (
        f"everything: the sandbox stopped the server (it ran out of memory under its limit of {tight_mb} MB "
        "(MCP_STDIO_MEMORY_MB)) during startup."
    )


@pytest.mark.npm
async def test_the_node_reference_server_works_in_the_sandbox_with_the_default_limits(
    mode: str, data_dir: Path
) -> None:
    params = npm_stdio_params("server-everything", "stdio")
    spec = stdio_spec(params.command, *params.args, name="everything", mode="auto")
    pool = ConnectionPool(sandbox=StdioSandbox(mode=mode, data_dir=data_dir))  # type: ignore[arg-type]
    try:
        result = await call(pool, spec, "echo", message="from the sandbox")
    finally:
        await pool.aclose()

    assert not result.is_error
    assert "from the sandbox" in text_of(result)


@pytest.mark.npm
async def test_the_default_memory_limit_leaves_node_room_for_fetch_which_is_webassembly(
    mode: str, data_dir: Path
) -> None:
    node = npm_stdio_params("server-everything").command  # skips (or fails on CI) without node
    sandbox = StdioSandbox(mode=mode, data_dir=data_dir)  # type: ignore[arg-type]
    async with start_http_server() as server:
        script = f"fetch({server.base_url + '/stats'!r}).then((r) => console.log(r.status))"
        launch = await sandbox.launch(stdio_spec(node, "-e", script, name="fetcher"))
        with anyio.fail_after(WAIT_S):
            done = await anyio.run_process(
                [launch.command, *launch.args], env={**os.environ, **launch.env}, cwd=launch.cwd, check=False
            )

    assert done.stdout.decode().strip() == "200", done.stderr.decode()[-500:]


async def test_a_missing_command_is_still_reported_as_not_found(pool: ConnectionPool) -> None:
    spec = stdio_spec("no-such-mcp-server-binary", name="ghost")

    with pytest.raises(errors.ServerUnavailableError) as caught:
        await call(pool, spec, "echo", text="hi")

    assert "command not found" in str(caught.value)


# --- choosing the mode -------------------------------------------------------------------------


async def test_bwrap_asked_for_but_unusable_is_an_error_naming_the_connection(data_dir: Path) -> None:
    pool = ConnectionPool(sandbox=StdioSandbox(mode="bwrap", data_dir=data_dir, bwrap="/bin/false"))
    try:
        with pytest.raises(errors.ServerUnavailableError) as caught:
            await call(pool, jailed_spec("strict"), "whoami")
    finally:
        await pool.aclose()

    assert str(caught.value).startswith("strict: could not start: MCP_STDIO_SANDBOX=bwrap, but bubblewrap")


async def test_auto_falls_back_to_resource_limits_where_bwrap_does_not_work(data_dir: Path) -> None:
    sandbox = StdioSandbox(mode="auto", data_dir=data_dir, memory_mb=MEMORY_MB, bwrap="/bin/false")
    pool = ConnectionPool(sandbox=sandbox)
    try:
        seen = await whoami(pool, jailed_spec(), data_dir)
    finally:
        await pool.aclose()

    assert await sandbox.effective_mode("jailed") == "rlimits"
    assert seen["limits"]["as"] == MEMORY_MB * 1024 * 1024
    assert seen["look_for_exists"] is True  # no bubblewrap: the data directory stays in view


async def test_auto_uses_bwrap_where_it_works(data_dir: Path) -> None:
    require_bwrap()

    assert await StdioSandbox(mode="auto", data_dir=data_dir).effective_mode("any") == "bwrap"


async def test_off_runs_the_command_unconfined_as_before(data_dir: Path) -> None:
    pool = ConnectionPool(sandbox=StdioSandbox(mode="off", data_dir=data_dir))
    try:
        seen = await whoami(pool, jailed_spec())
    finally:
        await pool.aclose()

    assert seen["cwd"] == os.getcwd()
    host_as = resource.getrlimit(resource.RLIMIT_AS)[0]
    assert seen["limits"]["as"] == (-1 if host_as == resource.RLIM_INFINITY else host_as)
    assert not (data_dir / "servers").exists()


def test_the_sandbox_is_built_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        data_dir=Path("rel-data"),
        mcp_stdio_sandbox="rlimits",
        mcp_stdio_memory_mb=2048,
        mcp_stdio_cpu_s=30,
        mcp_stdio_max_files=512,
        mcp_stdio_max_processes=32,
    )

    sandbox = StdioSandbox.from_settings(settings)

    assert sandbox.mode == "rlimits"
    assert sandbox.data_dir == tmp_path / "rel-data"
    assert (sandbox.memory_mb, sandbox.cpu_s, sandbox.max_files, sandbox.max_processes) == (2048, 30, 512, 32)
