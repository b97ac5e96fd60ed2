"""Load run cards from YAML: the built-in folder, then the admin folder (``RUN_CARDS_DIR``).

    catalog = load_cards(BUILTIN_DIR, settings.run_cards_dir)
    catalog.for_user(is_admin=False)      # the cards this user may use

A file that fails (bad YAML, or a card the model refuses) is logged with its file name and the
failing field (pydantic's location, e.g. ``fields.0.pattern``) and skipped; the other cards still
load. An admin card with a built-in card's id replaces it, with a warning.

Per-card launcher overrides: ``RUN_CARD_<ID>_COMMAND`` in ``environ`` (the process environment
by default) replaces a stdio card's ``command`` and ``args`` (see ``run_cards.model``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from run_cards.model import RunCard, command_override_var

__all__ = ["BUILTIN_DIR", "CardCatalog", "load_cards"]

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
_SUFFIXES = (".yaml", ".yml")


class CardCatalog:
    """The loaded cards, in id order."""

    def __init__(self, cards: Mapping[str, RunCard]) -> None:
        self._cards = dict(sorted(cards.items()))

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, card_id: object) -> bool:
        return card_id in self._cards

    def all(self) -> list[RunCard]:
        return list(self._cards.values())

    def get(self, card_id: str) -> RunCard | None:
        return self._cards.get(card_id)

    def for_user(self, is_admin: bool) -> list[RunCard]:
        """The cards this user may use: admin-only cards are hidden from everyone else."""
        return [card for card in self._cards.values() if is_admin or not card.admin_only]


def load_cards(
    builtin_dir: Path = BUILTIN_DIR,
    admin_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> CardCatalog:
    """Read the ``*.yaml``/``*.yml`` cards of ``builtin_dir`` then ``admin_dir``; a bad card never raises.

    A missing ``admin_dir`` is logged and ignored.
    """
    environ = os.environ if environ is None else environ
    cards: dict[str, RunCard] = {}
    folders: list[tuple[Path, Literal["builtin", "admin"]]] = [(builtin_dir, "builtin")]
    if admin_dir is not None:
        if admin_dir.is_dir():
            folders.append((admin_dir, "admin"))
        else:
            log.warning("RUN_CARDS_DIR %s is not a folder; no admin cards loaded", admin_dir)
    for folder, source in folders:
        seen: set[str] = set()
        for path in sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file()):
            card = _load_file(path, source, environ)
            if card is None:
                continue
            if card.id in seen:
                log.error("run card %s: id %r is used by another %s card; skipped", path, card.id, source)
                continue
            seen.add(card.id)
            if card.id in cards:
                log.warning("run card %s: admin card %r replaces the built-in card", path, card.id)
            cards[card.id] = card
    return CardCatalog(cards)


def _load_file(path: Path, source: Literal["builtin", "admin"], environ: Mapping[str, str]) -> RunCard | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.error("run card %s: unreadable: %s; skipped", path, exc)
        return None
    if not isinstance(data, dict):
        log.error("run card %s: field (top level): expected a mapping of card fields; skipped", path)
        return None
    data = {**data, "source": source}
    try:
        card = RunCard.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"]) or "(card)"
            log.error("run card %s: field %s: %s; skipped", path, where, error["msg"])
        return None
    override = environ.get(command_override_var(card.id))
    if override:
        try:
            card = card.with_command(override)
        except ValueError as exc:
            variable = command_override_var(card.id)
            log.error("run card %s: %s: %s; the card's own command is kept", path, variable, exc)
    return card
