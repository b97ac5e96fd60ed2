"""Conformance client: the bot's own path to an MCP server, behind the harness's contract.

``@modelcontextprotocol/conformance`` runs this once per scenario as
``python tests/conformance/client.py <server-url>`` (the URL is the last argument) with
``MCP_CONFORMANCE_SCENARIO``, and where needed ``MCP_CONFORMANCE_CONTEXT`` (JSON) and
``MCP_CONFORMANCE_PROTOCOL_VERSION``, in the environment. It must exit 0 within the harness's
``--timeout``; the harness judges the traffic its mock server saw.

The traffic is the bot's: the store, pool and registry ``build_services`` wires, on a throwaway
SQLite database in a temporary ``DATA_DIR`` with ``MCP_ALLOWED_HOSTS`` letting in the mock on
localhost, then ``ToolRegistry.add_connection`` (network policy, pool, real transport,
discovery, malformed tools dropped) and ``ToolRegistry.call`` (argument validation, the pool's
timeouts) — never a bare ``mcp.Client``. The parts are built here rather than by
``build_services`` only to leave out what no scenario touches and what costs most to import
(the OpenAI client: ~1 s of CPU per run, times ~50 runs per leg).

At most ``MCP_CONFORMANCE_SLOTS`` runs (default: twice the CPU count) get past their imports
at once: the harness starts every scenario of a leg together, and ~40 Pythons importing mcp
(~2.5 s of CPU each) on 2 cores starve each other past the harness's timeout. Measured on 2
cores, the 25 runs of the 2025-11-25 leg: 1 slot 66 s, 2 slots 53 s, 4 slots 42 s, unbounded
39 s with clients finishing 60 s after their start (beyond the harness's default timeout).

OAuth runs the bot's own sign-in (``mcp_core.oauth``): the connect comes back with
``SignInRequiredError`` and its link; this client plays the person's browser (GET the link,
read the authorization server's redirect) and hands the redirect's query to
``ConnectionService.complete_sign_in``, exactly what ``/oauth/callback`` does. A call that asks
for more scope (step-up) gets one more sign-in, at most ``MAX_SIGN_INS`` in all, as a person
would click "Sign in again". Tokens and the pending sign-in live in the local credential
backend (a key generated in the temporary ``DATA_DIR``).

The client-credentials scenarios (``MACHINE_SCENARIOS``) connect a machine client instead
(``mcp_core.oauth.machine``): the client id and the secret or private key from
``MCP_CONFORMANCE_CONTEXT`` go into the connection's credential record, as an admin's form
would put them, and the connection's config says ``grant: client_credentials``; no one signs in.

A server's question mid-call (elicitation) is answered as the person would answer the bot's
modal without changing it: Submit, with each field's default (``submit_defaults``), through
the same ``CallEvents`` the Slack surface passes. Whatever the bot cannot do yet, this client
does not do either; those scenarios are in the baselines, each with its reason.

Protocol mode (the connection's ``protocol_mode`` setting): ``auto`` (the default of a new
connection, which reaches 2026-07-28) when the harness asks for 2026-07-28, else ``legacy``
(the 2025 handshake), as the python-sdk's own conformance client chooses.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from typing import IO


def take_slot() -> IO[str]:
    """Hold one of ``MCP_CONFORMANCE_SLOTS`` per-user slots (an flock on a file per slot) for
    the life of the process: the first free one, else wait for the one this process hashes to.
    The kernel releases it when the process exits, however it exits."""
    slots = max(1, int(os.environ.get("MCP_CONFORMANCE_SLOTS") or 2 * (os.cpu_count() or 1)))
    folder = os.path.join(tempfile.gettempdir(), f"slack-mcp-bot-conformance-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"slot{i}") for i in range(slots)]
    for path in paths:
        file = open(path, "a")  # noqa: SIM115  # kept open: the lock lives as long as the file
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return file
        except BlockingIOError:
            file.close()
    file = open(paths[os.getpid() % slots], "a")  # noqa: SIM115
    fcntl.flock(file, fcntl.LOCK_EX)
    return file


if __name__ == "__main__":
    SLOT = take_slot()  # before the heavy imports below

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qsl, urlsplit  # noqa: E402

import httpx2  # noqa: E402

from mcp_core import errors  # noqa: E402
from mcp_core.call_events import CallEvents  # noqa: E402
from mcp_core.connection_service import ConnectionService  # noqa: E402
from mcp_core.connections import ConnectionPool  # noqa: E402
from mcp_core.credentials import CredentialStore, detect_backend, open_backend  # noqa: E402
from mcp_core.elicitation import ElicitAnswer, ElicitRequest, FormRequest, UrlRequest  # noqa: E402
from mcp_core.models import NewConnection  # noqa: E402
from mcp_core.oauth import GrantStore, OAuthFlows, PreRegisteredClient  # noqa: E402
from mcp_core.registry import ToolRegistry  # noqa: E402
from mcp_core.settings import Settings  # noqa: E402
from mcp_core.store import Store, create_engine, migrate  # noqa: E402
from mcp_core.usage import UsageRecorder  # noqa: E402

logger = logging.getLogger("conformance")

TEAM_ID = "T0CONFORMANCE"
USER_ID = "U0CONFORMANCE"
CONNECTION_NAME = "conformance"
LOCAL_HOSTS = ["localhost", "127.0.0.1", "::1"]
"""The harness's mocks listen on localhost; the bot's network policy refuses it by default."""
REDIRECT_URL = "http://localhost:3000/callback"
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"
"""What the reference clients use; the mock authorization server does not fetch it."""
CARD_ID = "conformance"
MAX_SIGN_INS = 3
CONNECT_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 20.0
MODERN_PROTOCOL = "2026-07-28"
MACHINE_SCENARIOS = {
    "auth/client-credentials-basic": "client_secret_basic",
    "auth/client-credentials-jwt": "private_key_jwt",
}
"""Scenarios of a machine client (SEP-1046), and how it authenticates at the token endpoint."""
LEGACY_ONLY = frozenset({"json-schema-ref-no-deref"})
"""Scenarios whose mock only speaks the 2025 handshake (the python-sdk forces legacy too)."""

TOOL_CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "tools_call": [("add_numbers", {"a": 5, "b": 3})],
    "request-metadata": [("add_numbers", {"a": 5, "b": 3})],
    "http-standard-headers": [("add_numbers", {"a": 5, "b": 3})],
    "sse-retry": [("test_reconnection", {})],
    "elicitation-sep1034-client-defaults": [("test_client_elicitation_defaults", {})],
    "http-invalid-tool-headers": [("valid_tool", {"region": "us-west1"})],
}
"""The tool calls each scenario expects (others: ``MCP_CONFORMANCE_CONTEXT``'s ``toolCalls``,
or every tool the server lists, called with no arguments)."""


async def submit_defaults(request: ElicitRequest) -> ElicitAnswer:
    """The person submits the modal as the bot prefilled it (each field's default), or, for a
    link, sees it; a refused question is only told."""
    if isinstance(request, FormRequest):
        content = {f.name: f.default for f in request.fields if f.default is not None}
        print(f"question from {request.server}: submitting defaults {content}", file=sys.stderr)
        return ElicitAnswer("accept", content)
    if isinstance(request, UrlRequest):
        return ElicitAnswer("accept")
    print(f"question refused: {request.why}", file=sys.stderr)
    return ElicitAnswer("decline")


EVENTS = CallEvents(on_elicit=submit_defaults, surface="conformance")


def protocol_mode(scenario: str, version: str | None) -> str:
    """The connection's ``protocol_mode`` for this run."""
    if scenario in LEGACY_ONLY:
        return "legacy"
    return "auto" if version == MODERN_PROTOCOL else "legacy"


def planned_calls(
    scenario: str, context: dict[str, Any], schemas: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The (tool, arguments) calls to make, in order; ``schemas``: each listed tool's inputSchema."""
    if scenario == "json-schema-2020-12-preservation":  # echo the focal tool's schema as the bot holds it
        return [("json_schema_echo", {"schema": schemas.get("json_schema_2020_12_tool", {})})]
    if scenario in TOOL_CALLS:
        return TOOL_CALLS[scenario]
    if context.get("toolCalls"):
        return [(call["name"], dict(call.get("arguments") or {})) for call in context["toolCalls"]]
    return [(name, {}) for name in sorted(schemas)]


async def run(server_url: str, scenario: str, context: dict[str, Any], version: str | None) -> int:
    """Connect as a Slack user would, then make the scenario's calls; the exit status."""
    with tempfile.TemporaryDirectory(prefix="conformance-") as data_dir:
        settings = Settings(
            _env_file=None,
            data_dir=Path(data_dir),
            database_url=None,
            mcp_allowed_hosts=LOCAL_HOSTS,
            mcp_connect_timeout_s=CONNECT_TIMEOUT_S,
            mcp_call_timeout_s=CALL_TIMEOUT_S,
        )
        engine = create_engine(settings)
        await migrate(engine)
        store = Store(engine)
        credentials = await open_backend(detect_backend(settings), settings, engine)
        pool = ConnectionPool(
            idle_timeout_s=settings.mcp_idle_timeout_s, max_sessions=settings.mcp_max_sessions
        )
        usage = UsageRecorder(store)
        oauth = OAuthFlows(
            GrantStore(engine, credentials),
            store,
            settings,
            REDIRECT_URL,
            client_metadata_url=CLIENT_METADATA_URL,
        )
        if context.get("client_id") and scenario not in MACHINE_SCENARIOS:  # auth/pre-registration
            client = PreRegisteredClient(context["client_id"], context.get("client_secret"), server_url)
            oauth.use_clients({CARD_ID: client})
        registry = ToolRegistry(store, pool, usage, settings, credentials, oauth=oauth)
        pool.on_tools_changed = registry.on_tools_changed
        connections = ConnectionService(store, registry, credentials, settings, oauth)
        try:
            new = await new_connection(credentials, server_url, scenario, context, version)
            return await _exercise(registry, connections, new, scenario, context)
        finally:
            await pool.aclose()
            await usage.aclose()
            await oauth.aclose()
            await credentials.aclose()
            await engine.dispose()


async def browse(authorize_url: str) -> dict[str, str]:
    """What the person's browser brings back to ``/oauth/callback``: the authorization
    server's redirect (the mock approves at once), read without following it."""
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(authorize_url, follow_redirects=False)
    location = response.headers.get("location", "")
    return dict(parse_qsl(urlsplit(location).query))


async def new_connection(
    credentials: CredentialStore,
    server_url: str,
    scenario: str,
    context: dict[str, Any],
    version: str | None,
) -> NewConnection:
    """The connection a person (or, for a machine client, an admin) would make; a machine
    client's credentials go into the credential manager, its config names only the grant."""
    config: dict[str, Any] = {"protocol_mode": protocol_mode(scenario, version)}
    ref = None
    if scenario in MACHINE_SCENARIOS:
        method = MACHINE_SCENARIOS[scenario]
        secrets = {"oauth:client_id": context["client_id"]}
        oauth: dict[str, Any] = {"grant": "client_credentials", "client_auth": method}
        if method == "private_key_jwt":
            secrets["oauth:private_key"] = context["private_key_pem"]
            oauth["signing_alg"] = context.get("signing_algorithm") or None
        else:
            secrets["oauth:client_secret"] = context["client_secret"]
        ref = await credentials.put(TEAM_ID, USER_ID, secrets)
        config["oauth"] = oauth
    return NewConnection(
        name=CONNECTION_NAME,
        transport="streamable_http",
        url=server_url,
        config=config,
        card_id=CARD_ID,
        credential_ref=ref,
    )


async def _exercise(
    registry: ToolRegistry,
    connections: ConnectionService,
    new: NewConnection,
    scenario: str,
    context: dict[str, Any],
) -> int:
    mode = new.typed_config.protocol_mode
    outcome = await registry.add_connection(TEAM_ID, USER_ID, new)
    sign_ins = 0
    while isinstance(outcome.error, errors.SignInRequiredError) and sign_ins < MAX_SIGN_INS:
        sign_ins += 1
        print(f"sign-in {sign_ins}: following the link", file=sys.stderr)
        try:
            done = await connections.complete_sign_in(await browse(outcome.error.authorize_url))
        except errors.SignInError as exc:
            print(f"sign-in failed: {exc}", file=sys.stderr)
            return 1
        outcome = done
    if outcome.error is not None:
        print(f"connect failed, connection {outcome.connection.status}: {outcome.error}", file=sys.stderr)
        return 1
    catalog = await registry.catalog(TEAM_ID, USER_ID)
    by_tool = {entry.tool.name: entry.name for entry in catalog}
    print(f"connected ({mode}); tools: {sorted(by_tool)}", file=sys.stderr)
    failed = 0
    schemas = {entry.tool.name: entry.tool.input_schema for entry in catalog}
    for tool, arguments in planned_calls(scenario, context, schemas):
        if tool not in by_tool:
            print(f"{tool}: not in the catalog (dropped or never listed)", file=sys.stderr)
            failed += 1
            continue
        try:
            result = await registry.call(TEAM_ID, USER_ID, by_tool[tool], arguments, events=EVENTS)
        except errors.SignInRequiredError as exc:  # step-up: the person signs in again, asks again
            if sign_ins >= MAX_SIGN_INS:
                print(f"{tool}: still asks for a sign-in after {sign_ins}; giving up", file=sys.stderr)
                failed += 1
                continue
            sign_ins += 1
            print(f"{tool}: sign-in {sign_ins} (scope {exc.scope})", file=sys.stderr)
            try:
                await connections.complete_sign_in(await browse(exc.authorize_url))
                result = await registry.call(TEAM_ID, USER_ID, by_tool[tool], arguments, events=EVENTS)
            except errors.McpCoreError as again:
                print(f"{tool}: {type(again).__name__}: {again}", file=sys.stderr)
                failed += 1
                continue
        except errors.McpCoreError as exc:
            print(f"{tool}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{tool}: {'error' if result.is_error else 'ok'}: {result.text[:300]}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} <server-url>", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(relativeCreated)6d ms %(name)s %(levelname)s %(message)s",
    )
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION")
    return asyncio.run(run(sys.argv[-1], scenario, context, version))


if __name__ == "__main__":
    sys.exit(main())
