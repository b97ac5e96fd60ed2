"""Choosing the credential backend: CREDENTIAL_BACKEND first, then the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from mcp_core import errors
from mcp_core.credentials import detect_backend, preflight
from mcp_core.credentials.backends import Selection
from mcp_core.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


@pytest.mark.parametrize(
    ("environ", "database_url", "expected"),
    [
        ({}, None, "local"),
        ({"GOOGLE_CLOUD_PROJECT": "p1"}, None, "gcp"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "bot"}, None, "aws"),
        ({"AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"}, None, "aws"),
        ({}, "postgresql://postgres:pw@db.abcd.supabase.co:5432/postgres", "supabase"),
        ({}, "postgresql://u:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", "supabase"),
        ({}, "postgresql://postgres@127.0.0.1:5432/app", "local"),
        ({"GOOGLE_CLOUD_PROJECT": "p1", "AWS_EXECUTION_ENV": "x"}, None, "gcp"),
    ],
)
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
