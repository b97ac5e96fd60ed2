"""Run cards: declarative templates that turn connecting a known MCP server into a short form.

``run_cards.model`` holds the pydantic ``RunCard`` (fields, where each value goes, validation
and ``build``), ``run_cards.loader`` reads the YAML cards (built-in ones in ``run_cards/builtin``,
admin ones from ``RUN_CARDS_DIR``) into a ``CardCatalog``, ``run_cards.operator`` reads the
operator's ``MCP_<CARD>_<FIELD>`` pre-fill values from ``.env``. This package reads card files and
nothing else; it never imports ``bot``.
"""

from run_cards.loader import BUILTIN_DIR, CardCatalog, load_cards
from run_cards.model import CardField, CardFieldError, FieldMapping, RunCard, command_override_var
from run_cards.operator import OperatorValues, operator_var, read_operator_values

__all__ = [
    "BUILTIN_DIR",
    "CardCatalog",
    "CardField",
    "CardFieldError",
    "FieldMapping",
    "OperatorValues",
    "RunCard",
    "command_override_var",
    "load_cards",
    "operator_var",
    "read_operator_values",
]
