"""The GCP credential backend against an in-process gRPC Secret Manager (real async client)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions as gexc

from mcp_core.credentials import CredentialStore
from mcp_core.credentials.gcp import GcpCredentialStore
from mcp_core.errors import ConfigError, CredentialBackendError, CredentialError
from mcp_core.services import build_services
from tests.support.fake_secret_manager import FakeSecretManager, running_fake_secret_manager
from tests.support.registry import make_settings

pytestmark = pytest.mark.anyio

PROJECT = "test-project"
TEAM, USER, USER_B, TEAM_2 = "T0111AAA", "U0111AAA", "U0222BBB", "T0999ZZZ"
SECRET = "Bearer s3cret-gcp-5d2f90"
VALUES = {"header:Authorization": SECRET, "env:API_TOKEN": "env-s3cret-gcp-81aa"}


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    with running_fake_secret_manager() as fake:
        yield fake


@pytest.fixture
async def store(fake: FakeSecretManager) -> AsyncIterator[GcpCredentialStore]:
    client = fake.async_client()
    yield GcpCredentialStore(PROJECT, client=client, timeout=3.0)
    await client.transport.close()


@pytest.fixture
def default_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Application default credentials from a file, so the store can build its own client
    (no RPC is made with it: building a client touches no network)."""
    path = tmp_path / "adc.json"
    adc = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    path.write_text(json.dumps(adc))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


class _Refusing(grpc.GenericRpcHandler):
    """Answers every Secret Manager RPC with one gRPC status, as an ailing service does."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(self.code, "refused by the test server")

        return grpc.unary_unary_rpc_method_handler(refuse)


@contextmanager
def refusing_server(code: grpc.StatusCode) -> Iterator[str]:
    """A gRPC server on ``127.0.0.1`` answering ``code`` to everything; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((_Refusing(code),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


def _name(store: GcpCredentialStore, team: str, user: str, ref: str) -> str:
    return store._secret_name(team, user, ref)


async def test_is_a_credential_store(store: GcpCredentialStore) -> None:
    assert isinstance(store, CredentialStore)


async def test_round_trip(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert len(ref) == 32
    assert await store.get(TEAM, USER, ref) == VALUES
    name = _name(store, TEAM, USER, ref)
    assert name == f"projects/{PROJECT}/secrets/mcp-{TEAM}-{USER}-{ref}"
    assert json.loads(fake.payloads(name)[0]) == VALUES
    assert fake.calls[:2] == ["CreateSecret", "AddSecretVersion"]


async def test_labels_annotations_and_replication(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    secret = fake.secrets[_name(store, TEAM, USER, ref)]
    assert dict(secret.labels) == {"app": "slack-mcp-bot", "team": TEAM.lower(), "user": USER.lower()}
    assert dict(secret.annotations) == {"team_id": TEAM, "user_id": USER, "ref": ref}
    assert "automatic" in secret.replication


async def test_update_adds_a_version_and_latest_wins(
    store: GcpCredentialStore, fake: FakeSecretManager
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    newer = {"header:Authorization": "Bearer rotated-s3cret-77"}

    assert await store.put(TEAM, USER, newer, ref=ref) == ref

    assert len(fake.payloads(_name(store, TEAM, USER, ref))) == 2
    assert await store.get(TEAM, USER, ref) == newer


async def test_put_with_a_new_given_ref_creates_it(store: GcpCredentialStore) -> None:
    assert await store.put(TEAM, USER, VALUES, ref="github-1") == "github-1"
    assert await store.get(TEAM, USER, "github-1") == VALUES


async def test_unsafe_ids_are_encoded_injectively(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    await store.put("a-b", "c", {"env:X": "one"}, ref="r")
    await store.put("a", "b-c", {"env:X": "two"}, ref="r")
    await store.put("T/1", "U é", {"env:X": "three"}, ref="conn.x y")

    assert await store.get("a-b", "c", "r") == {"env:X": "one"}
    assert await store.get("a", "b-c", "r") == {"env:X": "two"}
    assert await store.get("T/1", "U é", "conn.x y") == {"env:X": "three"}
    assert len(fake.secrets) == 3


async def test_other_user_or_team_sees_nothing(store: GcpCredentialStore) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert await store.get(TEAM, USER_B, ref) == {}
    assert await store.get(TEAM_2, USER, ref) == {}
    assert await store.delete(TEAM, USER_B, ref) is False
    assert await store.delete(TEAM_2, USER, ref) is False
    assert await store.get(TEAM, USER, ref) == VALUES


async def test_delete_removes_the_secret(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert await store.delete(TEAM, USER, ref) is True

    assert fake.secrets == {}
    assert await store.get(TEAM, USER, ref) == {}
    assert await store.delete(TEAM, USER, ref) is False


async def test_unknown_ref_is_empty(store: GcpCredentialStore) -> None:
    assert await store.get(TEAM, USER, "nope") == {}


async def test_corrupted_crc_is_a_credential_error(
    store: GcpCredentialStore, fake: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await store.put(TEAM, USER, VALUES)
    fake.corrupt_crc = True

    with pytest.raises(CredentialError) as caught:
        await store.get(TEAM, USER, ref)

    assert "CRC32C" in caught.value.reason
    assert SECRET not in str(caught.value)
    assert ref not in str(caught.value)
    assert SECRET not in caplog.text


async def test_destroyed_versions_are_a_credential_error(
    store: GcpCredentialStore, fake: FakeSecretManager
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    for version in fake.versions[_name(store, TEAM, USER, ref)]:
        version.state = type(version.state).DESTROYED

    with pytest.raises(CredentialError) as caught:
        await store.get(TEAM, USER, ref)

    assert not isinstance(caught.value, CredentialBackendError)
    assert "FailedPrecondition" in caught.value.reason
    assert ref not in str(caught.value)


async def test_latest_is_the_newest_version_even_when_destroyed(
    store: GcpCredentialStore, fake: FakeSecretManager
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    await store.put(TEAM, USER, {"env:X": "newer"}, ref=ref)
    client = fake.async_client()
    try:
        await client.destroy_secret_version(request={"name": f"{_name(store, TEAM, USER, ref)}/versions/2"})
    finally:
        await client.transport.close()

    with pytest.raises(CredentialError) as caught:
        await store.get(TEAM, USER, ref)

    assert "FailedPrecondition" in caught.value.reason


async def test_latest_is_the_newest_version_even_when_disabled(
    store: GcpCredentialStore, fake: FakeSecretManager
) -> None:
    fake.refuse_destroy = True  # keep version 1 enabled
    ref = await store.put(TEAM, USER, VALUES)
    await store.put(TEAM, USER, {"env:X": "newer"}, ref=ref)
    newest = fake.versions[_name(store, TEAM, USER, ref)][-1]
    newest.state = type(newest.state).DISABLED

    with pytest.raises(CredentialError) as caught:
        await store.get(TEAM, USER, ref)

    assert "FailedPrecondition" in caught.value.reason


async def test_updates_destroy_the_older_versions(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    await store.put(TEAM, USER, {"env:X": "second"}, ref=ref)
    newest = {"header:Authorization": "Bearer third-s3cret-42"}
    await store.put(TEAM, USER, newest, ref=ref)
    name = _name(store, TEAM, USER, ref)

    assert fake.states(name) == ["DESTROYED", "DESTROYED", "ENABLED"]
    assert fake.payloads(name)[:2] == [b"", b""]
    assert await store.get(TEAM, USER, ref) == newest
    client = fake.async_client()
    try:
        for number in (1, 2):
            with pytest.raises(gexc.FailedPrecondition):
                await client.access_secret_version(request={"name": f"{name}/versions/{number}"})
        listed = await client.list_secret_versions(request={"parent": name, "filter": "state:ENABLED"})
        assert [version.name async for version in listed] == [f"{name}/versions/3"]
    finally:
        await client.transport.close()


async def test_first_put_destroys_nothing(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    assert fake.states(_name(store, TEAM, USER, ref)) == ["ENABLED"]
    assert "DestroySecretVersion" not in fake.calls


async def test_a_refused_destroy_keeps_the_update_and_warns_without_the_value(
    store: GcpCredentialStore, fake: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await store.put(TEAM, USER, VALUES)
    fake.refuse_destroy = True
    newer = {"header:Authorization": "Bearer rotated-s3cret-77"}

    assert await store.put(TEAM, USER, newer, ref=ref) == ref

    name = _name(store, TEAM, USER, ref)
    assert await store.get(TEAM, USER, ref) == newer
    assert fake.states(name) == ["ENABLED", "ENABLED"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("destroy" in message and name.rpartition("/")[2] in message for message in warnings)
    for value in [*VALUES.values(), *newer.values()]:
        assert value not in caplog.text


async def test_non_map_payload_is_a_credential_error(
    store: GcpCredentialStore, fake: FakeSecretManager
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    fake.versions[_name(store, TEAM, USER, ref)][-1].data = b'["not", "a map"]'

    with pytest.raises(CredentialError):
        await store.get(TEAM, USER, ref)


async def test_invalid_keys_are_refused_without_quoting_values(store: GcpCredentialStore) -> None:
    with pytest.raises(ValueError, match="header:<Name>") as caught:
        await store.put(TEAM, USER, {"Authorization": SECRET})
    assert SECRET not in str(caught.value)


async def test_stopped_server_is_a_credential_error_within_the_timeout(
    store: GcpCredentialStore, fake: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await store.put(TEAM, USER, VALUES)
    fake.stop()
    store = GcpCredentialStore(PROJECT, client=store._client, timeout=1.0)  # UNAVAILABLE is retried

    for call in (
        store.get(TEAM, USER, ref),
        store.put(TEAM, USER, VALUES),
        store.delete(TEAM, USER, ref),
    ):
        started = time.monotonic()
        with pytest.raises(CredentialBackendError) as caught:
            await call
        assert time.monotonic() - started < 1.0 + 1.0
        assert isinstance(caught.value, CredentialError)
        assert "Secret Manager" in str(caught.value)
        assert ref not in str(caught.value)
    assert SECRET not in caplog.text


async def test_unreachable_address_is_a_credential_error() -> None:
    from tests.support.fake_secret_manager import FakeSecretManager as Fake

    client = Fake(address="127.0.0.1:1").async_client()
    store = GcpCredentialStore(PROJECT, client=client, timeout=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(CredentialBackendError):
            await store.get(TEAM, USER, "ref")
    finally:
        await client.transport.close()
    assert time.monotonic() - started < 1.5 + 1.0


async def test_slow_server_hits_the_deadline(store: GcpCredentialStore, fake: FakeSecretManager) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    fake.delay = 5.0
    started = time.monotonic()

    with pytest.raises(CredentialBackendError) as caught:
        await store.get(TEAM, USER, ref)

    assert time.monotonic() - started < 3.0 + 1.0
    assert "DeadlineExceeded" in caught.value.reason
    fake.delay = 0.0


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
    ],
    ids=lambda code: code.name,
)
async def test_an_ailing_service_is_a_backend_error_on_every_call(code: grpc.StatusCode) -> None:
    with refusing_server(code) as address:
        client = FakeSecretManager(address=address).async_client()
        store = GcpCredentialStore(PROJECT, client=client, timeout=1.0)  # UNAVAILABLE is retried
        try:
            for call in (
                store.get(TEAM, USER, "ref"),
                store.put(TEAM, USER, VALUES),
                store.delete(TEAM, USER, "ref"),
            ):
                started = time.monotonic()
                with pytest.raises(CredentialBackendError) as caught:
                    await call
                assert time.monotonic() - started < 1.0 + 1.0
                assert "can't be reached right now" in str(caught.value)
                assert SECRET not in str(caught.value)
                assert SECRET not in caught.value.reason
        finally:
            await client.transport.close()


async def test_failed_precondition_is_about_the_record_only_when_reading() -> None:
    with refusing_server(grpc.StatusCode.FAILED_PRECONDITION) as address:
        client = FakeSecretManager(address=address).async_client()
        store = GcpCredentialStore(PROJECT, client=client, timeout=1.0)
        try:
            with pytest.raises(CredentialError) as caught:
                await store.get(TEAM, USER, "ref")
            assert not isinstance(caught.value, CredentialBackendError)
            with pytest.raises(CredentialBackendError):
                await store.put(TEAM, USER, VALUES)
            with pytest.raises(CredentialBackendError):
                await store.delete(TEAM, USER, "ref")
        finally:
            await client.transport.close()


async def test_aclose_closes_the_channel_of_a_client_the_store_built(default_credentials: None) -> None:
    store = GcpCredentialStore(PROJECT)
    channel = store.client.transport.grpc_channel
    assert channel.get_state() != grpc.ChannelConnectivity.SHUTDOWN

    await store.aclose()
    await store.aclose()  # twice is safe

    assert channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    with pytest.raises(CredentialBackendError, match="closed"):
        await store.get(TEAM, USER, "ref")  # no new client is built after shutdown


async def test_aclose_leaves_an_injected_client_open(store: GcpCredentialStore) -> None:
    ref = await store.put(TEAM, USER, VALUES)

    await store.aclose()
    await store.aclose()

    assert store.client.transport.grpc_channel.get_state() != grpc.ChannelConnectivity.SHUTDOWN
    assert await store.get(TEAM, USER, ref) == VALUES


async def test_services_aclose_closes_the_gcp_client(tmp_path: Path, default_credentials: None) -> None:
    settings = make_settings(tmp_path, credential_backend="gcp", google_cloud_project=PROJECT)
    services = await build_services(settings)
    try:
        assert isinstance(services.credentials, GcpCredentialStore)
        channel = services.credentials.client.transport.grpc_channel
    finally:
        await services.aclose()

    assert channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    await services.aclose()  # twice is safe


async def test_services_leave_a_secret_source_passed_in_open(
    tmp_path: Path, store: GcpCredentialStore
) -> None:
    ref = await store.put(TEAM, USER, VALUES)
    services = await build_services(make_settings(tmp_path), secrets=store)
    await services.aclose()

    assert await store.get(TEAM, USER, ref) == VALUES


async def test_no_secret_in_logs(
    store: GcpCredentialStore, fake: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await store.put(TEAM, USER, VALUES)
    await store.get(TEAM, USER, ref)
    await store.get(TEAM, USER_B, ref)
    await store.delete(TEAM, USER, ref)

    for value in VALUES.values():
        assert value not in caplog.text


async def test_ids_differing_only_in_case_keep_separate_secrets(store: GcpCredentialStore) -> None:
    await store.put("Tmixed", "Uabc", VALUES, ref="A")  # the same lower-cased labels
    await store.put("tmixed", "Uabc", {"env:OTHER": "other"}, ref="A")

    assert await store.get("Tmixed", "Uabc", "A") == VALUES
    assert await store.get("tmixed", "Uabc", "A") == {"env:OTHER": "other"}


def test_project_is_required() -> None:
    with pytest.raises(ConfigError):
        GcpCredentialStore("")
