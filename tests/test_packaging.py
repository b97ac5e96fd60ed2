"""Packaging: what the code imports is declared, and a default install works without the extras.

The cloud secret stores' SDKs (boto3, the Google client, asyncpg) are the extras ``[aws]``,
``[gcp]`` and ``[postgres]``. A child Python whose import system refuses them stands in for a
default install: the bot must import, ``slack-mcp-bot check`` must work on the default settings,
and choosing a backend whose extra is missing must say which ``pip install`` fixes it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from mcp_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK = ROOT / "requirements.lock"
RUNTIME_DIRS = ("bot", "mcp_core", "run_cards")
DEV_DIRS = ("tests", "bench")
SUBPROCESS_TIMEOUT_S = 60

# The only runtime modules that may import an extra's SDK, and which extra that is.
EXTRA_OF_MODULE = {
    "mcp_core/credentials/aws.py": "aws",
    "mcp_core/credentials/gcp.py": "gcp",
    "mcp_core/credentials/supabase.py": "postgres",
    "mcp_core/store/_engine.py": "postgres",  # asyncpg's error class, when installed
    "mcp_core/store/_changes.py": "postgres",  # the LISTEN connection, on PostgreSQL only
}
# Declared but never imported by name, and why.
USED_WITHOUT_IMPORT = {
    "aiosqlite": "SQLAlchemy loads it for sqlite+aiosqlite:// URLs",
    "ruff": "the linter, run as a command",
}

REFUSE_EXTRAS = """
import importlib.abc, sys

REFUSED = ("boto3", "botocore", "google.cloud.secretmanager", "google_crc32c", "asyncpg")

class RefuseExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == refused or name.startswith(refused + ".") or name.startswith(refused + "_")
               for refused in REFUSED):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None

sys.meta_path.insert(0, RefuseExtras())
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return canonical(match.group())


def declared(group: str) -> set[str]:
    """The distributions a group names: ``core``, or an extra with its self-references expanded."""
    project = PYPROJECT["project"]
    requirements = project["dependencies"] if group == "core" else project["optional-dependencies"][group]
    names: set[str] = set()
    for requirement in requirements:
        name = requirement_name(requirement)
        if name == canonical(project["name"]):
            extras = re.search(r"\[(.*)\]", requirement)
            assert extras, requirement
            for extra in extras.group(1).split(","):
                names |= declared(extra.strip())
        else:
            names.add(name)
    return names


def local_names() -> set[str]:
    names = {"bot", "mcp_core", "run_cards", "tests", "bench"}
    for directory in DEV_DIRS:
        names |= {path.stem for path in (ROOT / directory).rglob("*.py")}
        names |= {path.name for path in (ROOT / directory).rglob("*") if path.is_dir()}
    return names


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@cache
def installed_packages() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def distribution_of(module: str) -> str:
    """The installed distribution providing ``module`` (namespace packages such as google.*)."""
    top = module.split(".")[0]
    candidates = installed_packages().get(top, [])
    if len(set(candidates)) == 1:
        return canonical(candidates[0])
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth])
        owners = {
            canonical(name)
            for name in candidates
            if any(
                str(file).startswith(prefix + "/") or str(file) == prefix + ".py"
                for file in importlib.metadata.distribution(name).files or ()
            )
        }
        if len(owners) == 1:
            return owners.pop()
    raise AssertionError(f"no single installed distribution provides {module} (candidates {candidates})")


def third_party_imports(directories: tuple[str, ...]) -> dict[str, set[str]]:
    """Distribution → the files importing it."""
    skip = local_names()
    found: dict[str, set[str]] = {}
    for directory in directories:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for module in imports(path):
                if module.split(".")[0] in sys.stdlib_module_names or module.split(".")[0] in skip:
                    continue
                found.setdefault(distribution_of(module), set()).add(path.relative_to(ROOT).as_posix())
    return found


def run_without_extras(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python that cannot import the extras, in an empty directory."""
    detected = {"AWS_LAMBDA_FUNCTION_NAME", "AWS_EXECUTION_ENV"}
    environ = {
        k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields and k not in detected
    }
    environ.update(DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-c", REFUSE_EXTRAS + textwrap.dedent(code)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


CHECK_THEN_START = """
import asyncio
from bot.cli import main
from mcp_core.errors import ConfigError
from mcp_core.services import build_services
from mcp_core.settings import Settings

main(["check"], standalone_mode=False)
print("--- start")
try:
    asyncio.run(build_services(Settings()))
except ConfigError as exc:
    print("ConfigError:", exc)
"""


def check_then_start(tmp_path: Path, **env: str) -> tuple[str, str]:
    """``slack-mcp-bot check``'s output, then what building the services (start-up) said."""
    result = run_without_extras(CHECK_THEN_START, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    check, start = result.stdout.split("--- start")
    return check, start


# --- what is declared --------------------------------------------------------------------------------


def test_every_runtime_import_is_declared_in_the_core_or_its_modules_extra() -> None:
    core = declared("core")
    undeclared = {}
    for distribution, files in third_party_imports(RUNTIME_DIRS).items():
        for file in files:
            extra = EXTRA_OF_MODULE.get(file)
            if distribution not in core and (extra is None or distribution not in declared(extra)):
                undeclared.setdefault(distribution, []).append(file)
    assert undeclared == {}


def test_the_cloud_sdks_are_not_core_dependencies() -> None:
    assert declared("core") & {"boto3", "botocore", "google-cloud-secret-manager", "asyncpg"} == set()


def test_every_test_and_bench_import_is_declared_for_dev() -> None:
    dev = declared("core") | declared("dev")
    assert {d: sorted(f) for d, f in third_party_imports(DEV_DIRS).items() if d not in dev} == {}


@pytest.mark.parametrize("group", ["core", "aws", "gcp", "postgres", "dev"])
def test_every_declared_distribution_is_imported_somewhere(group: str) -> None:
    directories = RUNTIME_DIRS + DEV_DIRS if group == "dev" else RUNTIME_DIRS
    imported = set(third_party_imports(directories))
    own = declared(group) - (declared("all") if group == "dev" else set())
    assert sorted(own - imported - set(USED_WITHOUT_IMPORT)) == []


def test_the_lock_pins_every_declared_distribution() -> None:
    pinned = {
        canonical(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", LOCK.read_text(), re.M)
    }
    assert sorted((declared("core") | declared("dev")) - pinned) == []


# --- a default install -------------------------------------------------------------------------------


def test_the_bot_imports_without_any_extra(tmp_path: Path) -> None:
    result = run_without_extras("import bot.app, bot.cli, mcp_core.services\nprint('imported')", tmp_path)
    assert result.stdout.strip() == "imported", result.stderr


def test_check_and_start_on_the_default_settings_work_without_any_extra(tmp_path: Path) -> None:
    check, start = check_then_start(tmp_path)
    assert "Database: sqlite" in check
    assert "Credentials: local backend (no cloud environment detected)" in check
    assert "PROBLEM" not in check
    assert start.strip() == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CREDENTIAL_BACKEND": "aws"},
            "CREDENTIAL_BACKEND=aws needs the aws extra: pip install 'slack-mcp-bot[aws]'",
        ),
        (
            {"CREDENTIAL_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "demo"},
            "CREDENTIAL_BACKEND=gcp needs the gcp extra: pip install 'slack-mcp-bot[gcp]'",
        ),
        (
            {"GOOGLE_CLOUD_PROJECT": "demo"},
            "The gcp credential backend (GOOGLE_CLOUD_PROJECT is set) needs the gcp extra: "
            "pip install 'slack-mcp-bot[gcp]'",
        ),
        (
            {"CREDENTIAL_BACKEND": "supabase", "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres"},
            "CREDENTIAL_BACKEND=supabase needs the postgres extra: pip install 'slack-mcp-bot[postgres]'",
        ),
    ],
    ids=["aws", "gcp", "gcp-detected", "supabase"],
)
def test_a_backend_without_its_extra_names_the_pip_install_in_check_and_at_start(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    check, start = check_then_start(tmp_path, **env)
    assert f"PROBLEM: {message}" in check
    assert f"ConfigError: {message}" in start


def test_a_postgres_database_url_without_the_extra_names_the_pip_install(tmp_path: Path) -> None:
    message = (
        "DATABASE_URL points at PostgreSQL, which needs the postgres extra: "
        "pip install 'slack-mcp-bot[postgres]'"
    )
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres"}
    check, start = check_then_start(tmp_path, **env)
    assert message in check
    assert f"ConfigError: {message}" in start


# --- the wheel ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel (built by pip the way an install builds it), unpacked."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("slack_mcp_bot-*.whl")
    target = out / "site"
    shutil.unpack_archive(wheel, target, format="zip")
    return target


def test_an_installed_wheel_prints_the_manifest_and_applies_the_migrations(
    unpacked_wheel: Path, tmp_path: Path
) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(unpacked_wheel), "DATA_DIR": str(tmp_path / "data")}

    def python(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,  # no repository around: only what the wheel holds
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert python("-c", "import bot; print(bot.__file__)").startswith(str(unpacked_wheel))  # not the checkout
    assert python("-m", "bot", "manifest") == (ROOT / "manifest.yml").read_text(encoding="utf-8")
    assert python("-m", "bot", "migrate").startswith("Applied migrations: [1, 2")
