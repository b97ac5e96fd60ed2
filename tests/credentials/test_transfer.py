"""`credentials migrate --to`: every secret copied under its ref, read back, source untouched."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from mcp_core import errors
from mcp_core.credentials.aws import AwsCredentialStore
from mcp_core.credentials.transfer import migrate_credentials
from mcp_core.models import NewConnection
from mcp_core.services import build_services
from mcp_core.settings import Settings
from tests.support.aws import aws_environment

pytestmark = pytest.mark.anyio

VALUES = {"header:Authorization": "Bearer migrate-me-123"}


def remote(name: str, ref: str) -> NewConnection:
    return NewConnection(
        name=name, transport="streamable_http", url="https://x.example/mcp", credential_ref=ref
    )


def local_settings(tmp_path: Path) -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return Settings(
        _env_file=None, data_dir=tmp_path, credential_backend="local", credential_keys=SecretStr(f"k1:{key}")
    )


async def test_local_secrets_move_to_aws_and_a_second_run_changes_nothing(
    tmp_path: Path,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws_environment(monkeypatch, moto_url)
    settings = local_settings(tmp_path)
    services = await build_services(settings)
    try:
        ref = await services.credentials.put("T9", "U9", VALUES)
        new = NewConnection(
            name="remote", transport="streamable_http", url="https://x.example/mcp", credential_ref=ref
        )
        await services.store.create_connection("T9", "U9", new)
        orphan = NewConnection(
            name="orphan", transport="streamable_http", url="https://y.example/mcp", credential_ref="gone"
        )
        await services.store.create_connection("T9", "U9", orphan)
    finally:
        await services.aclose()

    first = await migrate_credentials(settings, "aws")
    second = await migrate_credentials(settings, "aws")

    assert (first.copied, first.empty, first.failed) == (1, 1, [])
    assert (second.copied, second.empty, second.failed) == (1, 1, [])
    assert await AwsCredentialStore().get("T9", "U9", ref) == VALUES
    services = await build_services(settings)
    try:
        assert await services.credentials.get("T9", "U9", ref) == VALUES  # the source is untouched
    finally:
        await services.aclose()


async def test_migrating_to_the_current_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="already live in the local backend"):
        await migrate_credentials(local_settings(tmp_path), "local")


async def test_an_unreachable_target_loses_nothing_and_names_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    aws_environment(monkeypatch, "http://127.0.0.1:9")  # discard port: nothing listens
    settings = local_settings(tmp_path)
    services = await build_services(settings)
    try:
        ref = await services.credentials.put("T9", "U9", VALUES)
        new = NewConnection(
            name="remote", transport="streamable_http", url="https://x.example/mcp", credential_ref=ref
        )
        await services.store.create_connection("T9", "U9", new)
    finally:
        await services.aclose()

    report = await migrate_credentials(settings, "aws")

    assert (report.copied, report.failed) == (0, ["T9/U9/remote"])
    assert "migrate-me-123" not in caplog.text
    services = await build_services(settings)
    try:
        assert await services.credentials.get("T9", "U9", ref) == VALUES
    finally:
        await services.aclose()
