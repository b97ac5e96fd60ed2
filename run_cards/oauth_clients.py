"""Clients the operator registered with OAuth cards' servers: ``OAUTH_<CARD>_CLIENT_ID`` / ``_SECRET``.

Some servers (GitHub's) offer no dynamic client registration: the operator registers the bot
there once, with the bot's callback URL, and gives it the client id (and secret). These are
the bot's own credentials, not a person's, so unlike the ``MCP_<CARD>_<FIELD>`` pre-fill they
are read from the process environment as well as ``.env`` (a cloud deployment keeps them in its
secret environment). Each is bound to its card's URL: ``mcp_core.oauth`` uses it only for
connections to exactly that server, so its secret never reaches a server someone typed in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from mcp_core.oauth import PreRegisteredClient
from run_cards.model import RunCard

__all__ = ["oauth_client_var", "read_oauth_clients"]

logger = logging.getLogger(__name__)


def oauth_client_var(card_id: str, part: str) -> str:
    """``OAUTH_<CARD>_<PART>``: the card id upper-cased, ``-`` → ``_`` (``CLIENT_ID``, ``CLIENT_SECRET``)."""
    return f"OAUTH_{card_id.upper().replace('-', '_')}_{part}"


def read_oauth_clients(
    cards: Iterable[RunCard], env_file: Path | None = Path(".env"), environ: Mapping[str, str] | None = None
) -> dict[str, PreRegisteredClient]:
    """The pre-registered client of every OAuth card with a fixed URL that has one configured.

    The process environment wins over ``env_file``. The log names the cards, never a value.
    """
    values: dict[str, str | None] = dict(dotenv_values(env_file)) if env_file and env_file.is_file() else {}
    values.update(os.environ if environ is None else environ)
    found: dict[str, PreRegisteredClient] = {}
    for card in cards:
        if card.auth != "oauth" or not card.url:
            continue
        client_id = (values.get(oauth_client_var(card.id, "CLIENT_ID")) or "").strip()
        if not client_id:
            continue
        secret = (values.get(oauth_client_var(card.id, "CLIENT_SECRET")) or "").strip() or None
        client_auth = card.oauth.client_auth if card.oauth is not None else None
        found[card.id] = PreRegisteredClient(client_id, secret, card.url, client_auth)
    if found:
        logger.info("pre-registered OAuth clients for cards: %s", ", ".join(sorted(found)))
    return found
