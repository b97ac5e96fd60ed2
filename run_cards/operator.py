"""Operator pre-fill: card values a local install's operator keeps in ``.env``.

On a single-user install the person running the bot already has their tokens in ``.env``;
typing them again into Slack is friction and one more place a token passes through. A variable
``MCP_<CARD>_<FIELD>`` (card id and field key upper-cased, ``-`` → ``_``), e.g.
``MCP_GITHUB_TOKEN`` or ``MCP_SUPABASE_PROJECT_REF``, fills that field when the operator leaves
it empty. Only the ``.env`` file is read, never the process environment: a cloud deployment's
environment holds the bot's own secrets, not a person's. The bot offers these values only to
the operators (``ADMIN_USER_IDS``), since anyone else using them would be using the operator's
credentials; the values are never shown back in Slack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from run_cards.model import RunCard

__all__ = ["OperatorValues", "operator_var", "read_operator_values"]

logger = logging.getLogger(__name__)

OperatorValues = Mapping[str, Mapping[str, str]]
"""card id → field key → value."""


def operator_var(card_id: str, field_key: str) -> str:
    """The ``.env`` variable that pre-fills a card field: ``MCP_<CARD>_<FIELD>``."""
    return f"MCP_{card_id.upper().replace('-', '_')}_{field_key.upper()}"


def read_operator_values(cards: Iterable[RunCard], env_file: Path) -> dict[str, dict[str, str]]:
    """The non-empty ``MCP_<CARD>_<FIELD>`` values in ``env_file`` for the given cards.

    A missing file gives nothing; the log names the variables found, never their values.
    """
    if not env_file.is_file():
        return {}
    raw = dotenv_values(env_file)
    found: dict[str, dict[str, str]] = {}
    for card in cards:
        for item in card.fields:
            value = raw.get(operator_var(card.id, item.key))
            if value and value.strip():
                found.setdefault(card.id, {})[item.key] = value.strip()
    if found:
        names = sorted(operator_var(c, k) for c, fields in found.items() for k in fields)
        logger.info("operator pre-fill from %s for admins: %s", env_file, ", ".join(names))
    return found
