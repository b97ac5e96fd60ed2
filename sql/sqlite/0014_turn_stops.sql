-- 0014_turn_stops (SQLite twin of sql/0014_turn_stops.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): a Stop that landed on a process not running the turn
-- asks the turn's owner to stop it.
ALTER TABLE mcp_turns ADD COLUMN stop_requested_at TIMESTAMP;

-- A server's form question mid-call, answerable on any process (sealed form and answer).
CREATE TABLE mcp_turn_questions (
    question_id TEXT NOT NULL PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    form TEXT NOT NULL CHECK (json_valid(form)),
    answer TEXT CHECK (answer IS NULL OR json_valid(answer)),
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mcp_turn_questions_expires_idx ON mcp_turn_questions (expires_at);
