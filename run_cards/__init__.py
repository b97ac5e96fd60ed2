"""Run cards: declarative templates that turn connecting a known MCP server into a short form.

The catalog (built-in YAML cards, admin cards from RUN_CARDS_DIR, the pydantic model and
loader) is not built yet; see the README's status section.
"""
