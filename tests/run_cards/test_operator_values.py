"""Reading the operator's MCP_<CARD>_<FIELD> pre-fill values from a .env file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from run_cards import BUILTIN_DIR, load_cards, operator_var, read_operator_values

TOKEN = "github_pat_operator_7c1d"


def test_the_variable_name_is_card_then_field_upper_cased() -> None:
    assert operator_var("github", "token") == "MCP_GITHUB_TOKEN"
    assert operator_var("my-card", "project_ref") == "MCP_MY_CARD_PROJECT_REF"


def test_values_for_known_card_fields_are_read_and_the_log_names_variables_not_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f"MCP_GITHUB_TOKEN={TOKEN}\n"
        "MCP_SUPABASE_PROJECT_REF = abcdefghij0123456789 \n"
        "MCP_GITHUB_NOT_A_FIELD=x\n"
        "MCP_SLACK_TEAM_ID=\n"
        "SLACK_BOT_TOKEN=xoxb-not-a-card-value\n",
        encoding="utf-8",
    )
    caplog.set_level(logging.INFO)
    found = read_operator_values(load_cards(BUILTIN_DIR).all(), env)
    assert found == {"github": {"token": TOKEN}, "supabase": {"project_ref": "abcdefghij0123456789"}}
    assert "MCP_GITHUB_TOKEN" in caplog.text
    assert TOKEN not in caplog.text


def test_no_env_file_means_no_pre_fill(tmp_path: Path) -> None:
    assert read_operator_values(load_cards(BUILTIN_DIR).all(), tmp_path / ".env") == {}
