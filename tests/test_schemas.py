"""Tool schemas never make the bot fetch anything (mcp_core._schemas, and where it is used).

A real HTTP server on 127.0.0.1 counts the requests it gets; the schemas under test refer to
it. The first half exercises the validator and the reference finder directly; the second goes
through the registry and a stdio server (tests/servers/refs.py) whose tools make those
references on the wire.
"""

from __future__ import annotations

import http.server
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import jsonschema
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage
from referencing.exceptions import Unresolvable

from mcp_core import errors
from mcp_core._sanitize import SanitizingReadStream
from mcp_core._schemas import UnresolvedReference, no_fetch_validator, unresolved_references
from mcp_core.models import NewConnection, ToolInfo
from mcp_core.services import Services
from tests.support.pool import WAIT_S
from tests.support.registry import CALL_TIMEOUT_S, TEAM, USER, add, call, catalog_entry

pytestmark = pytest.mark.anyio

REFS = Path(__file__).resolve().parent / "servers" / "refs.py"
FETCHED_SCHEMA = b'{"type": "integer"}'
"""What the counting server answers: a fetch would succeed, so only not fetching passes."""


class CountingServer(NamedTuple):
    base_url: str
    requests: list[str]

    @property
    def schema_url(self) -> str:
        return f"{self.base_url}/schema.json"


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    """An HTTP server on a free loopback port that records the path of every request."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(FETCHED_SCHEMA)))
            self.end_headers()
            self.wfile.write(FETCHED_SCHEMA)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CountingServer(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)


def remote_ref_schema(url: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"x": {"$ref": url}}}


# --- the validator ------------------------------------------------------------------------------


def test_the_counting_server_sees_the_fetch_jsonschema_makes_by_default(counting: CountingServer) -> None:
    schema = remote_ref_schema(counting.schema_url)

    with pytest.warns(DeprecationWarning, match="retrieving remote references"):
        assert jsonschema.validators.validator_for(schema)(schema).is_valid({"x": 1})

    assert counting.requests == ["/schema.json"]


def test_a_remote_reference_is_unresolvable_and_never_fetched(counting: CountingServer) -> None:
    validator = no_fetch_validator(remote_ref_schema(counting.schema_url))

    with pytest.raises(Unresolvable, match=r"schema\.json"):
        validator.is_valid({"x": 1})
    with pytest.raises(Unresolvable):
        list(validator.iter_errors({"x": "not checked"}))

    assert counting.requests == []


def test_a_metaschema_named_by_url_is_not_fetched_either(counting: CountingServer) -> None:
    schema = {"$schema": f"{counting.base_url}/meta.json", "type": "object", "required": ["x"]}

    validator = no_fetch_validator(schema)

    assert (validator.is_valid({"x": 1}), validator.is_valid({})) == (True, False)
    assert unresolved_references(schema) == []
    assert counting.requests == []


LOCAL_SCHEMAS = {
    "pointer into $defs": {
        "type": "object",
        "$defs": {"n": {"type": "integer", "minimum": 1}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
    },
    "anchor": {
        "type": "object",
        "$defs": {"n": {"$anchor": "count", "type": "integer", "minimum": 1}},
        "properties": {"x": {"$ref": "#count"}},
    },
    "embedded $id named by absolute URL": {
        "type": "object",
        "$defs": {"n": {"$id": "http://127.0.0.1:9/n.json", "type": "integer", "minimum": 1}},
        "properties": {"x": {"$ref": "http://127.0.0.1:9/n.json"}},
    },
    "embedded $id named relative to the root's $id": {
        "$id": "https://schemas.example/tool.json",
        "type": "object",
        "$defs": {"n": {"$id": "n.json", "type": "integer", "minimum": 1}},
        "properties": {"x": {"$ref": "n.json"}},
    },
    "draft-07 definitions": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {"n": {"type": "integer", "minimum": 1}},
        "properties": {"x": {"$ref": "#/definitions/n"}},
    },
    "recursive $ref to the root": {
        "type": "object",
        "properties": {"x": {"type": "integer", "minimum": 1}, "child": {"$ref": "#"}},
    },
    "$dynamicRef to a $dynamicAnchor": {
        "$dynamicAnchor": "node",
        "type": "object",
        "properties": {"x": {"type": "integer", "minimum": 1}, "child": {"$dynamicRef": "#node"}},
    },
}


@pytest.mark.parametrize("schema", LOCAL_SCHEMAS.values(), ids=LOCAL_SCHEMAS.keys())
def test_references_inside_the_schema_resolve_and_validate(schema: dict[str, Any]) -> None:
    validator = no_fetch_validator(schema)

    assert unresolved_references(schema) == []
    assert validator.is_valid({"x": 2})
    assert not validator.is_valid({"x": 0})
    assert not validator.is_valid({"x": "two"})


def test_a_reference_to_the_bundled_metaschema_resolves_without_a_fetch() -> None:
    schema = {"type": "object", "properties": {"s": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}

    assert unresolved_references(schema) == []
    assert no_fetch_validator(schema).is_valid({"s": {"type": "string"}})
    assert not no_fetch_validator(schema).is_valid({"s": {"type": 5}})


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            remote_ref_schema("http://127.0.0.1:9/schema.json"),
            [UnresolvedReference("http://127.0.0.1:9/schema.json", external=True)],
            id="absolute URL",
        ),
        pytest.param(
            {"$id": "https://schemas.example/tool.json", "properties": {"x": {"$ref": "other.json#/a"}}},
            [UnresolvedReference("https://schemas.example/other.json#/a", external=True)],
            id="relative to the root's $id",
        ),
        pytest.param(
            {"$defs": {"d": {"$id": "https://inner.example/d/", "properties": {"y": {"$ref": "e.json"}}}}},
            [UnresolvedReference("https://inner.example/d/e.json", external=True)],
            id="relative to an embedded $id",
        ),
        pytest.param(
            {"properties": {"x": {"$dynamicRef": "https://elsewhere.example/s#meta"}}},
            [UnresolvedReference("https://elsewhere.example/s#meta", external=True)],
            id="$dynamicRef",
        ),
        pytest.param(
            {"properties": {"x": {"$ref": "#/$defs/missing"}, "y": {"$ref": "#nowhere"}}},
            [
                UnresolvedReference("#/$defs/missing", external=False),
                UnresolvedReference("#nowhere", external=False),
            ],
            id="pointer and anchor the schema lacks",
        ),
        pytest.param(
            {
                "properties": {"x": {"$ref": "#/x-extra/a"}},
                "x-extra": {"a": {"$ref": "http://127.0.0.1:9/a"}},
            },
            [UnresolvedReference("http://127.0.0.1:9/a", external=True)],
            id="reached through a reference into a non-schema keyword",
        ),
        pytest.param(
            {"properties": {"x": {"const": {"$ref": "http://127.0.0.1:9/a"}, "default": {"$ref": "#/no"}}}},
            [],
            id="a $ref key inside data is not a reference",
        ),
    ],
)
def test_the_references_the_schema_cannot_resolve_itself_are_listed(
    schema: dict[str, Any], expected: list[UnresolvedReference]
) -> None:
    assert unresolved_references(schema) == expected


def test_an_unresolved_reference_explains_itself() -> None:
    external = UnresolvedReference("http://127.0.0.1:9/s.json", external=True)
    missing = UnresolvedReference("#/$defs/x", external=False)

    assert (
        external.reason("inputSchema")
        == "inputSchema refers to http://127.0.0.1:9/s.json, which the bot does not fetch"
    )
    assert missing.reason("outputSchema") == "outputSchema refers to #/$defs/x, which it does not contain"


# --- the read-stream wrapper: outputSchemas ----------------------------------------------------


async def test_an_output_schema_the_bot_cannot_use_is_removed_and_its_tool_kept() -> None:
    local = {
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"n": {"$ref": "#/$defs/n"}},
    }
    tools = [
        {
            "name": "remote",
            "inputSchema": {"type": "object"},
            "outputSchema": remote_ref_schema("http://127.0.0.1:9/s"),
        },
        {
            "name": "invalid",
            "inputSchema": {"type": "object"},
            "outputSchema": {"type": "object", "minProperties": -1},
        },
        {"name": "local", "inputSchema": {"type": "object"}, "outputSchema": local},
    ]
    send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](1)
    dropped: list[tuple[str, str]] = []
    stream = SanitizingReadStream(
        receive,
        protocol_version=lambda: None,
        on_dropped_tool=lambda *d: dropped.append(d),
        on_eof=lambda: None,
    )

    async with send, stream:
        await send.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"tools": tools})))
        with anyio.fail_after(WAIT_S):
            item = await stream.receive()

    assert isinstance(item, SessionMessage)
    assert isinstance(item.message, types.JSONRPCResponse)
    assert item.message.result["tools"] == [
        {"name": "remote", "inputSchema": {"type": "object"}},
        {"name": "invalid", "inputSchema": {"type": "object"}},
        {"name": "local", "inputSchema": {"type": "object"}, "outputSchema": local},
    ]
    assert dropped == []


# --- through the registry, over the wire -------------------------------------------------------


def refs(name: str, schema_url: str) -> NewConnection:
    """tests/servers/refs.py over stdio, its remote references pointing at ``schema_url``."""
    return NewConnection(
        name=name, transport="stdio", command=sys.executable, args=[str(REFS), "--schema-url", schema_url]
    )


@pytest.fixture
async def connected(services: Services, counting: CountingServer) -> uuid.UUID:
    outcome = await add(services, refs("refs", counting.schema_url))
    assert outcome.error is None, outcome.error
    return outcome.connection.id


async def test_a_tool_whose_input_schema_refers_to_another_server_is_skipped_with_the_reason(
    services: Services, counting: CountingServer, connected: uuid.UUID
) -> None:
    with anyio.fail_after(CALL_TIMEOUT_S + WAIT_S):
        discovery = await services.registry.discover(TEAM, USER, connected)

    assert discovery.skipped == [
        ("remote_input", f"inputSchema refers to {counting.schema_url}, which the bot does not fetch")
    ]
    catalog = {entry.tool.name for entry in await services.registry.catalog(TEAM, USER)}
    assert catalog == {"remote_output", "local_refs", "local_calls"}
    assert counting.requests == []


async def test_a_tool_whose_output_schema_refers_to_another_server_still_answers(
    services: Services, counting: CountingServer, connected: uuid.UUID
) -> None:
    result = await call(services, "refs__remote_output")

    assert (result.is_error, result.structured) == (False, {"n": 1})
    assert counting.requests == []


async def test_a_tool_with_local_references_passes_good_arguments_to_the_server(
    services: Services, counting: CountingServer, connected: uuid.UUID
) -> None:
    result = await call(services, "refs__local_refs", count=2, label="ok", unit="s")

    assert (result.text, result.is_error) == ("2 ok s", False)
    assert counting.requests == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"count": 0}, "count: 0 is less than the minimum of 1"),
        ({"count": 1, "label": "far too long a label"}, "label: 'far too long a label' is too long"),
        ({"count": 1, "unit": "kg"}, "unit: 'kg' is not one of"),
        ({"label": "x"}, "'count' is a required property"),
    ],
)
async def test_a_tool_with_local_references_refuses_bad_arguments_before_sending(
    services: Services, counting: CountingServer, connected: uuid.UUID, arguments: dict[str, Any], says: str
) -> None:
    with pytest.raises(errors.ToolArgumentsError, match=says):
        await call(services, "refs__local_refs", **arguments)

    assert (await call(services, "refs__local_calls")).text == "0"
    assert counting.requests == []


async def test_a_stored_tool_with_a_remote_reference_fails_its_call_without_a_fetch(
    services: Services, counting: CountingServer, connected: uuid.UUID
) -> None:
    # A catalog saved before discovery refused such tools: the call-time validator must not fetch.
    stored = ToolInfo(name="remote_input", input_schema=remote_ref_schema(counting.schema_url))
    await services.store.save_tools(TEAM, USER, connected, [stored], datetime.now(UTC))
    entry = await catalog_entry(services, "refs", "remote_input")

    with pytest.raises(errors.ServerProtocolError, match="reference that cannot be resolved"):
        await call(services, entry.name, x=1)

    assert counting.requests == []
