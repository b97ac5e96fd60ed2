"""The deployment files agree with the project: the Dockerfile runs what the Procfile runs,
copies everything the wheel is built from (and an image built from only that holds the
migrations and the manifest), keeps secrets out of the build context; the compose file sets
only documented settings and gives a draining process the time it needs.

No Docker daemon or registry is reachable in CI, so the image itself is not built here: what
can be checked without one is."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from mcp_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def dockerfile_copies() -> list[str]:
    """The build-context paths the final stage copies (``COPY --from`` excluded)."""
    sources: list[str] = []
    for line in DOCKERFILE.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from"):
            sources += words[1:-1]
    return sources


def default_command() -> str:
    [cmd] = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, flags=re.M)
    argv = yaml.safe_load(cmd)
    assert argv[:2] == ["sh", "-c"]
    return argv[2].removeprefix("exec ").replace('"$PORT"', "$PORT")


def test_the_images_default_command_is_the_procfiles_web_process_run_by_exec() -> None:
    assert default_command() == procfile()["web"]
    assert '"exec slack-mcp-bot run --http' in DOCKERFILE  # SIGTERM reaches the bot: it drains


def test_the_image_installs_the_hash_checked_lock_then_the_bot_without_dependencies() -> None:
    assert "--require-hashes -r /src/requirements.lock" in DOCKERFILE
    assert "--no-deps /src" in DOCKERFILE
    [python] = re.findall(r"^FROM python:(\d+\.\d+)", DOCKERFILE, flags=re.M)
    assert f"--python-version {python}" in (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert PYPROJECT["project"]["requires-python"] == f">={python}"


def test_the_image_copies_every_source_the_wheel_is_built_from() -> None:
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {*wheel["packages"], *wheel["force-include"], PYPROJECT["project"]["readme"], "pyproject.toml"}
    assert needed <= set(dockerfile_copies())


def test_a_wheel_built_from_only_what_the_image_copies_holds_the_migrations_and_manifest(
    tmp_path: Path,
) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in dockerfile_copies():
        if source == "requirements.lock":
            continue
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
        copy(ROOT / source, context / source)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(context)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("slack_mcp_bot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.name for p in (ROOT / "sql").glob("*.sql")}
    assert {f"mcp_core/store/sql/{name}" for name in migrations} <= names
    assert "bot/manifest.yml" in names


@pytest.mark.parametrize("secret", [".env", "data/", ".venv/", ".git/"])
def test_secrets_and_local_state_stay_out_of_the_build_context(secret: str) -> None:
    assert secret in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_compose_bot_sets_only_documented_settings_and_reads_the_env_file() -> None:
    bot = COMPOSE["services"]["bot"]
    fields = {name.upper() for name in Settings.model_fields}
    for name in bot["environment"]:
        assert name in fields, name
        assert f"| `{name}` |" in README, name
    assert "./.env:/app/.env:ro" in bot["volumes"]
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, flags=re.M)


def test_the_compose_bot_uses_the_compose_postgres_and_waits_until_it_is_healthy() -> None:
    bot, postgres = COMPOSE["services"]["bot"], COMPOSE["services"]["postgres"]
    env = postgres["environment"]
    user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
    assert bot["environment"]["DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/{db}"
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_compose_bot_is_given_longer_than_the_drain_to_stop_and_is_health_checked() -> None:
    bot = COMPOSE["services"]["bot"]
    grace_s = int(bot["stop_grace_period"].removesuffix("s"))
    assert grace_s > Settings.model_fields["turn_drain_s"].default
    port = bot["environment"]["PORT"]
    assert f"127.0.0.1:{port}/healthz" in shlex.join(bot["healthcheck"]["test"])
    assert f"{port}:{port}" in bot["ports"]
