"""``python -m bot`` is the ``slack-mcp-bot`` command."""

from bot.cli import main

main()
