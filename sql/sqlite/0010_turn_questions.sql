-- 0010_turn_questions (SQLite twin of sql/0010_turn_questions.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): the open question of a waiting turn and its sealed
-- checkpoint, so a click on any process (or after a restart) continues the turn.
ALTER TABLE mcp_turns ADD COLUMN question TEXT;
ALTER TABLE mcp_turns ADD COLUMN question_expires_at TIMESTAMP;
ALTER TABLE mcp_turns ADD COLUMN checkpoint TEXT CHECK (checkpoint IS NULL OR json_valid(checkpoint));

CREATE UNIQUE INDEX mcp_turns_question_idx ON mcp_turns (question);
