"""Loading YAML cards: built-ins, admin overrides, broken files, visibility and store rows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from run_cards import BUILTIN_DIR, load_cards

BUILTIN_IDS = {
    "atlassian",
    "custom",
    "filesystem",
    "github",
    "github-oauth",
    "linear",
    "notion",
    "postgres",
    "sentry",
    "slack",
    "supabase",
}

GOOD = """
id: notes
name: Notes
description: A remote notes server.
transport: sse
url: https://notes.example.com/sse
fields:
  - {key: token, label: Token, secret: true, required: true}
mapping:
  token: {to: "header:Authorization", format: "Bearer {value}"}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_builtin_card_loads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        catalog = load_cards(BUILTIN_DIR, environ={})
    assert caplog.records == []
    assert {card.id for card in catalog.all()} == BUILTIN_IDS
    assert len(list(BUILTIN_DIR.glob("*.yaml"))) == len(BUILTIN_IDS)
    for card in catalog.all():
        assert card.source == "builtin"
        assert card.advice, card.id
        if card.transport == "stdio":
            assert card.command == "npx", card.id
            assert card.args[0] == "-y", card.id
            assert "@modelcontextprotocol/server-" in card.args[1], card.id
            assert "@" in card.args[1].rsplit("/", 1)[1], f"{card.id}: npm version not pinned"


def test_npx_pins_match_the_ci_pins() -> None:
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "npm-servers.sh").read_text()
    for card in load_cards(BUILTIN_DIR, environ={}).all():
        if card.command == "npx":
            assert card.args[1] in ci, card.id


def test_broken_file_is_logged_with_file_and_field_and_others_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = tmp_path / "cards"
    write(admin, "notes.yaml", GOOD)
    bad_text = GOOD.replace("id: notes", "id: bad").replace("label: Token,", "label: Token, pattern: '(',")
    bad = write(admin, "bad.yaml", bad_text)
    broken = write(admin, "broken.yml", "id: [unclosed\n")
    listed = write(admin, "list.yaml", "- just\n- a list\n")
    write(admin, "README.txt", "not a card")
    with caplog.at_level(logging.ERROR, logger="run_cards.loader"):
        catalog = load_cards(BUILTIN_DIR, admin, environ={})
    assert {card.id for card in catalog.all()} == BUILTIN_IDS | {"notes"}
    messages = [record.getMessage() for record in caplog.records]
    assert any(str(bad) in m and "fields.0.pattern" in m for m in messages), messages
    assert any(str(broken) in m for m in messages), messages
    assert any(str(listed) in m for m in messages), messages
    assert catalog.get("notes").source == "admin"  # type: ignore[union-attr]


def test_admin_card_overrides_builtin_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = tmp_path / "cards"
    write(admin, "github.yaml", GOOD.replace("id: notes", "id: github").replace("Notes", "Our GitHub"))
    with caplog.at_level(logging.WARNING, logger="run_cards.loader"):
        catalog = load_cards(BUILTIN_DIR, admin, environ={})
    card = catalog.get("github")
    assert card is not None
    assert (card.name, card.source) == ("Our GitHub", "admin")
    assert any("github" in r.getMessage() and "replaces" in r.getMessage() for r in caplog.records)


def test_admin_cards_may_run_commands_and_yaml_cannot_claim_a_source(tmp_path: Path) -> None:
    admin = tmp_path / "cards"
    write(
        admin,
        "local.yaml",
        "id: local\nname: Local\ndescription: d\ntransport: stdio\ncommand: /usr/bin/true\nsource: user\n",
    )
    card = load_cards(BUILTIN_DIR, admin, environ={}).get("local")
    assert card is not None
    assert card.source == "admin"


def test_missing_admin_dir_is_not_fatal(tmp_path: Path) -> None:
    assert len(load_cards(BUILTIN_DIR, tmp_path / "absent", environ={})) == len(BUILTIN_IDS)


def test_for_user_hides_admin_cards() -> None:
    catalog = load_cards(BUILTIN_DIR, environ={})
    assert "filesystem" not in {card.id for card in catalog.for_user(is_admin=False)}
    assert {card.id for card in catalog.for_user(is_admin=True)} == BUILTIN_IDS
    assert catalog.get("nope") is None


def test_command_override_from_environment(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "RUN_CARD_POSTGRES_COMMAND": "node /opt/mcp/server-postgres/dist/index.js",
        "RUN_CARD_GITHUB_COMMAND": "node x.js",  # remote card: logged, ignored
    }
    with caplog.at_level(logging.ERROR, logger="run_cards.loader"):
        catalog = load_cards(BUILTIN_DIR, environ=environ)
    postgres = catalog.get("postgres")
    assert postgres is not None
    assert (postgres.command, postgres.args) == ("node", ["/opt/mcp/server-postgres/dist/index.js"])
    assert postgres.server_args == ["{connection_string}"]
    assert catalog.get("github").url == "https://api.githubcopilot.com/mcp/"  # type: ignore[union-attr]
    assert any("RUN_CARD_GITHUB_COMMAND" in r.getMessage() for r in caplog.records)
