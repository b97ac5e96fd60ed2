"""The table of credential backends: choosing one (CREDENTIAL_BACKEND first, then the
environment), checking it for ``slack-mcp-bot check`` and building it, the same way for every row."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import click
import pytest
from pydantic import SecretStr

from bot.cli import credentials_migrate
from mcp_core import errors
from mcp_core.credentials import (
    BACKENDS,
    CredentialStore,
    describe_backend,
    detect_backend,
    open_backend,
    preflight,
)
from mcp_core.credentials.backends import Selection
from mcp_core.settings import Settings
from mcp_core.store import create_engine, migrate
from tests.support.aws import aws_environment

from .conftest import KEY_1, pg_database

pytestmark = pytest.mark.anyio


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


DETECTED = [
    ({}, None, "local"),
    ({"GOOGLE_CLOUD_PROJECT": "p1"}, None, "gcp"),
    ({"AWS_LAMBDA_FUNCTION_NAME": "bot"}, None, "aws"),
    ({"AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"}, None, "aws"),
    ({}, "postgresql://postgres:pw@db.abcd.supabase.co:5432/postgres", "supabase"),
    ({}, "postgresql://u:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", "supabase"),
    ({}, "postgresql://postgres@127.0.0.1:5432/app", "local"),
    ({"GOOGLE_CLOUD_PROJECT": "p1", "AWS_EXECUTION_ENV": "x"}, None, "gcp"),
]


@pytest.mark.parametrize(("environ", "database_url", "expected"), DETECTED)
def test_the_environment_picks_the_backend_when_none_is_configured(
    tmp_path: Path, environ: dict[str, str], database_url: str | None, expected: str
) -> None:
    config = settings(tmp_path, database_url=SecretStr(database_url) if database_url else None)

    selection = detect_backend(config, environ=environ, cwd=tmp_path)

    assert selection.backend == expected
    assert selection.reason


def test_a_dotenv_file_means_a_local_install_even_on_a_cloud_host(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=x\n")

    selection = detect_backend(settings(tmp_path), environ={"GOOGLE_CLOUD_PROJECT": "p1"}, cwd=tmp_path)

    assert selection == Selection("local", "a .env file is present (local install)")


def test_credential_backend_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    config = settings(tmp_path, credential_backend="aws")

    assert detect_backend(config, environ={"GOOGLE_CLOUD_PROJECT": "p"}, cwd=tmp_path).backend == "aws"


def test_gcp_without_a_project_is_refused_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)

    with pytest.raises(errors.ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        preflight(Selection("gcp", "CREDENTIAL_BACKEND is set"), settings(tmp_path))


def test_supabase_without_a_postgres_database_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="DATABASE_URL"):
        preflight(Selection("supabase", "CREDENTIAL_BACKEND is set"), settings(tmp_path))


# --- every row of the table, the same way ----------------------------------------------------


def test_every_row_can_be_configured_and_migrated_to() -> None:
    """A new row must also be a value of CREDENTIAL_BACKEND (the settings' Literal)."""
    configurable = typing.get_args(typing.get_args(Settings.model_fields["credential_backend"].annotation)[0])
    migrate_to = next(p for p in credentials_migrate.params if p.name == "target").type

    assert set(configurable) == set(BACKENDS)
    assert isinstance(migrate_to, click.Choice)
    assert list(migrate_to.choices) == list(BACKENDS)


def test_every_row_that_the_environment_reveals_is_detected_by_some_environment() -> None:
    detectable = {name for name, backend in BACKENDS.items() if backend.detect is not None}

    assert detectable <= {expected for _environ, _url, expected in DETECTED}


def test_an_unknown_backend_is_a_config_error_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="no 'vault' credential backend; choose one of local, gcp"):
        preflight(Selection("vault", "--to"), settings(tmp_path))


@asynccontextmanager
async def configured_for(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """Settings with which ``backend`` can be built here, without its cloud: a key for the
    local rows, a project for gcp, moto-style AWS variables, a PostgreSQL database for supabase."""
    values: dict[str, object] = {"credential_backend": backend, "credential_keys": SecretStr(f"k1:{KEY_1}")}
    if backend == "gcp":
        values["google_cloud_project"] = "p1"
    if backend == "aws":
        aws_environment(monkeypatch, "http://127.0.0.1:9")  # built, never called
    if backend != "supabase":
        yield settings(tmp_path, **values)
        return
    async with pg_database() as url:
        yield settings(tmp_path, database_url=SecretStr(url), **values)


@pytest.mark.parametrize(
    "backend",
    [pytest.param(name, marks=[pytest.mark.postgres] if name == "supabase" else []) for name in BACKENDS],
)
async def test_every_row_is_checked_named_in_check_built_and_closed(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    async with configured_for(backend, tmp_path, monkeypatch) as config:
        selection = detect_backend(config)
        assert selection == Selection(backend, "CREDENTIAL_BACKEND is set")
        assert describe_backend(selection, config)
        preflight(selection, config)
        engine = create_engine(config.sqlalchemy_url)
        try:
            await migrate(engine)
            store = await open_backend(selection, config, engine)
            assert isinstance(store, CredentialStore)
            assert type(store).__module__ == BACKENDS[backend].module
            await store.aclose()
            await store.aclose()
        finally:
            await engine.dispose()
