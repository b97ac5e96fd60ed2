"""The AWS credential backend against moto's server over real HTTP, boto3 unchanged.

The store builds its own client from the standard AWS environment: the server is reached
only through ``AWS_ENDPOINT_URL_SECRETS_MANAGER``. One server serves the whole session, so
every test works in a team of its own.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from mcp_core import errors
from mcp_core.credentials import CredentialStore
from mcp_core.credentials.aws import AwsCredentialStore
from mcp_core.errors import CredentialBackendError
from tests.support.aws import aws_environment

from .conftest import closed_port

pytestmark = pytest.mark.anyio

SECRET = "Bearer s3cret-aws-5f2e81"
VALUES = {"header:Authorization": SECRET, "env:API_TOKEN": "env-s3cret-aws-9c03"}
NEW_SECRET = "Bearer s3cret-aws-rotated-44ab"
USER = "U0001"
USER_B = "U0002"
PREFIX = "slack-mcp-bot/"


@pytest.fixture
def store(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AwsCredentialStore:
    aws_environment(monkeypatch, moto_url)
    return AwsCredentialStore()


@pytest.fixture
def team() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}"


async def test_the_standard_environment_picks_the_endpoint(store: AwsCredentialStore, moto_url: str) -> None:
    assert store.client.meta.endpoint_url == moto_url
    assert store.client.meta.region_name == "us-east-1"
    assert isinstance(store, CredentialStore)


async def test_round_trip(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    assert len(ref) == 32
    assert await store.get(team, USER, ref) == VALUES
    secret = store.client.get_secret_value(SecretId=f"{PREFIX}{team}/{USER}/{ref}")
    assert json.loads(secret["SecretString"]) == VALUES


async def test_put_under_a_new_given_ref_creates_it(store: AwsCredentialStore, team: str) -> None:
    assert await store.put(team, USER, VALUES, ref="conn-1") == "conn-1"
    assert await store.get(team, USER, "conn-1") == VALUES


async def test_update_adds_a_version_and_keeps_the_previous(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    new_values = {"header:Authorization": NEW_SECRET}
    assert await store.put(team, USER, new_values, ref=ref) == ref
    assert await store.get(team, USER, ref) == new_values
    name = f"{PREFIX}{team}/{USER}/{ref}"
    previous = store.client.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"]) == VALUES
    versions = store.client.list_secret_version_ids(SecretId=name)["Versions"]
    assert len(versions) == 2


async def test_the_secret_is_tagged_with_its_owner(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    described = store.client.describe_secret(SecretId=f"{PREFIX}{team}/{USER}/{ref}")
    tags = {tag["Key"]: tag["Value"] for tag in described["Tags"]}
    assert tags == {"team": team, "user": USER, "app": "slack-mcp-bot"}


async def test_another_user_can_neither_read_nor_delete(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    assert await store.get(team, USER_B, ref) == {}
    assert await store.get("TOTHER", USER, ref) == {}
    assert await store.delete(team, USER_B, ref) is False
    assert await store.delete("TOTHER", USER, ref) is False
    assert await store.get(team, USER, ref) == VALUES


async def test_another_user_cannot_overwrite_by_ref(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    await store.put(team, USER_B, {"header:Authorization": NEW_SECRET}, ref=ref)
    assert await store.get(team, USER, ref) == VALUES


async def test_delete_removes_the_secret(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    assert await store.delete(team, USER, ref) is True
    assert await store.get(team, USER, ref) == {}
    assert await store.delete(team, USER, ref) is False
    with pytest.raises(store.client.exceptions.ResourceNotFoundException):
        store.client.describe_secret(SecretId=f"{PREFIX}{team}/{USER}/{ref}")
    # Deleted without a recovery window: the same ref can be used again at once.
    assert await store.put(team, USER, VALUES, ref=ref) == ref


async def test_unknown_and_malformed_refs_are_empty(store: AwsCredentialStore, team: str) -> None:
    assert await store.get(team, USER, uuid.uuid4().hex) == {}
    assert await store.get(team, USER, "../../etc") == {}
    assert await store.delete(team, USER, "a/b") is False
    with pytest.raises(ValueError, match="ref"):
        await store.put(team, USER, VALUES, ref="a/b")
    with pytest.raises(ValueError, match="header:<Name>"):
        await store.put(team, USER, {"Authorization": SECRET})
    with pytest.raises(ValueError, match="non-empty"):
        await store.put("", USER, VALUES)


async def test_ids_outside_the_name_alphabet_are_escaped_apart(store: AwsCredentialStore, team: str) -> None:
    odd, lookalike = f"{team} x/y", f"{team}=20x=2Fy"
    ref_odd = await store.put(odd, "user é", VALUES, ref="same")
    ref_look = await store.put(lookalike, "user é", {"env:OTHER": NEW_SECRET}, ref="same")
    assert await store.get(odd, "user é", ref_odd) == VALUES
    assert await store.get(lookalike, "user é", ref_look) == {"env:OTHER": NEW_SECRET}
    user = "user=20=C3=A9"
    assert store.client.describe_secret(SecretId=f"{PREFIX}{team}=20x=2Fy/{user}/same")["Tags"]
    assert store.client.describe_secret(SecretId=f"{PREFIX}{team}=3D20x=3D2Fy/{user}/same")["Tags"]


async def test_a_secret_that_is_not_a_map_of_strings_is_a_credential_error(
    store: AwsCredentialStore, team: str
) -> None:
    store.client.create_secret(Name=f"{PREFIX}{team}/{USER}/broken", SecretString=f"not json {SECRET}")
    with pytest.raises(errors.CredentialError) as caught:
        await store.get(team, USER, "broken")
    assert SECRET not in str(caught.value)
    assert SECRET not in caught.value.reason


async def test_no_secret_in_any_log_line(
    store: AwsCredentialStore, team: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await store.put(team, USER, VALUES)
    await store.get(team, USER, ref)
    await store.put(team, USER, {"header:Authorization": NEW_SECRET}, ref=ref)
    await store.get(team, USER, ref)
    await store.get(team, USER_B, ref)
    await store.delete(team, USER, ref)
    await store.get(team, USER, ref)
    assert any(record.name.startswith("mcp_core") for record in caplog.records)
    assert any(record.name.startswith(("botocore", "urllib3")) for record in caplog.records)
    for record in caplog.records:
        text = record.getMessage()
        for secret in (SECRET, NEW_SECRET, "s3cret"):
            assert secret not in text, record.name
    assert "s3cret" not in caplog.text


async def test_an_unreachable_endpoint_is_a_clear_credential_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    aws_environment(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    store = AwsCredentialStore()
    for call in (
        lambda: store.put("T1", USER, VALUES),
        lambda: store.put("T1", USER, VALUES, ref="r1"),
        lambda: store.get("T1", USER, "r1"),
        lambda: store.delete("T1", USER, "r1"),
    ):
        started = time.monotonic()
        with pytest.raises(errors.CredentialError) as caught:
            await call()
        assert time.monotonic() - started < 10
        error = caught.value
        assert isinstance(error, CredentialBackendError)
        assert "AWS Secrets Manager could not be reached" in error.reason
        assert "ask an admin" in str(error)
        assert "s3cret" not in str(error)
        assert "s3cret" not in error.reason
    named = error.for_connection("github")
    assert isinstance(named, CredentialBackendError)
    assert str(named).startswith("github: ")
    assert "s3cret" not in caplog.text


async def test_access_denied_is_a_clear_credential_error(caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    store = AwsCredentialStore(client)
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "AccessDeniedException", "not allowed", 400)
        stub.add_client_error("create_secret", "AccessDeniedException", "not allowed", 400)
        stub.add_client_error("describe_secret", "AccessDeniedException", "not allowed", 400)
        stub.add_client_error("get_secret_value", "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(CredentialBackendError, match="AccessDeniedException") as caught:
            await store.get("T1", USER, "r1")
        assert "ask an admin" in str(caught.value)
        with pytest.raises(CredentialBackendError) as caught:
            await store.put("T1", USER, VALUES)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(CredentialBackendError):
            await store.delete("T1", USER, "r1")
        with pytest.raises(CredentialBackendError, match="ThrottlingException"):
            await store.get("T1", USER, "r1")
    assert "s3cret" not in caplog.text


async def test_a_stopped_server_is_a_backend_error(monkeypatch: pytest.MonkeyPatch, team: str) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    aws_environment(monkeypatch, f"http://{host}:{port}")
    store = AwsCredentialStore()
    try:
        ref = await store.put(team, USER, VALUES)
        assert await store.get(team, USER, ref) == VALUES
    finally:
        server.stop()
    for call in (
        lambda: store.get(team, USER, ref),
        lambda: store.put(team, USER, VALUES, ref=ref),
        lambda: store.delete(team, USER, ref),
    ):
        started = time.monotonic()
        with pytest.raises(CredentialBackendError) as caught:
            await call()
        assert time.monotonic() - started < 10
        assert "could not be reached" in caught.value.reason
        assert "s3cret" not in str(caught.value)
    await store.aclose()


def _open_pools(client: object) -> int:
    """Connection pools the botocore client holds open (``close()`` clears them)."""
    return len(client._endpoint.http_session._manager.pools)  # type: ignore[attr-defined]


async def test_aclose_closes_only_a_client_the_store_built(store: AwsCredentialStore, team: str) -> None:
    ref = await store.put(team, USER, VALUES)
    assert _open_pools(store.client) == 1
    await store.aclose()
    assert _open_pools(store.client) == 0
    await store.aclose()  # twice is safe

    injected = boto3.client("secretsmanager")
    borrowing = AwsCredentialStore(injected)
    assert await borrowing.get(team, USER, ref) == VALUES
    await borrowing.aclose()
    assert _open_pools(injected) == 1


async def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ConfigError, match="prefix"):
        AwsCredentialStore(object(), prefix="bad prefix/")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    with pytest.raises(errors.ConfigError, match="region"):
        AwsCredentialStore()
    assert AwsCredentialStore(region="eu-west-1").client.meta.region_name == "eu-west-1"
