-- 0003_drop_run_cards: run cards live in files only.
--
-- mcp_run_cards mirrored the card files (built-in ones and RUN_CARDS_DIR) at every start and
-- nothing read it: the bot serves cards from the files it loaded. An operator editing a row
-- (enabled = false, say) changed nothing, and rows of removed cards stayed forever. The files
-- are the one truth, reviewed like code; how often each card is used comes from
-- mcp_connections.card_id.

DROP TABLE mcp_run_cards;
