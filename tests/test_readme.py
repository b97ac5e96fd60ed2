"""README.md and .env.example stay true: settings, modules and commands they name exist, and
everything that exists is named."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from pydantic import SecretStr

from bot.cli import main
from mcp_core.settings import Settings
from run_cards import BUILTIN_DIR, load_cards, operator_var
from run_cards.model import command_override_var
from tests.support.servers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = REPO / ".env.example"
FIELDS = {name.upper(): name for name in Settings.model_fields}

READ_ELSEWHERE = {
    "RUN_CARD_<ID>_COMMAND": "run_cards.loader reads it from the process environment, per stdio card",
    "MCP_<CARD>_<FIELD>": "run_cards.operator reads it from .env, per card field (operator pre-fill)",
    "PORT": "`run --port` reads it (click envvar) unless it is a Settings field",
}
"""Configuration-table rows that need not be Settings fields, and who reads them."""


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def config_rows() -> dict[str, str]:
    """Variable → default cell of the README's configuration table."""
    rows = {}
    for line in section("Configuration").splitlines():
        match = re.match(r"\| `([^`]+)` \| ([^|]*) \|", line)
        if match:
            rows[match[1]] = match[2].strip()
    return rows


def default_of(name: str) -> object:
    field = Settings.model_fields[name]
    return field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]


def parsed(name: str, text: str) -> object:
    return getattr(Settings(_env_file=None, **{name: text}), name)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in FIELDS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    assert set(FIELDS) - set(config_rows()) == set()


def test_every_row_of_the_configuration_table_is_a_setting_or_read_elsewhere() -> None:
    assert set(config_rows()) - set(FIELDS) - set(READ_ELSEWHERE) == set()


def test_the_rows_read_elsewhere_are_in_the_table_and_name_what_the_code_reads() -> None:
    assert set(READ_ELSEWHERE) <= set(config_rows())
    assert command_override_var("postgres") == "RUN_CARD_POSTGRES_COMMAND"
    assert operator_var("github", "token") == "MCP_GITHUB_TOKEN"
    if "PORT" not in FIELDS:
        run_port = next(p for p in main.commands["run"].params if p.name == "port")
        assert isinstance(run_port, click.Option)
        assert run_port.envvar == "PORT"
        assert config_rows()["PORT"] == f"`{run_port.default}`"


def test_a_literal_default_in_the_table_is_the_models_default(clean_env: None) -> None:
    for variable, cell in config_rows().items():
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if variable in FIELDS and literal:
            name = FIELDS[variable]
            assert parsed(name, literal[1]) == default_of(name), variable


# --- .env.example -----------------------------------------------------------------------------------


def env_example() -> dict[str, tuple[str, bool]]:
    """Variable → (value, commented out) of every assignment in .env.example."""
    found = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(# ?)?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found[match[2]] = (match[3], bool(match[1]))
    return found


def test_env_example_lists_every_setting() -> None:
    assert set(FIELDS) - set(env_example()) == set()


def test_env_example_names_only_settings_port_or_real_card_fields() -> None:
    cards = load_cards(BUILTIN_DIR).all()
    card_vars = {operator_var(card.id, f.key) for card in cards for f in card.fields}
    card_vars |= {  # a client the operator registered with an OAuth card's server
        f"OAUTH_{card.id.upper().replace('-', '_')}_{part}"
        for card in cards
        if card.auth == "oauth"
        for part in ("CLIENT_ID", "CLIENT_SECRET")
    }

    assert set(env_example()) - set(FIELDS) - card_vars - {"PORT"} == set()


def test_env_example_shows_the_models_defaults_and_no_secret(clean_env: None) -> None:
    for variable, (value, _) in env_example().items():
        if variable not in FIELDS:
            continue
        name = FIELDS[variable]
        if Settings.model_fields[name].annotation == SecretStr | None:
            assert value == "", f"{variable} is a secret: leave it empty"
        elif value:
            assert parsed(name, value) == default_of(name), variable


def test_copying_env_example_to_env_changes_no_setting(clean_env: None) -> None:
    """Every line is commented out, so copying it changes nothing even before empty values are ignored."""
    assert all(commented for _, commented in env_example().values())
    assert Settings(_env_file=ENV_EXAMPLE) == Settings(_env_file=None)


# --- Architecture and Commands ----------------------------------------------------------------------

PACKAGES = ("bot", "mcp_core", "run_cards")


def architecture() -> str:
    """The module tree: the section's first code block (the flows follow it)."""
    return re.findall(r"```\n(.*?)```", section("Architecture"), flags=re.DOTALL)[0]


def test_the_architecture_names_every_module() -> None:
    modules = {p.name for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p.name != "__init__.py"}
    named = set(re.findall(r"[\w]+\.py", architecture()))

    assert modules - named == set()


def test_every_file_the_architecture_names_exists() -> None:
    files = {p.name for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    named = set(re.findall(r"[\w]+\.py", architecture())) - {"tool_calls.py", "slack_ack.py", "agent_turn.py"}

    assert named - files == set()
    assert {"tool_calls.py", "slack_ack.py", "agent_turn.py"} <= {
        p.name for p in (REPO / "bench").glob("*.py")
    }


def command_paths(group: click.Group, prefix: str = "") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        paths += command_paths(command, path + " ") if isinstance(command, click.Group) else [path]
    return paths


def test_the_commands_table_lists_every_cli_command() -> None:
    documented = re.findall(r"^\| `slack-mcp-bot ([a-z ]+?)(?: [-\[<].*)?`", section("Commands"), re.M)

    assert sorted(documented) == sorted(command_paths(main))
